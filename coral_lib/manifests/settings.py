"""Settings of the rendered manifests: defaults that work, `--set key=value` parsing."""

from __future__ import annotations

import dataclasses
from typing import Any

from coral_lib.webhook import certs
from coral_lib.webhook import settings as inject_settings


class ManifestError(ValueError):
    """A manifest setting is not acceptable; the message names it and what would be."""


_CHOICES = {
    "failure_policy": ("Ignore", "Fail"),
    "cert_mode": ("secret", "cert-manager"),
}
_TRUE, _FALSE = ("true", "yes", "on", "1"), ("false", "no", "off", "0")


@dataclasses.dataclass(frozen=True)
class ManifestSettings(inject_settings.InjectSettings):
    """The injector's settings (inherited: declared once, in webhook/settings.py) plus what
    the DaemonSet, webhook and sidecar-template manifests need."""

    colony_service_account: str = "coral-colony"  # the colony's identity for TokenReview
    # daemonset
    observe_only: bool = False
    cri_socket: str = "/run/containerd/containerd.sock"
    # the node agent's state (last-sent service set, its certificate) on the node, so a
    # restarted agent container re-registers what it had instead of an empty set
    state_host_path: str = "/var/lib/coral/agent"
    # webhook
    webhook_name: str = "coral-webhook"
    webhook_replicas: int = 2
    failure_policy: str = "Ignore"
    timeout_seconds: int = 5
    cert_mode: str = "secret"
    tls: certs.TLSMaterial | None = None
    # colony (replicas sharing PostgreSQL, manifests.colony_replicas)
    colony_replicas: int = 3
    colony_database_secret: str = "coral-colony-database"
    colony_database_dsn: str = "postgresql://coral@postgres.coral-system.svc:5432/coral"
    colony_data_secret: str = "coral-colony-data"
    # sidecar template
    app_name: str = "app"
    app_image: str = "registry.example.com/team/app:latest"

    def __post_init__(self) -> None:
        for name, kind in settable().items():
            value = getattr(self, name)
            if not isinstance(value, kind) or (kind is str and not value.strip()):
                raise ManifestError(f"setting {name}={value!r} is invalid: expected a "
                                    f"{'non-empty string' if kind is str else kind.__name__}")
        for key, accepted in _CHOICES.items():
            if getattr(self, key) not in accepted:
                raise ManifestError(f"setting {key}={getattr(self, key)!r} is invalid: "
                                    f"expected one of {', '.join(accepted)}")
        if self.colony_replicas < 1:
            raise ManifestError("setting colony_replicas must be at least 1")
        if self.webhook_replicas < 1:
            raise ManifestError("setting webhook_replicas must be at least 1")
        if not 1 <= self.timeout_seconds <= 30:
            raise ManifestError("setting timeout_seconds must be between 1 and 30 "
                                "(the API server's limit)")
        try:
            super().__post_init__()
        except inject_settings.SettingsError as exc:
            raise ManifestError(str(exc)) from None

    def inject_settings(self) -> inject_settings.InjectSettings:
        """The injector's settings, derived so the webhook and the template agree."""
        shared = {f.name for f in dataclasses.fields(inject_settings.InjectSettings)}
        return inject_settings.InjectSettings(
            **{name: getattr(self, name) for name in shared}
        )


def settable() -> dict[str, type]:
    """Field name -> type for every setting `--set` may change (TLS comes from files)."""
    types = {"bool": bool, "int": int, "str": str}
    return {f.name: types[str(f.type)] for f in dataclasses.fields(ManifestSettings)
            if str(f.type) in types}


def parse_sets(pairs: list[str]) -> dict[str, Any]:
    """["key=value", ...] -> typed values; ManifestError names the bad pair."""
    fields, values = settable(), {}
    for pair in pairs:
        key, sep, raw = pair.partition("=")
        key = key.strip()
        if key == "colony_secret_name":
            raise ManifestError(f"--set {key}: {inject_settings.REMOVED_SECRET_SETTING}")
        if not sep or key not in fields:
            raise ManifestError(f"--set {pair!r}: expected KEY=VALUE with KEY one of "
                                f"{', '.join(sorted(fields))}")
        values[key] = _coerce(key, raw.strip(), fields[key])
    return values


def _coerce(key: str, raw: str, kind: type) -> Any:
    if kind is bool:
        if raw.lower() in _TRUE + _FALSE:
            return raw.lower() in _TRUE
        raise ManifestError(f"--set {key}={raw!r}: expected true or false")
    if kind is int:
        if raw.lstrip("-").isdigit():
            return int(raw)
        raise ManifestError(f"--set {key}={raw!r}: expected a whole number")
    return raw


def build(values: dict[str, Any], *, tls: certs.TLSMaterial | None = None) -> ManifestSettings:
    if "colony_secret_name" in values:
        raise ManifestError(inject_settings.REMOVED_SECRET_SETTING)
    try:
        return ManifestSettings(**values, tls=tls)
    except TypeError as exc:
        raise ManifestError(str(exc)) from None
