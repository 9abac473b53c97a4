"""Should this pod get the Coral sidecar? One pure function and its truth table.

| case (first match wins)                                       | inject |
|---------------------------------------------------------------|--------|
| pod has annotation coral.io/injected: "true"                  | no     |
| pod already has a `coral-agent` container or init container   | no     |
| namespace is kube-system / kube-public / kube-node-lease / Coral's own | no |
| pod label or annotation coral.io/inject: "false"              | no     |
| pod has hostNetwork: true and settings.allow_host_network off | no     |
| pod label or annotation coral.io/inject: "true"               | yes    |
| namespace label coral.io/inject: "true"                       | yes    |
| anything else                                                 | no     |

So the pod's "false" beats the namespace's "true", and when a pod's label and annotation
disagree, "false" wins (the cautious answer).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

from coral_lib.webhook import settings as settings_mod

AGENT_NAME = "coral-agent"
INJECT = "coral.io/inject"
INJECTED = "coral.io/injected"
STATUS = "coral.io/status"
AGENT_IMAGE = "coral.io/agent-image"
OBSERVE_ONLY = "coral.io/observe-only"
# "true": the sidecar gets CAP_SYS_PTRACE, for apps whose containers add capabilities (the
# sidecar's chroot into them needs the ptrace access check to pass); outside baseline.
SIDECAR_PTRACE = "coral.io/sidecar-ptrace"
DEFAULT_CONTAINER = "kubectl.kubernetes.io/default-container"


@dataclasses.dataclass(frozen=True)
class Decision:
    inject: bool
    reason: str


def should_inject(
    pod: Mapping[str, Any],
    namespace: str,
    namespace_labels: Mapping[str, str],
    settings: settings_mod.InjectSettings,
) -> Decision:
    """Decide by the table in this module's docstring; the reason names the rule."""
    metadata = _mapping(pod.get("metadata"))
    spec = _mapping(pod.get("spec"))
    if _mapping(metadata.get("annotations")).get(INJECTED) == "true":
        return Decision(False, f"annotation {INJECTED}=true: already injected")
    if has_agent(spec):
        return Decision(False, f"pod already has a {AGENT_NAME} container")
    if namespace in settings.skipped_namespaces:
        return Decision(False, f"namespace {namespace} is never injected")
    pod_words = pod_opt(metadata)
    if "false" in pod_words:
        return Decision(False, f"pod {INJECT}=false")
    if spec.get("hostNetwork") is True and not settings.allow_host_network:
        return Decision(False, "pod uses hostNetwork and allow_host_network is off")
    if "true" in pod_words:
        return Decision(True, f"pod {INJECT}=true")
    if _mapping(namespace_labels).get(INJECT) == "true":
        return Decision(True, f"namespace {namespace} has label {INJECT}=true")
    return Decision(False, "neither the pod nor its namespace opted in")


def pod_opt(metadata: Mapping[str, Any]) -> set[str]:
    """The values of coral.io/inject the pod carries (as label and/or annotation)."""
    found = set()
    for key in ("labels", "annotations"):
        value = _mapping(metadata.get(key)).get(INJECT)
        if isinstance(value, str):
            found.add(value.strip().lower())
    return found


def has_agent(spec: Mapping[str, Any]) -> bool:
    for key in ("containers", "initContainers"):
        items = spec.get(key)
        if isinstance(items, list):
            if any(isinstance(c, Mapping) and c.get("name") == AGENT_NAME for c in items):
                return True
    return False


def _mapping(value: object) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}
