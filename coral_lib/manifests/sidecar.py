"""Sidecar mode by hand: a PodTemplate with the agent already added, for teams that do
not run the webhook. It is inject() applied to a template pod, so the hand-made and the
injected sidecar cannot drift. The pod needs the colony ConfigMap (address, CA) in its own
namespace, proves its identity with its own projected service account token (no secret),
and meets the `baseline` Pod Security Standard: the sidecar adds no capability (it enters
app containers by chroot as the app's uid; see ops/chroot.py)."""

from __future__ import annotations

from typing import Any

from coral_lib.manifests import objects
from coral_lib.manifests import settings as settings_mod
from coral_lib.webhook import inject

NAME = "coral-sidecar-template"


def render(settings: settings_mod.ManifestSettings) -> list[dict[str, Any]]:
    pod = {
        "metadata": {"labels": {"app.kubernetes.io/name": settings.app_name}},
        "spec": {"containers": [{"name": settings.app_name, "image": settings.app_image}]},
    }
    # The namespace label stands in for the webhook's opt-in; the template has no namespace.
    patch = inject.inject(pod, {"coral.io/inject": "true"}, settings.inject_settings(),
                          namespace="default")
    template = inject.apply_patch(pod, patch)
    return [{"apiVersion": "v1", "kind": "PodTemplate", "metadata": objects.meta(NAME),
             "template": template}]
