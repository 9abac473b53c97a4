"""Agent and colony configuration: pydantic models, YAML loading, placeholders, CORAL_* env.

Agent config file (`.coral/agent-config.yaml`), keys exactly as written::

    agent: {mode: passive, id: "node-agent-{{ NODE_NAME }}", runtime: auto}
    colony: {address: 127.0.0.1:9443, caFile: ..., id: ...,
             joinToken: ... | joinTokenFile: ... | serviceAccountTokenFile: ...}
    discovery:
      kubernetes: {includeNamespaces: [], includeLabels: {}, excludeNamespaces: [],
                   excludeLabels: {}, pollInterval: 30s, resyncInterval: 5m}
      host: {pollInterval: 5s}
    overrides:
      - selector: {podLabel: app=payments-api, namespace: ns, podName: p, process: x, port: 80}
        service: {name: ..., port: ..., health: {endpoint: /healthz, interval: 5s}, type: http,
                  labels: {}}
    services:   # explicit services
      - {name: api, port: 8080, health: {endpoint: /health, interval: 10s}, type: http, labels: {}}

`agent.mode`: `passive` (default) registers services and answers operations; `active` also
runs the configured health checks. `agent.runtime`: `auto` (default, detect), `host`,
`daemonset` or `sidecar`.

There is no shared colony secret: an agent holds its own certificate, obtained once with a
one-time join token (hosts) or its projected service account token (Kubernetes) and kept
in its state directory; `colony.secret`/`secretFile` are rejected with that message.

Colony settings file (flat): id, listen (host:port), dataDir, heartbeatInterval,
degradedAfter, unhealthyAfter, tokensFile, observeOnly, agentCertTtl (default 24h),
agentServiceAccount (default coral-system/coral-agent: the DaemonSet's account, whose
tokens get node identities; any other account gets its own pod's identity),
tokenReviewKubeconfig / tokenReviewInCluster / tokenReviewAudience (how the colony checks
Kubernetes agents' projected tokens; neither set: Kubernetes bootstrap is refused); audit
integrity: auditKeyFile, checkpointKeyFile, checkpointDir, checkpointSyslog,
checkpointEvery, checkpointInterval, checkpointAppendOnly; and `limits` (defaults in
coral_lib/colony/guard.py Limits): receiveBytes (16 MiB), requestBytes (1 MiB: argv +
stdin + env of one exec), outputBytes (4 MiB per stream), concurrentRpcs (2048),
streamsPerPeer (64), loginFailures (10 per
loginWindow, 60s, per peer address before it is throttled).

Durations: see coral_lib.durations (`30s`, `5m`, `1h`, `500ms`, plain number = seconds).
Placeholders: `{{ NAME }}` in any string value (even unquoted, even inside `{...}` flow
mappings) is replaced by the environment variable NAME; a missing one is an error.

Environment overrides (a set, non-empty variable beats the file; lists are comma
separated, labels are `k=v,k2=v2`) — the whole table is AGENT_ENV / COLONY_ENV below:

| variable                     | agent config key                         |
|------------------------------|------------------------------------------|
| CORAL_AGENT_ID               | agent.id                                 |
| CORAL_AGENT_MODE             | agent.runtime (host, daemonset, sidecar) |
| CORAL_AGENT_HEALTH_MODE      | agent.mode (passive, active)             |
| CORAL_COLONY_ADDRESS         | colony.address                           |
| CORAL_COLONY_ID              | colony.id                                |
| CORAL_COLONY_JOIN_TOKEN      | colony.joinToken                         |
| CORAL_COLONY_JOIN_TOKEN_FILE | colony.joinTokenFile                     |
| CORAL_SERVICE_ACCOUNT_TOKEN_FILE | colony.serviceAccountTokenFile       |
| CORAL_COLONY_CA_FILE         | colony.caFile                            |
| CORAL_POLL_INTERVAL          | discovery.host.pollInterval              |
| CORAL_K8S_POLL_INTERVAL      | discovery.kubernetes.pollInterval        |
| CORAL_RESYNC_INTERVAL        | discovery.kubernetes.resyncInterval      |
| CORAL_INCLUDE_NAMESPACES     | discovery.kubernetes.includeNamespaces   |
| CORAL_EXCLUDE_NAMESPACES     | discovery.kubernetes.excludeNamespaces   |
| CORAL_INCLUDE_LABELS         | discovery.kubernetes.includeLabels       |
| CORAL_EXCLUDE_LABELS         | discovery.kubernetes.excludeLabels       |

| variable                     | colony settings key |
|------------------------------|---------------------|
| CORAL_COLONY_ID              | id                  |
| CORAL_AGENT_CERT_TTL         | agentCertTtl        |
| CORAL_TOKEN_REVIEW_KUBECONFIG | tokenReviewKubeconfig |
| CORAL_COLONY_LISTEN          | listen              |
| CORAL_COLONY_DATA_DIR        | dataDir             |
| CORAL_COLONY_TOKENS_FILE     | tokensFile          |
| CORAL_COLONY_OBSERVE_ONLY    | observeOnly         |
| CORAL_HEARTBEAT_INTERVAL     | heartbeatInterval   |
| CORAL_DEGRADED_AFTER         | degradedAfter       |
| CORAL_UNHEALTHY_AFTER        | unhealthyAfter      |
"""

from __future__ import annotations

import os
import pathlib
import re
import types
import typing
from collections.abc import Mapping
from typing import Annotated, Literal

import pydantic
from pydantic import alias_generators

from coral_lib import durations, yamlfile


class ConfigError(Exception):
    """A config problem the user can fix; str() is one line: source, key path, what is wrong."""

    def __init__(self, source: str, key: str, problem: str) -> None:
        problem = " ".join(problem.split())  # one line, whatever a library put in it
        self.source, self.key, self.problem = source, key, problem
        where = f"{source}: key {key}" if key else source
        super().__init__(f"{where}: {problem}")


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
    mode: Literal["passive", "active"] = "passive"
    id: str = pydantic.Field(default_factory=lambda: os.uname().nodename)
    runtime: Literal["auto", "host", "daemonset", "sidecar"] = "auto"


class ColonyClient(_Model):
    """Where the agent finds its colony and how it authenticates."""

    address: Address = "127.0.0.1:9443"
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


def _read_token(path: str, *, key: str, source: str) -> str:
    try:
        text = pathlib.Path(path).read_text(encoding="utf-8").strip()
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(source, key, f"cannot read {path}: {exc}") from None
    if not text:
        raise ConfigError(source, key, f"{path} is empty")
    return text


class AgentConfig(_Model):
    agent: Agent = pydantic.Field(default_factory=Agent)
    colony: ColonyClient = pydantic.Field(default_factory=ColonyClient)
    discovery: Discovery = pydantic.Field(default_factory=Discovery)
    overrides: Annotated[tuple[OverrideRule, ...], pydantic.BeforeValidator(_none_is_empty)] = ()
    services: Annotated[tuple[ExplicitService, ...], pydantic.BeforeValidator(_none_is_empty)] = ()
    _source: str = pydantic.PrivateAttr(default="<defaults>")

    def join_token(self) -> str:
        """colony.joinToken or the content of colony.joinTokenFile; '' when neither is set
        (an agent that already holds a certificate needs none)."""
        if self.colony.join_token.get_secret_value():
            return self.colony.join_token.get_secret_value()
        if not self.colony.join_token_file:
            return ""
        return _read_token(self.colony.join_token_file, key="colony.joinTokenFile",
                           source=self._source)

    def service_account_token(self) -> str:
        """The projected service account token (re-read on every join: kubelet rotates it)."""
        if not self.colony.service_account_token_file:
            return ""
        return _read_token(self.colony.service_account_token_file,
                           key="colony.serviceAccountTokenFile", source=self._source)

    def check_bootstrap(self) -> None:
        """ConfigError unless a join credential is configured or readable."""
        if self.colony.service_account_token_file:
            self.service_account_token()
        elif not self.join_token():
            raise ConfigError(self._source, "colony.joinToken",
                              "no join credential: set joinToken, joinTokenFile "
                              "(CORAL_COLONY_JOIN_TOKEN[_FILE]) or serviceAccountTokenFile")


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


# env var -> (key path in the file, kind). kind: str | list (a,b) | labels (k=v,k2=v2)
AGENT_ENV: dict[str, tuple[tuple[str, ...], str]] = {
    "CORAL_AGENT_ID": (("agent", "id"), "str"),
    "CORAL_AGENT_MODE": (("agent", "runtime"), "str"),
    "CORAL_AGENT_HEALTH_MODE": (("agent", "mode"), "str"),
    "CORAL_COLONY_ADDRESS": (("colony", "address"), "str"),
    "CORAL_COLONY_ID": (("colony", "id"), "str"),
    "CORAL_COLONY_SECRET": (("colony", "secret"), "str"),  # rejected: _NO_SECRET
    "CORAL_COLONY_SECRET_FILE": (("colony", "secretFile"), "str"),  # rejected: _NO_SECRET
    "CORAL_COLONY_JOIN_TOKEN": (("colony", "joinToken"), "str"),
    "CORAL_COLONY_JOIN_TOKEN_FILE": (("colony", "joinTokenFile"), "str"),
    "CORAL_SERVICE_ACCOUNT_TOKEN_FILE": (("colony", "serviceAccountTokenFile"), "str"),
    "CORAL_COLONY_CA_FILE": (("colony", "caFile"), "str"),
    "CORAL_COLONY_CA": (("colony", "ca"), "str"),
    "CORAL_POLL_INTERVAL": (("discovery", "host", "pollInterval"), "str"),
    "CORAL_K8S_POLL_INTERVAL": (("discovery", "kubernetes", "pollInterval"), "str"),
    "CORAL_RESYNC_INTERVAL": (("discovery", "kubernetes", "resyncInterval"), "str"),
    "CORAL_INCLUDE_NAMESPACES": (("discovery", "kubernetes", "includeNamespaces"), "list"),
    "CORAL_EXCLUDE_NAMESPACES": (("discovery", "kubernetes", "excludeNamespaces"), "list"),
    "CORAL_INCLUDE_LABELS": (("discovery", "kubernetes", "includeLabels"), "labels"),
    "CORAL_EXCLUDE_LABELS": (("discovery", "kubernetes", "excludeLabels"), "labels"),
}

COLONY_ENV: dict[str, tuple[tuple[str, ...], str]] = {
    "CORAL_COLONY_ID": (("id",), "str"),
    "CORAL_COLONY_SECRET": (("secret",), "str"),  # rejected: no shared secret any more
    "CORAL_COLONY_SECRET_FILE": (("secretFile",), "str"),
    "CORAL_AGENT_CERT_TTL": (("agentCertTtl",), "str"),
    "CORAL_TOKEN_REVIEW_KUBECONFIG": (("tokenReviewKubeconfig",), "str"),
    "CORAL_COLONY_LISTEN": (("listen",), "str"),
    "CORAL_COLONY_DATA_DIR": (("dataDir",), "str"),
    "CORAL_COLONY_TOKENS_FILE": (("tokensFile",), "str"),
    "CORAL_COLONY_OBSERVE_ONLY": (("observeOnly",), "str"),
    "CORAL_HEARTBEAT_INTERVAL": (("heartbeatInterval",), "str"),
    "CORAL_DEGRADED_AFTER": (("degradedAfter",), "str"),
    "CORAL_UNHEALTHY_AFTER": (("unhealthyAfter",), "str"),
}


def load_agent_config(
    path: str | os.PathLike[str] | None, *, environ: Mapping[str, str] | None = None
) -> AgentConfig:
    """Load the agent config file (None: defaults), then placeholders, then CORAL_* env.

    Raises ConfigError (one line naming the file, the key path and what is accepted).
    """
    config = _load(path, model=AgentConfig, env_table=AGENT_ENV,
                               environ=os.environ if environ is None else environ)
    config._source = "<defaults>" if path is None else os.fspath(path)
    return config


def load_colony_config(
    path: str | os.PathLike[str] | None, *, environ: Mapping[str, str] | None = None
) -> ColonySettings:
    """Load colony settings (None: defaults), placeholders and CORAL_* env; ConfigError."""
    settings = _load(path, model=ColonySettings, env_table=COLONY_ENV,
                                 environ=os.environ if environ is None else environ)
    settings._source = "<defaults>" if path is None else os.fspath(path)
    return settings


# ---- loading: read -> placeholders to tokens -> YAML -> CORAL_* env -> fill -> validate

_PLACEHOLDER = re.compile(r"\{\{\s*([A-Za-z_][A-Za-z0-9_]*)\s*\}\}")
# Placeholders become plain tokens before parsing: `{{` is not valid in YAML flow mappings.
_TOKEN = "__coral_placeholder_{}__"
_FILL = re.compile(r"__coral_placeholder_(\d+)__|" + _PLACEHOLDER.pattern)
_PLAIN_KEY = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_SECRET_KEYS = {"secret", "joinToken"}

EnvTable = Mapping[str, tuple[tuple[str, ...], str]]


class OverrideFile(_Model):
    overrides: Annotated[tuple[OverrideRule, ...], pydantic.BeforeValidator(_none_is_empty)] = ()


def load_override_file(
    path: str | os.PathLike[str], *, environ: Mapping[str, str] | None = None
) -> tuple[OverrideRule, ...]:
    """Rules from an override file (`--override-file`): `overrides: [...]` as in the agent
    config, or just the list. Errors name the entry, e.g. `overrides[2].selector.podLabel`.
    Callers append these after the config's own overrides[] (later rules win)."""
    loaded = _load(path, model=OverrideFile, env_table={}, list_key="overrides",
                   environ=os.environ if environ is None else environ)
    return loaded.overrides


def _load(
    path: str | os.PathLike[str] | None, *, model: type[_Model], env_table: EnvTable,
    environ: Mapping[str, str], list_key: str = "",
) -> typing.Any:
    source = "defaults" if path is None else f"config file {os.fspath(path)}"
    names: list[str] = []
    data: object = None
    if path is not None:
        text, names = _tokenize(_read(path, source))
        data = _parse(text, source)
    data = {} if data is None else data
    if list_key and isinstance(data, list):
        data = {list_key: data}
    if not isinstance(data, dict):
        also = f" (or a list of {list_key})" if list_key else ""
        raise ConfigError(source, "", f"the top level must be a mapping with keys "
                          f"{', '.join(_keys(model))}{also}; got {_kind(data)}")
    try:
        env_keys = _apply_env(data, table=env_table, environ=environ)
        data = _fill(data, path=(), names=names, environ=environ,
                     origin=lambda p: _origin(p, source=source, env_keys=env_keys))
    except RecursionError:
        raise ConfigError(
            source, "", "structure nested too deeply (or a recursive YAML alias)"
        ) from None
    return _validate(model, data, source=source, env_keys=env_keys)


def _read(path: str | os.PathLike[str], source: str) -> str:
    try:
        return yamlfile.read_text(path, source=source)
    except yamlfile.YamlFileError as exc:
        raise ConfigError(source, "", exc.problem) from None


def _tokenize(text: str) -> tuple[str, list[str]]:
    names: list[str] = []

    def token(match: re.Match[str]) -> str:
        names.append(match.group(1))
        return _TOKEN.format(len(names) - 1)

    return _PLACEHOLDER.sub(token, text), names


def _parse(text: str, source: str) -> object:
    try:
        return yamlfile.parse(text, source=source)
    except yamlfile.YamlFileError as exc:
        raise ConfigError(source, "", exc.problem) from None


def _apply_env(
    data: dict[typing.Any, typing.Any], *, table: EnvTable, environ: Mapping[str, str]
) -> dict[tuple[str, ...], str]:
    applied: dict[tuple[str, ...], str] = {}
    for var, (keys, kind) in table.items():
        raw = environ.get(var, "")
        if not raw:
            continue  # unset and empty mean the same: keep the file's value
        node = data
        for key in keys[:-1]:
            if node.get(key) is None:
                node[key] = {}
            node = node[key]
            if not isinstance(node, dict):
                break  # the file's own type error is reported by validation
        else:
            node[keys[-1]] = _env_value(raw, kind=kind, var=var, key=".".join(keys))
            applied[keys] = var
    return applied


def _env_value(raw: str, *, kind: str, var: str, key: str) -> object:
    if kind == "str":
        return raw
    items = [item.strip() for item in raw.split(",") if item.strip()]
    if kind == "list":
        return items
    labels = {}
    for item in items:
        name, sep, value = item.partition("=")
        if not sep or not name.strip():
            raise ConfigError(f"environment variable {var}", key,
                              f"invalid label {item!r}; expected k=v,k2=v2")
        labels[name.strip()] = value.strip()
    return labels


def _fill(
    node: object, *, path: tuple[object, ...], names: list[str], environ: Mapping[str, str],
    origin: typing.Callable[[tuple[object, ...]], str],
) -> object:
    if isinstance(node, str):
        def value(match: re.Match[str]) -> str:
            name = names[int(match.group(1))] if match.group(1) is not None else match.group(2)
            if name not in environ:
                raise ConfigError(origin(path), format_path(path),
                                  f"placeholder {{{{ {name} }}}} needs environment variable "
                                  f"{name}, which is not set; set it or write the value literally")
            return environ[name]
        return _FILL.sub(value, node)
    if isinstance(node, dict):
        return {
            _fill(k, path=path, names=names, environ=environ, origin=origin):
            _fill(v, path=(*path, k), names=names, environ=environ, origin=origin)
            for k, v in node.items()
        }
    if isinstance(node, list):
        return [_fill(v, path=(*path, i), names=names, environ=environ, origin=origin)
                for i, v in enumerate(node)]
    return node


def _origin(
    path: tuple[object, ...], *, source: str, env_keys: Mapping[tuple[str, ...], str]
) -> str:
    for keys, var in env_keys.items():
        if path[: len(keys)] == keys:
            return f"environment variable {var} (overriding {source})"
    return source


def _validate(
    model: type[_Model], data: object, *, source: str, env_keys: Mapping[tuple[str, ...], str]
) -> typing.Any:
    try:
        return model.model_validate(data, by_alias=True, by_name=False)
    except pydantic.ValidationError as exc:
        errors = exc.errors(include_url=False)
        first = errors[0]
        loc = tuple(first["loc"])
        more = f" (and {len(errors) - 1} more problem(s))" if len(errors) > 1 else ""
        raise ConfigError(_origin(loc, source=source, env_keys=env_keys), format_path(loc),
                          _describe(first, model=model, loc=loc) + more) from None


def format_path(loc: typing.Iterable[object]) -> str:
    """Key path as users read it: `overrides[2].selector.podLabel`, `labels["a.b/c"]`."""
    out = ""
    for seg in loc:
        if seg == "[key]":
            out += " (the key itself)"
        elif isinstance(seg, str) and _PLAIN_KEY.fullmatch(seg):
            out += f".{seg}" if out else seg
        elif isinstance(seg, int) and not isinstance(seg, bool):
            out += f"[{seg}]"
        else:
            out += f"[{str(seg)!r}]" if isinstance(seg, str) else f"[{seg!r}]"
    return out


def _describe(error: typing.Any, *, model: type[_Model], loc: tuple[object, ...]) -> str:
    kind, value = error["type"], error.get("input")
    shown = "<hidden>" if loc and loc[-1] in _SECRET_KEYS else _short(value)
    if kind == "extra_forbidden":
        parent = _model_at(model, loc[:-1])
        accepted = ", ".join(_keys(parent)) if parent else "none"
        return f"unknown key {loc[-1]!r}; accepted keys here: {accepted}"
    if kind == "missing":
        return f"required key {loc[-1]!r} is missing"
    if kind in ("value_error", "assertion_error"):
        return str(error["msg"]).removeprefix("Value error, ").removeprefix("Assertion failed, ")
    target = _model_at(model, loc)
    if kind == "model_type" and target is not None:
        return f"expected a mapping with keys {', '.join(_keys(target))}; got {_kind(value)}"
    if kind == "string_type" and isinstance(value, bool):
        return f"expected a string, got boolean {value}; quote it, e.g. \"{str(value).lower()}\""
    msg = re.sub(r" or instance of \w+", "", str(error["msg"])).replace("valid tuple", "list")
    return f"{msg}; got {_kind(value)} {shown}"


def _model_at(model: type[_Model], loc: tuple[object, ...]) -> type[_Model] | None:
    current: object = model
    for seg in loc:
        current = _unwrap(current)
        if isinstance(current, type) and issubclass(current, pydantic.BaseModel):
            fields = current.model_fields.items()
            match = [f.annotation for n, f in fields if seg in (n, f.alias)]
            current = match[0] if match else None
        else:
            args = [a for a in typing.get_args(current) if a is not Ellipsis]
            current = args[-1] if args else None
    current = _unwrap(current)
    is_model = isinstance(current, type) and issubclass(current, pydantic.BaseModel)
    return current if is_model else None


def _unwrap(tp: object) -> object:
    while typing.get_origin(tp) is Annotated:
        tp = typing.get_args(tp)[0]
    if typing.get_origin(tp) in (typing.Union, types.UnionType):
        tp = next((a for a in typing.get_args(tp) if a is not type(None)), None)
        return _unwrap(tp)
    return tp


def _keys(model: type[pydantic.BaseModel]) -> list[str]:
    return [field.alias or name for name, field in model.model_fields.items()]


def _kind(value: object) -> str:
    kinds = {dict: "a mapping", list: "a list", str: "a string", bool: "a boolean",
             int: "a number", float: "a number", type(None): "null"}
    return kinds.get(type(value), type(value).__name__)


def _short(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."
