"""One exception hierarchy for all of loopml.

Each class carries its HTTP status and a stable ``error_code``, so the server
maps an exception to a response, and the client maps the response back to the
same class through a fixed table (never by importing a name the server sent).

>>> raise NotFound("run 'abc' not found", details={"run_id": "abc"})
Traceback (most recent call last):
loopml.errors.NotFound: run 'abc' not found
"""

from __future__ import annotations

from typing import Any, ClassVar


class LoopmlError(Exception):
    """Base of every error loopml raises on purpose."""

    status_code: ClassVar[int] = 500
    error_code: ClassVar[str] = "INTERNAL_ERROR"
    exit_code: ClassVar[int] = 1

    def __init__(self, message: str, *, details: dict[str, Any] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.details = details or {}

    def to_dict(self) -> dict[str, Any]:
        """The JSON body the server answers with."""
        return {"error_code": self.error_code, "message": self.message, "details": self.details}


class NotFound(LoopmlError):
    status_code = 404
    error_code = "NOT_FOUND"


class AlreadyExists(LoopmlError):
    status_code = 409
    error_code = "ALREADY_EXISTS"


class InvalidInput(LoopmlError):
    status_code = 400
    error_code = "INVALID_INPUT"
    exit_code = 2


class PayloadTooLarge(InvalidInput):
    """A request body over the server's limit (``LOOPML_MAX_REQUEST_BYTES``/``..._UPLOAD_BYTES``)."""

    status_code = 413
    error_code = "PAYLOAD_TOO_LARGE"


class UnsupportedMediaType(InvalidInput):
    """A request body of a Content-Type the route refuses (e.g. a cross-site text/plain POST)."""

    status_code = 415
    error_code = "UNSUPPORTED_MEDIA_TYPE"


class Conflict(LoopmlError):
    status_code = 409
    error_code = "CONFLICT"


class PermissionDenied(LoopmlError):
    status_code = 403
    error_code = "PERMISSION_DENIED"


class Unauthenticated(LoopmlError):
    """No valid credentials: a missing, unknown, expired or revoked token, or a wrong password."""

    status_code = 401
    error_code = "UNAUTHENTICATED"


class GateFailed(LoopmlError):
    status_code = 422
    error_code = "GATE_FAILED"


class IntegrityError(LoopmlError):
    status_code = 500
    error_code = "INTEGRITY_ERROR"


class Unavailable(LoopmlError):
    """A transient failure: the caller may retry."""

    status_code = 503
    error_code = "UNAVAILABLE"


ERRORS_BY_CODE: dict[str, type[LoopmlError]] = {
    cls.error_code: cls
    for cls in (
        LoopmlError,
        NotFound,
        AlreadyExists,
        InvalidInput,
        PayloadTooLarge,
        UnsupportedMediaType,
        Conflict,
        PermissionDenied,
        Unauthenticated,
        GateFailed,
        IntegrityError,
        Unavailable,
    )
}


def error_from_dict(body: dict[str, Any], status: int) -> LoopmlError:
    """Rebuild the exception a server response describes (fixed table, unknown codes -> base)."""
    cls = ERRORS_BY_CODE.get(str(body.get("error_code")), LoopmlError)
    details = body.get("details")
    return cls(str(body.get("message", f"HTTP {status}")), details=details if details else None)
