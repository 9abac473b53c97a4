"""Reading configuration: files (through coral_lib.yamlfile), `{{ NAME }}` placeholders,
the CORAL_* environment table, and one-line ConfigErrors naming file, key path and fix.
"""

from __future__ import annotations

import os
import re
import types
import typing
from collections.abc import Mapping
from typing import Annotated

import pydantic

from coral_lib import yamlfile
from coral_lib.config import view
from coral_lib.config.models import (
    AgentConfig,
    ColonySettings,
    ConfigError,
    OverrideFile,
    OverrideRule,
    _Model,
)

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

# ---- reads the models point at (token files, the data directory default) -----------------

join_token = view.join_token  # run-time readers: defined where the agent finds them
service_account_token = view.service_account_token


def check_bootstrap(cfg: AgentConfig) -> None:
    """ConfigError unless a join credential is configured or readable."""
    if cfg.colony.service_account_token_file:
        service_account_token(cfg)
    elif not join_token(cfg):
        raise ConfigError(cfg._source, "colony.joinToken",
                          "no join credential: set joinToken, joinTokenFile "
                          "(CORAL_COLONY_JOIN_TOKEN[_FILE]) or serviceAccountTokenFile")


# ---- loading: read -> placeholders to tokens -> YAML -> CORAL_* env -> fill -> validate

_PLACEHOLDER = re.compile(r"\{\{\s*([A-Za-z_][A-Za-z0-9_]*)\s*\}\}")
# Placeholders become plain tokens before parsing: `{{` is not valid in YAML flow mappings.
_TOKEN = "__coral_placeholder_{}__"
_FILL = re.compile(r"__coral_placeholder_(\d+)__|" + _PLACEHOLDER.pattern)
_PLAIN_KEY = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_SECRET_KEYS = {"secret", "joinToken"}

EnvTable = Mapping[str, tuple[tuple[str, ...], str]]


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
