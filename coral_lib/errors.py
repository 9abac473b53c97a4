"""The one exception root of coral_lib, and its kinds.

Every error a front end (CLI, Ansible plugins) shows to a user derives from CoralError.
`kind` is the stable name front ends report (the modules' `error_kind`), `code` the gRPC
status the colony answered with (empty when the error arose on this side). Front ends
branch on the class or on `kind`, never on the message text.
"""

from __future__ import annotations


class CoralError(Exception):
    """Anything the colony, the connection to it or the caller's settings refused; the
    message is for users."""

    code = ""

    def __init__(self, message: str = "", *, code: str = "") -> None:
        super().__init__(message)
        if code:
            self.code = code

    @property
    def kind(self) -> str:
        return type(self).__name__


class ConfigError(CoralError):
    """The caller's settings cannot work: no token, an unreadable file, a bad value."""


class Unreachable(CoralError):
    code = "UNAVAILABLE"


class Unauthenticated(CoralError):
    code = "UNAUTHENTICATED"


class PermissionDenied(CoralError):
    code = "PERMISSION_DENIED"


class NoTargets(CoralError):
    code = "NOT_FOUND"


class InvalidRequest(CoralError):
    code = "INVALID_ARGUMENT"


class RateLimited(CoralError):
    """Over the colony's rate limit; retry after `retry_after` seconds."""

    code = "RESOURCE_EXHAUSTED"

    def __init__(self, message: str, *, retry_after: float = 0.0) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class ApprovalPending(CoralError):
    """The operation waits for another identity's approval (`coral approve ID`)."""

    def __init__(self, approval_id: str, *, expires_at: float = 0.0, reason: str = "") -> None:
        super().__init__(f"waiting for approval {approval_id} (coral approve {approval_id})"
                         + (f": {reason}" if reason else ""))
        self.approval_id, self.expires_at = approval_id, expires_at


# gRPC status name -> the error class a client raises for it (the rest: CoralError)
BY_STATUS: dict[str, type[CoralError]] = {
    "UNAVAILABLE": Unreachable,
    "DEADLINE_EXCEEDED": Unreachable,
    "UNAUTHENTICATED": Unauthenticated,
    "PERMISSION_DENIED": PermissionDenied,
    "NOT_FOUND": NoTargets,
    "INVALID_ARGUMENT": InvalidRequest,
    "RESOURCE_EXHAUSTED": RateLimited,
}
