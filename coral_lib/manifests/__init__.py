"""Kubernetes objects for each deployment mode, rendered as data by pure functions.

render(mode, settings) -> [objects]: "daemonset", "webhook", "sidecar" or "colony". No I/O and no
randomness: TLS material for the webhook comes in through the settings.
"""

from __future__ import annotations

from typing import Any

from coral_lib.manifests import colony_replicas, daemonset, sidecar, webhook
from coral_lib.manifests import settings as settings_mod

ManifestSettings = settings_mod.ManifestSettings
ManifestError = settings_mod.ManifestError
MODES = {"daemonset": daemonset.render, "webhook": webhook.render, "sidecar": sidecar.render,
         "colony": colony_replicas.render}
MONITORS = {"daemonset": daemonset.monitors, "webhook": webhook.monitors}


def render(mode: str, settings: settings_mod.ManifestSettings) -> list[dict[str, Any]]:
    """The objects for `mode`, in the order they should be applied."""
    try:
        renderer = MODES[mode]
    except KeyError:
        raise ManifestError(
            f"unknown mode {mode!r}: expected one of {', '.join(MODES)}"
        ) from None
    return renderer(settings)


def service_monitors(mode: str, settings: settings_mod.ManifestSettings
                     ) -> list[dict[str, Any]]:
    """prometheus-operator objects for `mode`, rendered on request (the CRD may not exist)."""
    if mode not in MONITORS:
        raise ManifestError(
            f"--service-monitor: mode {mode!r} has none (sidecar agents serve health only, "
            f"no metrics); modes with one: {', '.join(MONITORS)}")
    return MONITORS[mode](settings)
