"""ApiError and the metav1.Status documents the fixture answers with."""

from __future__ import annotations

_REASONS = {400: "BadRequest", 401: "Unauthorized", 403: "Forbidden", 404: "NotFound",
            405: "MethodNotAllowed", 406: "NotAcceptable", 409: "Conflict", 410: "Expired",
            415: "UnsupportedMediaType", 422: "Invalid", 500: "InternalError",
            503: "ServiceUnavailable", 504: "Timeout"}


class ApiError(Exception):
    def __init__(self, code: int, message: str, *, reason: str | None = None,
                 details: dict | None = None):
        super().__init__(message)
        self.code = code
        self.message = message
        self.reason = reason or _REASONS.get(code, "Unknown")
        self.details = details

    def status(self) -> dict:
        return status_doc(self.code, self.message, reason=self.reason, details=self.details)


def status_doc(code: int, message: str, *, reason: str, details: dict | None = None) -> dict:
    doc = {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
           "message": message, "reason": reason, "code": code}
    if details:
        doc["details"] = details
    return doc


def success_doc(details: dict | None = None) -> dict:
    doc = {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success"}
    if details:
        doc["details"] = details
    return doc


def bad_request(message: str) -> ApiError:
    return ApiError(400, message)


def not_found(rt_plural: str, name: str, group: str = "") -> ApiError:
    what = f"{rt_plural}.{group}" if group else rt_plural
    return ApiError(404, f'{what} "{name}" not found',
                    details={"name": name, "group": group, "kind": rt_plural})


def already_exists(rt_plural: str, name: str, group: str = "") -> ApiError:
    what = f"{rt_plural}.{group}" if group else rt_plural
    return ApiError(409, f'{what} "{name}" already exists', reason="AlreadyExists",
                    details={"name": name, "group": group, "kind": rt_plural})


def conflict(rt_plural: str, name: str, group: str = "") -> ApiError:
    what = f"{rt_plural}.{group}" if group else rt_plural
    return ApiError(409, f'Operation cannot be fulfilled on {what} "{name}": the object has '
                    "been modified; please apply your changes to the latest version and try again",
                    details={"name": name, "group": group, "kind": rt_plural})


def invalid(kind: str, name: str, message: str) -> ApiError:
    return ApiError(422, f'{kind} "{name}" is invalid: {message}',
                    details={"name": name, "kind": kind})


def gone(message: str) -> ApiError:
    return ApiError(410, message, reason="Expired")
