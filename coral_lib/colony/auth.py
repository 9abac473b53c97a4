"""Who is calling: agents by colony id + secret, operators by token or client certificate."""

from __future__ import annotations

import dataclasses
import hmac
import json
import os
import pathlib

import grpc

from coral_lib.colony import guard as guard_mod


@dataclasses.dataclass(frozen=True)
class Identity:
    name: str
    groups: tuple[str, ...] = ()


class TokenBook:
    """Operator tokens from a JSON file: {"tokens": [{"token", "identity", "groups"}]}."""

    def __init__(self, path: str | os.PathLike) -> None:
        self.path = pathlib.Path(path)
        self._entries = _load_tokens(self.path)

    def tokens(self) -> list[str]:
        return [token for token, _ in self._entries]

    def lookup(self, token: str) -> Identity | None:
        for known, identity in self._entries:
            if hmac.compare_digest(known.encode(), token.encode()):
                return identity
        return None


def _load_tokens(path: pathlib.Path) -> list[tuple[str, Identity]]:
    try:
        body = json.loads(path.read_text())
        entries = body["tokens"]
        return [
            (str(e["token"]), Identity(str(e["identity"]), tuple(e.get("groups", ()))))
            for e in entries
        ]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise ValueError(
            f"tokens file {path}: expected JSON {{\"tokens\": [{{\"token\", \"identity\", "
            f"\"groups\"}}]}}: {exc}"
        ) from None


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
