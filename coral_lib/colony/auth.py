"""Who is calling: agents by colony id + secret, operators by token or client certificate."""

from __future__ import annotations

import dataclasses
import hashlib
import hmac
import json
import logging
import os
import pathlib

import grpc

from coral_lib import files
from coral_lib.colony import guard as guard_mod

log = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True)
class Identity:
    name: str
    groups: tuple[str, ...] = ()


class TokenBook:
    """Operator tokens from a JSON file holding only their SHA-256:
    {"tokens": [{"token_sha256", "identity", "groups"}]}.

    A file from older versions with plaintext "token" entries is rewritten with hashes on
    load (atomically, 0600). Tokens are 256-bit random strings, so one SHA-256 is enough:
    there is no dictionary to try, and a stolen file does not let anyone log in.
    """

    def __init__(self, path: str | os.PathLike) -> None:
        self.path = pathlib.Path(path)
        self._entries = _load_tokens(self.path)

    def lookup(self, token: str) -> Identity | None:
        given, found = token_hash(token), None
        for known, identity in self._entries:  # no early exit: same time for every token
            if hmac.compare_digest(known, given) and found is None:
                found = identity
        return found


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def hashed_entries(entries: list[dict]) -> list[dict]:
    """tokens.json entries with any plaintext "token" replaced by its "token_sha256"."""
    out = []
    for entry in entries:
        entry = dict(entry)
        if "token" in entry:
            entry["token_sha256"] = token_hash(str(entry.pop("token")))
        out.append(entry)
    return out


def save_tokens(path: str | os.PathLike, entries: list[dict]) -> None:
    """Write tokens.json (hashes only) atomically, 0600."""
    files.write_atomic(path, json.dumps({"tokens": hashed_entries(entries)}, indent=2),
                       mode=0o600)


def _load_tokens(path: pathlib.Path) -> list[tuple[str, Identity]]:
    expected = ('expected JSON {"tokens": [{"token_sha256" (or a plaintext "token"), '
                '"identity", "groups"}]}')
    try:
        entries = json.loads(path.read_text())["tokens"]
        if not isinstance(entries, list):
            raise TypeError("tokens is not a list")
        if any(isinstance(e, dict) and "token" in e for e in entries):
            try:
                save_tokens(path, entries)
                log.warning("tokens file %s held plaintext tokens; rewrote it with their "
                            "SHA-256 only", path)
            except OSError as exc:
                log.error("tokens file %s holds plaintext tokens and cannot be rewritten "
                          "with hashes: %s", path, exc)
            entries = hashed_entries(entries)
        result = []
        for e in entries:
            digest = str(e["token_sha256"]).lower()
            if len(digest) != 64 or any(c not in "0123456789abcdef" for c in digest):
                raise ValueError(f"token_sha256 of {e.get('identity')!r} is not 64 hex digits")
            result.append((digest, Identity(str(e["identity"]), tuple(e.get("groups", ())))))
        return result
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
        raise ValueError(f"tokens file {path}: {expected}: {exc}") from None


def secret_matches(given: str, expected: str) -> bool:
    """Constant-time comparison, so the secret cannot be guessed byte by byte."""
    return hmac.compare_digest(given.encode(), expected.encode())


def operator(context: grpc.ServicerContext, book: TokenBook,
             guard: guard_mod.PeerGuard | None = None) -> Identity:
    """The calling operator, or abort UNAUTHENTICATED. With a `guard`, wrong tokens are
    audited and a peer with too many of them is throttled (RESOURCE_EXHAUSTED)."""
    metadata = dict(context.invocation_metadata() or ())
    header = metadata.get("authorization", "")
    if header.lower().startswith("bearer "):
        guard_mod.throttled(context, guard)
        identity = book.lookup(header[7:].strip())
        if identity is not None:
            return identity
        if guard is not None:
            guard.failed(context.peer(), what="login", reason="unknown operator token")
        context.abort(grpc.StatusCode.UNAUTHENTICATED, "unknown operator token")
    names = (context.auth_context() or {}).get("x509_common_name") or []
    if names:
        return Identity(names[0].decode(), ("cert",))
    context.abort(
        grpc.StatusCode.UNAUTHENTICATED,
        "no credentials: send a bearer token or a client certificate signed by the colony CA",
    )
    raise AssertionError("unreachable")
