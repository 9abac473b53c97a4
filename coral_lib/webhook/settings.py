"""Settings of the sidecar injector: plain data, validated once, shared by server and CLI."""

from __future__ import annotations

import dataclasses
import json
import re
from collections.abc import Mapping
from typing import Any

import coral_lib

# The one home of the agent image default (the Ansible roles' defaults are checked against
# it by tests/manifests/test_settings_source.py).
IMAGE_REPOSITORY = "coral/agent"
DEFAULT_IMAGE = f"{IMAGE_REPOSITORY}:{coral_lib.__version__}"

SYSTEM_NAMESPACES = ("kube-system", "kube-public", "kube-node-lease")
_VERSION = re.compile(r"^v?(\d+)\.(\d+)")


REMOVED_SECRET_SETTING = (
    "setting colony_secret_name was removed: agents no longer read a shared colony secret "
    "(each proves its own pod identity with a projected service account token); the "
    "colony's address and CA come from the ConfigMap named by colony_config_map "
    "(default coral-colony)")


class SettingsError(ValueError):
    """A settings value or file a user gave is not acceptable; the message says why."""


@dataclasses.dataclass(frozen=True)
class InjectSettings:
    """What the injector adds to a pod. Every field has a working default. The one
    declaration of these fields: manifests.settings.ManifestSettings extends this class.

    `namespace` is where Coral itself runs (its pods are never injected);
    `kubernetes_version` is the cluster's "major.minor": below 1.29 the agent becomes a
    regular container because native sidecars (init containers with restartPolicy
    Always) are not on by default there.
    """

    namespace: str = "coral-system"
    image: str = DEFAULT_IMAGE
    agent_version: str = coral_lib.__version__
    image_pull_policy: str = "IfNotPresent"
    colony_config_map: str = "coral-colony"  # address, colony-id, ca.crt: nothing secret
    allow_host_network: bool = False
    enable_bpf: bool = False
    kubernetes_version: str = "1.30"
    cpu_request: str = "50m"
    memory_request: str = "64Mi"
    cpu_limit: str = "500m"
    memory_limit: str = "256Mi"

    def __post_init__(self) -> None:
        for field in dataclasses.fields(InjectSettings):  # a subclass checks its own
            value = getattr(self, field.name)
            expected = bool if field.type in ("bool", bool) else str
            if not isinstance(value, expected) or (expected is str and not value.strip()):
                raise SettingsError(
                    f"setting {field.name!r}={value!r} is invalid: expected a "
                    f"{'boolean' if expected is bool else 'non-empty string'}"
                )
        version_tuple(self.kubernetes_version)
        if self.image_pull_policy not in ("Always", "IfNotPresent", "Never"):
            raise SettingsError(
                f"setting 'image_pull_policy'={self.image_pull_policy!r} is invalid: "
                "expected Always, IfNotPresent or Never"
            )

    @property
    def native_sidecar(self) -> bool:
        """True when the cluster runs init containers with restartPolicy Always (1.29+)."""
        return version_tuple(self.kubernetes_version) >= (1, 29)

    @property
    def skipped_namespaces(self) -> tuple[str, ...]:
        return (*SYSTEM_NAMESPACES, self.namespace)


def version_tuple(text: str) -> tuple[int, int]:
    """"1.30", "v1.28.3" or "1.27+" -> (major, minor); SettingsError otherwise."""
    match = _VERSION.match(text.strip()) if isinstance(text, str) else None
    if not match:
        raise SettingsError(
            f"setting 'kubernetes_version'={text!r} is invalid: expected major.minor "
            "such as 1.30 or v1.28.3"
        )
    return int(match.group(1)), int(match.group(2))


def from_mapping(data: Mapping[str, Any], *, source: str = "settings") -> InjectSettings:
    """Build settings from a mapping (a parsed file); unknown keys are an error."""
    if not isinstance(data, Mapping):
        raise SettingsError(f"{source}: expected a mapping of setting names to values")
    if "colony_secret_name" in data:
        raise SettingsError(f"{source}: {REMOVED_SECRET_SETTING}")
    known = {field.name for field in dataclasses.fields(InjectSettings)}
    unknown = sorted(str(key) for key in data if key not in known)
    if unknown:
        raise SettingsError(
            f"{source}: unknown setting(s) {', '.join(unknown)}; "
            f"accepted: {', '.join(sorted(known))}"
        )
    try:
        return InjectSettings(**dict(data))
    except SettingsError as exc:
        raise SettingsError(f"{source}: {exc}") from None


def to_mapping(settings: InjectSettings) -> dict[str, Any]:
    return dataclasses.asdict(settings)


def dumps(settings: InjectSettings) -> str:
    return json.dumps(to_mapping(settings), sort_keys=True, indent=2)
