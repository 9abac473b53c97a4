"""The one way to build a colony connection.

Precedence, the same for every front end: an explicit argument, else its CORAL_*
variable, else the local colony (its data directory holds ca.crt and admin.token; the
directory is CORAL_COLONY_DATA_DIR, else the colony's default).

An operator identifies with a token or with a client certificate from the colony CA
(client_cert + client_key, presented on the colony's --mtls-listen port); with a
certificate and no token given, no local token file is read.
"""

from __future__ import annotations

import dataclasses
import os
import pathlib
from collections.abc import Mapping

from coral_lib import errors

DEFAULT_ADDRESS = "127.0.0.1:9443"

# setting -> the variable that supplies it when no argument does
ENVIRONMENT = {
    "address": "CORAL_COLONY_ADDRESS",
    "ca_file": "CORAL_CA_FILE",
    "token": "CORAL_TOKEN",
    "token_file": "CORAL_TOKEN_FILE",
    "client_cert": "CORAL_CLIENT_CERT",
    "client_key": "CORAL_CLIENT_KEY",
    "tls_server_name": "CORAL_TLS_SERVER_NAME",
    "connect_timeout": "CORAL_CONNECT_TIMEOUT",
}
DEFAULT_CONNECT_TIMEOUT = 10.0
DATA_DIR_VARIABLE = "CORAL_COLONY_DATA_DIR"


@dataclasses.dataclass(frozen=True)
class Settings:
    """Where the colony is and how to prove who we are (the token is kept out of repr)."""

    address: str
    ca_file: str
    token: str = dataclasses.field(repr=False)
    client_cert: str = ""  # paths of a PEM client certificate and its key
    client_key: str = ""
    tls_server_name: str = ""  # the name the colony's certificate must carry, if not the host
    connect_timeout: float = DEFAULT_CONNECT_TIMEOUT


def default_data_dir(environ: Mapping[str, str] | None = None) -> pathlib.Path:
    """The local colony's data directory: CORAL_COLONY_DATA_DIR, else the colony's own
    default (coral_lib.config.default_data_dir)."""
    environ = os.environ if environ is None else environ
    if environ.get(DATA_DIR_VARIABLE):
        return pathlib.Path(environ[DATA_DIR_VARIABLE])
    from coral_lib import config  # loaded only when the local colony is the fallback

    return pathlib.Path(config.default_data_dir())


def resolve(*, address: str | None = None, ca_file: str | None = None,
            token: str | None = None, token_file: str | None = None,
            client_cert: str | None = None, client_key: str | None = None,
            tls_server_name: str | None = None, connect_timeout: float | str | None = None,
            environ: Mapping[str, str] | None = None) -> Settings:
    """Settings from arguments, CORAL_* variables and the local data directory (reads the
    token file). Raises errors.ConfigError naming what is missing or malformed."""
    environ = os.environ if environ is None else environ
    given = {"address": address, "ca_file": ca_file, "token": token, "token_file": token_file,
             "client_cert": client_cert, "client_key": client_key,
             "tls_server_name": tls_server_name, "connect_timeout": connect_timeout}
    chosen = {key: (str(value) if value else "") or environ.get(ENVIRONMENT[key]) or ""
              for key, value in given.items()}

    def local(name: str) -> str:
        return str(default_data_dir(environ) / name)

    if bool(chosen["client_cert"]) != bool(chosen["client_key"]):
        raise errors.ConfigError("a client certificate needs both client_cert "
                                 "(CORAL_CLIENT_CERT) and client_key (CORAL_CLIENT_KEY)")
    secret = chosen["token"].strip()
    if not secret and (chosen["token_file"] or not chosen["client_cert"]):
        path = chosen["token_file"] or local("admin.token")
        secret = read_token_file(path, named_by=bool(chosen["token_file"]))
    return Settings(address=chosen["address"] or DEFAULT_ADDRESS,
                    ca_file=chosen["ca_file"] or local("ca.crt"), token=secret,
                    client_cert=chosen["client_cert"], client_key=chosen["client_key"],
                    tls_server_name=chosen["tls_server_name"],
                    connect_timeout=seconds(chosen["connect_timeout"]))


def seconds(value: str) -> float:
    """A positive connect timeout from text ('' = the default); ConfigError otherwise."""
    if not value:
        return DEFAULT_CONNECT_TIMEOUT
    try:
        parsed = float(value)
    except ValueError:
        parsed = 0.0
    if not parsed > 0:
        raise errors.ConfigError(f"connect timeout {value!r} (CORAL_CONNECT_TIMEOUT): "
                                 "expected a positive number of seconds")
    return parsed


def read_pem(path: str, *, what: str) -> bytes:
    """A PEM file's bytes; ConfigError naming `what` and the path when unreadable."""
    try:
        return pathlib.Path(path).expanduser().read_bytes()
    except OSError as exc:
        raise errors.ConfigError(f"cannot read {what} {path}: {exc.strerror}") from None


def read_token_file(path: str, *, named_by: bool = True) -> str:
    """The operator token held in `path`; ConfigError when unreadable or empty."""
    try:
        secret = pathlib.Path(path).read_text().strip()
    except OSError as exc:
        origin = "the token file" if named_by else "the local colony's token file"
        raise errors.ConfigError(
            f"no operator token: no token given (CORAL_TOKEN) and {origin} {path} cannot be "
            f"read ({exc.strerror}); give a token or a token file (CORAL_TOKEN_FILE)"
        ) from None
    if not secret:
        raise errors.ConfigError(f"operator token file {path} is empty")
    return secret


def connect(*, address: str | None = None, ca_file: str | None = None,
            token: str | None = None, token_file: str | None = None,
            client_cert: str | None = None, client_key: str | None = None,
            tls_server_name: str | None = None, connect_timeout: float | str | None = None,
            timeout: float = 15.0, environ: Mapping[str, str] | None = None):
    """A connected coral_lib.client.Client (use it as a context manager to close it)."""
    from coral_lib import client  # gRPC loads only when a connection is made

    settings = resolve(address=address, ca_file=ca_file, token=token, token_file=token_file,
                       client_cert=client_cert, client_key=client_key,
                       tls_server_name=tls_server_name, connect_timeout=connect_timeout,
                       environ=environ)
    pair = None
    if settings.client_cert:
        pair = (read_pem(settings.client_cert, what="client certificate"),
                read_pem(settings.client_key, what="client key"))
    return client.connect(settings.address, ca_file=settings.ca_file, token=settings.token,
                          timeout=timeout, client_cert=pair,
                          tls_server_name=settings.tls_server_name,
                          connect_timeout=settings.connect_timeout)
