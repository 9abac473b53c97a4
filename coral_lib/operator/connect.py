"""The one way to build a colony connection.

Precedence, the same for every front end: an explicit argument, else its CORAL_*
variable, else the local colony (its data directory holds ca.crt and admin.token; the
directory is CORAL_COLONY_DATA_DIR, else the colony's default).
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
}
DATA_DIR_VARIABLE = "CORAL_COLONY_DATA_DIR"


@dataclasses.dataclass(frozen=True)
class Settings:
    """Where the colony is and how to prove who we are (the token is kept out of repr)."""

    address: str
    ca_file: str
    token: str = dataclasses.field(repr=False)


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
            environ: Mapping[str, str] | None = None) -> Settings:
    """Settings from arguments, CORAL_* variables and the local data directory (reads the
    token file). Raises errors.ConfigError naming what is missing."""
    environ = os.environ if environ is None else environ
    given = {"address": address, "ca_file": ca_file, "token": token, "token_file": token_file}
    chosen = {key: (value or environ.get(ENVIRONMENT[key]) or "")
              for key, value in given.items()}

    def local(name: str) -> str:
        return str(default_data_dir(environ) / name)

    secret = chosen["token"].strip()
    if not secret:
        path = chosen["token_file"] or local("admin.token")
        secret = read_token_file(path, named_by=bool(chosen["token_file"]))
    return Settings(address=chosen["address"] or DEFAULT_ADDRESS,
                    ca_file=chosen["ca_file"] or local("ca.crt"), token=secret)


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
            timeout: float = 15.0, environ: Mapping[str, str] | None = None):
    """A connected coral_lib.client.Client (use it as a context manager to close it)."""
    from coral_lib import client  # gRPC loads only when a connection is made

    settings = resolve(address=address, ca_file=ca_file, token=token, token_file=token_file,
                       environ=environ)
    return client.connect(settings.address, ca_file=settings.ca_file, token=settings.token,
                          timeout=timeout)
