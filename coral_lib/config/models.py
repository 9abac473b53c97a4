"""Agent and colony configuration models (pure: pydantic types and validators, no file
loading). Keys in files are camelCase, attributes snake_case; see coral_lib.config for the
file format and coral_lib.config.loader for reading files, placeholders and CORAL_* env.
"""

from __future__ import annotations

import os
import pathlib
from collections.abc import Mapping
from typing import Annotated, Literal

import pydantic
from pydantic import alias_generators

from coral_lib import addresses, durations
from coral_lib.config import errors

ConfigError = errors.ConfigError  # defined without pydantic: the agent raises it at run time


def _duration(value: object) -> float:
    return durations.parse_duration(value)


def _none_is_empty(value: object) -> object:
    # `overrides:` with every entry commented out loads as None: treat it as empty.
    return () if value is None else value


def _check_address(value: str) -> str:
    host, sep, port = value.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"invalid address {value!r}: expected host:port, e.g. 127.0.0.1:9443")
    return value


def _check_pod_label(value: str | None) -> str | None:
    if value is not None:
        key, sep, _ = value.partition("=")
        if not sep or not key.strip():
            raise ValueError(f"invalid podLabel {value!r}: expected key=value, e.g. app=payments")
    return value


def _check_endpoint(value: str) -> str:
    if value and not value.startswith("/"):
        raise ValueError(f"invalid health endpoint {value!r}: expected a path like /healthz")
    return value


Duration = Annotated[float, pydantic.BeforeValidator(_duration)]


def _positive(value: float) -> float:
    if value <= 0:
        raise ValueError(f"invalid interval {value:g}s: expected a duration above zero "
                         "(e.g. 5s); 0 would make the loop spin")
    return value


# How often something repeats, or how long before something counts: 0 would spin or expire
# at once, so only durations above zero are accepted.
Interval = Annotated[float, pydantic.BeforeValidator(_duration), pydantic.AfterValidator(_positive)]
Port = Annotated[int, pydantic.Field(ge=1, le=65535)]
Labels = Annotated[dict[str, str], pydantic.BeforeValidator(lambda v: {} if v is None else v)]
Address = Annotated[str, pydantic.AfterValidator(_check_address)]


def _check_addresses(value: object) -> object:
    """host:port, several comma-separated or as a list (colony replicas)."""
    if isinstance(value, list | tuple):
        value = ",".join(str(v) for v in value)
    if isinstance(value, str):
        try:
            addresses.grpc_target(value)
        except addresses.AddressError as exc:
            raise ValueError(str(exc)) from None
    return value


Addresses = Annotated[str, pydantic.BeforeValidator(_check_addresses)]


class _Model(pydantic.BaseModel):
    """camelCase keys in files, snake_case attributes in code; unknown keys are errors."""

    model_config = pydantic.ConfigDict(
        extra="forbid",
        frozen=True,
        alias_generator=alias_generators.to_camel,
        validate_by_name=True,
        validate_by_alias=True,
        coerce_numbers_to_str=True,
    )

    @pydantic.model_validator(mode="before")
    @classmethod
    def _none_is_defaults(cls, data: object) -> object:
        # `discovery:` with nothing under it loads as None: that means "all defaults".
        return {} if data is None else data


class Agent(_Model):
    mode: Literal["passive", "active"] = "passive"  # active: probe each service's health
    id: str = pydantic.Field(default_factory=lambda: os.uname().nodename)
    runtime: Literal["auto", "host", "daemonset", "sidecar"] = "auto"
    labels: Labels = pydantic.Field(default_factory=dict)  # the agent's own labels


class ColonyClient(_Model):
    """Where the agent finds its colony and how it authenticates."""

    address: Addresses = "127.0.0.1:9443"  # several replicas: comma-separated or a list
    ca_file: str = ""
    ca: str = ""  # the CA certificate itself (PEM), e.g. from a Secret in a pod's env
    id: str = "default"
    join_token: pydantic.SecretStr = pydantic.SecretStr("")  # one-time, hosts
    join_token_file: str = ""
    service_account_token_file: str = ""  # projected token (audience coral), Kubernetes

    @pydantic.model_validator(mode="before")
    @classmethod
    def _no_shared_secret(cls, data: object) -> object:
        if isinstance(data, Mapping) and ({"secret", "secretFile", "secret_file"} & set(data)):
            raise ValueError(_NO_SECRET)
        return data

    @pydantic.model_validator(mode="after")
    def _one_token(self) -> ColonyClient:
        if self.join_token.get_secret_value() and self.join_token_file:
            raise ValueError("set only one of colony.joinToken and colony.joinTokenFile")
        return self


class KubernetesDiscovery(_Model):
    include_namespaces: Annotated[tuple[str, ...], pydantic.BeforeValidator(_none_is_empty)] = ()
    include_labels: Labels = pydantic.Field(default_factory=dict)
    exclude_namespaces: Annotated[tuple[str, ...], pydantic.BeforeValidator(_none_is_empty)] = ()
    exclude_labels: Labels = pydantic.Field(default_factory=dict)
    poll_interval: Interval = 30.0
    resync_interval: Interval = 300.0


class HostDiscovery(_Model):
    poll_interval: Interval = 5.0


class Discovery(_Model):
    kubernetes: KubernetesDiscovery = pydantic.Field(default_factory=KubernetesDiscovery)
    host: HostDiscovery = pydantic.Field(default_factory=HostDiscovery)


class Health(_Model):
    endpoint: Annotated[str, pydantic.AfterValidator(_check_endpoint)] = ""
    interval: Interval | None = None


class OverrideSelector(_Model):
    """Which candidates a rule applies to; every given criterion must match."""

    pod_label: Annotated[str | None, pydantic.AfterValidator(_check_pod_label)] = None
    namespace: str | None = None
    pod_name: str | None = None
    process: str | None = None
    port: Port | None = None

    @pydantic.model_validator(mode="after")
    def _not_empty(self) -> OverrideSelector:
        if all(v is None for v in self.model_dump().values()):
            raise ValueError(
                "empty selector: give at least one of podLabel, namespace, podName, process, port"
            )
        return self

    @property
    def pod_label_pair(self) -> tuple[str, str] | None:
        if self.pod_label is None:
            return None
        key, _, value = self.pod_label.partition("=")
        return key.strip(), value.strip()


class ServiceFields(_Model):
    """A partial service: only the fields given override the candidate's."""

    name: str | None = None
    port: Port | None = None
    health: Health | None = None
    type: str | None = None
    labels: Labels = pydantic.Field(default_factory=dict)


class OverrideRule(_Model):
    selector: OverrideSelector
    service: ServiceFields


class ExplicitService(_Model):
    name: Annotated[str, pydantic.Field(min_length=1)]
    port: Port
    health: Health = pydantic.Field(default_factory=Health)
    type: str = ""
    labels: Labels = pydantic.Field(default_factory=dict)


_NO_SECRET = ("the shared colony secret (colony.secret / secretFile, CORAL_COLONY_SECRET) "
              "is gone: replaced by joinToken/joinTokenFile (hosts: `coral colony join-token "
              "create`) or serviceAccountTokenFile (Kubernetes)")


class AgentConfig(_Model):
    agent: Agent = pydantic.Field(default_factory=Agent)
    colony: ColonyClient = pydantic.Field(default_factory=ColonyClient)
    discovery: Discovery = pydantic.Field(default_factory=Discovery)
    overrides: Annotated[tuple[OverrideRule, ...], pydantic.BeforeValidator(_none_is_empty)] = ()
    services: Annotated[tuple[ExplicitService, ...], pydantic.BeforeValidator(_none_is_empty)] = ()
    _source: str = pydantic.PrivateAttr(default="<defaults>")


# Defaults read the process environment (hostname, euid, home), never a file.
def default_data_dir() -> str:
    """/var/lib/coral/colony for root (where the colony role puts it), else ~/.coral/colony."""
    if os.geteuid() == 0:
        return "/var/lib/coral/colony"
    return str(pathlib.Path.home() / ".coral" / "colony")


class ColonyLimits(_Model):
    """What one caller may cost the colony; unset keys keep the defaults of
    coral_lib/colony/guard.py Limits (the one home of the numbers)."""

    receive_bytes: int | None = None
    request_bytes: int | None = None
    output_bytes: int | None = None
    concurrent_rpcs: int | None = None
    streams_per_peer: int | None = None
    login_failures: int | None = None
    login_window: Interval | None = None


class ColonySettings(_Model):
    id: str = "default"
    listen: Address = "127.0.0.1:9443"
    data_dir: str = pydantic.Field(default_factory=default_data_dir)
    heartbeat_interval: Interval = 10.0
    degraded_after: Interval = 30.0
    unhealthy_after: Interval = 90.0
    # An agent unhealthy (no heartbeat, no link) this long is expired: it and its services
    # leave the registry (coral_lib/colony/lifecycle.py).
    agent_expiry: Interval = 900.0
    tokens_file: str = ""
    observe_only: bool = False
    observe_only_agents: tuple[str, ...] = ()
    policy_file: str = ""  # RBAC + rate limits + approvals (coral_lib/colony/policy.py)
    rate_limits: dict[str, str] = pydantic.Field(default_factory=dict)
    approval_ttl: Interval = 900.0
    agent_cert_ttl: Duration = 86400.0
    agent_service_account: str = "coral-system/coral-agent"
    # Kubernetes agents' bootstrap (TokenReview); neither set: refused with a clear error.
    token_review_kubeconfig: str = ""
    token_review_in_cluster: bool = False
    token_review_audience: str = "coral"
    # Audit integrity (coral_lib.colony.audit / checkpoints); '' = the default location.
    audit_key_file: str = ""  # HMAC key; default <dataDir>/audit.key
    checkpoint_key_file: str = ""  # Ed25519 signing key; default <dataDir>/checkpoint.key
    checkpoint_dir: str = ""  # sink outside dataDir; default <dataDir>-checkpoints
    checkpoint_syslog: str = "auto"  # auto (/dev/log when present), '', a path, host:port
    checkpoint_every: Annotated[int, pydantic.Field(ge=1)] = 100
    checkpoint_interval: Interval = 60.0
    checkpoint_append_only: bool = False  # chattr +a the sink file (root, ext4/xfs/btrfs)
    limits: ColonyLimits = pydantic.Field(default_factory=ColonyLimits)
    # Replicas sharing PostgreSQL (coral_lib.colony.dsn / replication): '' or 'sqlite' = the
    # data directory's SQLite files; else a postgresql:// DSN, env:NAME or file:PATH.
    database: str = ""
    replica_name: str = ""  # default <hostname>-<port>
    replica_listen: str = ""  # the replica port (mutual TLS); default <listen host>:0
    replica_advertise: str = ""  # host:port other replicas dial; default the bound address
    replica_heartbeat: Interval = 1.0
    replica_dead_after: Interval = 5.0
    _source: str = pydantic.PrivateAttr(default="<defaults>")

    @pydantic.model_validator(mode="before")
    @classmethod
    def _no_shared_secret(cls, data: object) -> object:
        if isinstance(data, Mapping) and ({"secret", "secretFile", "secret_file"} & set(data)):
            raise ValueError("secret/secretFile: agents no longer share a colony secret; "
                             "remove it (agents join with `coral colony join-token create` "
                             "tokens or Kubernetes service account tokens)")
        return data

    @pydantic.field_validator("agent_cert_ttl")
    @classmethod
    def _ttl_range(cls, value: float) -> float:
        if not 10 <= value <= 366 * 86400:  # 10s: short enough to test rotation
            raise ValueError(f"agentCertTtl {value:g}s: expected between 10s and 366 days")
        return value

    @pydantic.field_validator("unhealthy_after")
    @classmethod
    def _after_degraded(cls, value: float, info: pydantic.ValidationInfo) -> float:
        degraded = info.data.get("degraded_after")
        if degraded is not None and value <= degraded:
            raise ValueError(f"unhealthyAfter ({value:g}s) must be longer than degradedAfter "
                             f"({degraded:g}s)")
        return value


class OverrideFile(_Model):
    overrides: Annotated[tuple[OverrideRule, ...], pydantic.BeforeValidator(_none_is_empty)] = ()
