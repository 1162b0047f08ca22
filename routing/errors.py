"""The one domain error type. The API maps it to the ACS error body in one exception handler;
the admin and the desk show its message."""

from __future__ import annotations


class RouterError(Exception):
    """A refused domain operation.

    `status` is the HTTP status the REST API answers with (400 invalid input, 404 unknown id,
    409 conflict with the current state, 412 failed precondition); `code` is the ACS error code
    (`error.code` in the body); `message` is for people.
    """

    status = 400
    code = "BadRequest"

    def __init__(self, message: str, *, code: str | None = None, target: str | None = None):
        super().__init__(message)
        self.message = message
        if code is not None:
            self.code = code
        self.target = target


class InvalidRequest(RouterError):
    status = 400
    code = "InvalidRequest"


class NotFound(RouterError):
    status = 404
    code = "NotFound"


class Conflict(RouterError):
    status = 409
    code = "Conflict"


class PreconditionFailed(RouterError):
    status = 412
    code = "PreconditionFailed"
