"""The agent's configuration at run time: validated by the pydantic models in a forked
child, held by the agent as plain read-only data (issue 15, "A leaner agent").

pydantic, the models and YAML cost an agent ~8 MB it never uses after start-up, so the
agent process does not import them: `load_agent_config` forks, the child loads and
validates exactly as `coral_lib.config.loader` always does (same ConfigError, same
message), and sends the result back as JSON; the parent rebuilds it as `Section`s with the
models' attribute names (and their properties' values), so run-time code reads either.
This module imports nothing heavy; the token readers live here (and ConfigError in
coral_lib.config.errors) so the agent's run-time modules need nothing else from
coral_lib.config.
"""

from __future__ import annotations

import json
import os
import pathlib
import traceback
from collections.abc import Callable
from typing import Any

from coral_lib import pagecache
from coral_lib.config import errors

ConfigError = errors.ConfigError  # what the agent's run-time modules raise and catch


class Secret:
    """A secret value (pydantic.SecretStr's reading API); repr and str never show it."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def get_secret_value(self) -> str:
        return self._value

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other._value == self._value

    __hash__ = None  # type: ignore[assignment]  # compared by value, never hashed

    def __repr__(self) -> str:
        return "Secret('**********')" if self._value else "Secret('')"

    __str__ = __repr__


class Section:
    """One validated model as plain attributes (read-only); `model_copy(update=)` as the
    models have it, for the few places that derive a changed copy."""

    def __init__(self, fields: dict[str, Any]) -> None:
        object.__setattr__(self, "_fields", dict(fields))
        for name, value in fields.items():
            object.__setattr__(self, name, value)

    def __setattr__(self, name: str, value: object) -> None:
        if name != "_source":
            raise AttributeError(f"config is read-only: {name}")
        object.__setattr__(self, name, value)

    def model_copy(self, *, update: dict[str, Any] | None = None) -> Section:
        copy = Section({**self._fields, **(update or {})})
        if "_source" in self.__dict__:
            copy._source = self._source
        return copy

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Section) and self._fields == other._fields

    def __repr__(self) -> str:
        return f"Section({self._fields!r})"


def plain(value: Any) -> Any:
    """A validated model (or a value inside one) as JSON-able data: models become
    {"__section__": fields + property values}, secrets {"__secret__": value}, dicts
    {"__dict__": ...} and sequences {"__tuple__": [...]}, so no key a user writes is
    mistaken for a tag."""
    import pydantic  # only in the validating child (and tests): the agent never loads it

    if isinstance(value, pydantic.BaseModel):
        cls = type(value)
        fields = {name: plain(getattr(value, name)) for name in cls.model_fields}
        own = [klass for klass in cls.__mro__ if issubclass(klass, pydantic.BaseModel)
               and klass.__module__.startswith("coral_lib.")]  # the models' properties
        fields.update({name: plain(getattr(value, name)) for klass in own
                       for name, attr in vars(klass).items()
                       if isinstance(attr, property) and not name.startswith("_")})
        return {"__section__": fields}
    if isinstance(value, pydantic.SecretStr):
        return {"__secret__": value.get_secret_value()}
    if isinstance(value, dict):
        return {"__dict__": {str(k): plain(v) for k, v in value.items()}}
    if isinstance(value, list | tuple):
        return {"__tuple__": [plain(v) for v in value]}
    return value


def rebuild(data: Any) -> Any:
    """plain()'s output back as Sections, Secrets, tuples and dicts."""
    if isinstance(data, dict):
        if "__section__" in data:
            return Section({k: rebuild(v) for k, v in data["__section__"].items()})
        if "__secret__" in data:
            return Secret(data["__secret__"])
        if "__tuple__" in data:
            return tuple(rebuild(v) for v in data["__tuple__"])
        return {k: rebuild(v) for k, v in data["__dict__"].items()}
    return data


def load_agent_config(path: str | os.PathLike[str] | None) -> Section:
    """coral_lib.config.load_agent_config, validated in a forked child; ConfigError as it
    raises it."""
    spec = None if path is None else os.fspath(path)
    cfg = in_child(_validate_agent_config, spec)
    cfg._source = "<defaults>" if spec is None else spec
    return cfg


def load_override_file(path: str | os.PathLike[str]) -> tuple[Section, ...]:
    """coral_lib.config.load_override_file, validated in a forked child."""
    return in_child(_validate_override_file, os.fspath(path))


def _validate_agent_config(path: str | None) -> Any:
    from coral_lib.config import loader
    return plain(loader.load_agent_config(path))


def _validate_override_file(path: str) -> Any:
    from coral_lib.config import loader
    return plain(loader.load_override_file(path))


def in_child(validate: Callable[[str | None], Any], arg: str | None) -> Any:
    """validate(arg) in a forked child (its imports die with it); its result rebuilt here,
    or its ConfigError raised here. The agent calls it at start, before any gRPC thread:
    grpcio's fork handlers abort or hang a child forked while other threads are in gRPC."""
    read_fd, write_fd = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: validate, report, exit without running the parent's cleanup
        status = 0
        try:
            os.close(read_fd)
            try:
                reply: dict[str, Any] = {"ok": validate(arg)}
            except ConfigError as exc:
                reply = {"config_error": [exc.source, exc.key, exc.problem]}
            except Exception:  # noqa: BLE001 - reported to the parent, which raises it
                reply = {"crash": traceback.format_exc()}
            # what the child read (pydantic, YAML, the models) stays charged to the agent's
            # cgroup as page cache unless dropped once the child is gone (coral_lib.pagecache)
            reply["files"] = sorted(pagecache.started_files())
            with os.fdopen(write_fd, "w", encoding="utf-8") as out:
                out.write(json.dumps(reply))
        except BaseException:  # noqa: BLE001 - never return into the parent's code
            status = 1
        finally:
            os._exit(status)
    os.close(write_fd)
    with os.fdopen(read_fd, encoding="utf-8") as pipe:
        text = pipe.read()
    os.waitpid(pid, 0)
    if not text:
        raise RuntimeError("config validation child exited without an answer")
    reply = json.loads(text)
    pagecache.release(reply.get("files", ()))
    if "config_error" in reply:
        raise ConfigError(*reply["config_error"])
    if "crash" in reply:
        raise RuntimeError(f"config validation failed:\n{reply['crash']}")
    return rebuild(reply["ok"])


# ---- run-time readers (on models and Sections alike)

def join_token(cfg: Any) -> str:
    """colony.joinToken or the content of colony.joinTokenFile; '' when neither is set
    (an agent that already holds a certificate needs none)."""
    if cfg.colony.join_token.get_secret_value():
        return cfg.colony.join_token.get_secret_value()
    if not cfg.colony.join_token_file:
        return ""
    return _read_token(cfg.colony.join_token_file, key="colony.joinTokenFile",
                       source=cfg._source)


def service_account_token(cfg: Any) -> str:
    """The projected service account token (re-read on every join: kubelet rotates it)."""
    if not cfg.colony.service_account_token_file:
        return ""
    return _read_token(cfg.colony.service_account_token_file,
                       key="colony.serviceAccountTokenFile", source=cfg._source)


def _read_token(path: str, *, key: str, source: str) -> str:
    try:
        text = pathlib.Path(path).read_text(encoding="utf-8").strip()
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(source, key, f"cannot read {path}: {exc}") from None
    if not text:
        raise ConfigError(source, key, f"{path} is empty")
    return text
