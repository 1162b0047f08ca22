"""The one place that turns failures into the ACS error body (ACS 2023-11-01 §2.4):
`{"error": {"code", "message", "target"?}}` plus the `x-ms-error-code` header. Never a
Retry-After header on a 4xx: azure-core retries any 4xx that carries one.

Every failure under `/routing` gets this body:
- domain errors (`RouterError`) and DRF's own (parse errors, 415, 405) in `exception_handler`;
- any other exception in a view: 500 `InternalServerError`, logged with `logger.exception` under
  an error id that the message repeats; a database that is unavailable, locked or deadlocked
  (`OperationalError`) is 503 `ServiceUnavailable` with `Retry-After: 1` (the SDK retries it);
- exceptions outside the views (middleware, URL resolution) through `server_error` and
  `bad_request`, Django's `handler500` / `handler400` (`jobrouter/urls.py`), which answer the same
  body for API paths and Django's pages elsewhere.
"""

from __future__ import annotations

import logging
import sys
import uuid
from typing import Any

from django.core.exceptions import RequestDataTooBig
from django.db import IntegrityError, OperationalError
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.views import defaults
from rest_framework import exceptions as drf
from rest_framework.response import Response

from routing.errors import RouterError

logger = logging.getLogger("routing.api")
# Seconds a client should wait before retrying a 503 (database unavailable, locked, deadlocked).
RETRY_AFTER_SECONDS = 1

_DRF_CODES = {
    drf.ParseError: "BadRequest",
    drf.UnsupportedMediaType: "UnsupportedMediaType",
    drf.MethodNotAllowed: "MethodNotAllowed",
    drf.NotFound: "NotFound",
    drf.NotAuthenticated: "Unauthorized",
    drf.AuthenticationFailed: "Unauthorized",
    drf.PermissionDenied: "Forbidden",
}


def error_body(code: str, message: str, target: str | None = None) -> dict[str, Any]:
    error: dict[str, Any] = {"code": code, "message": message}
    if target:
        error["target"] = target
    return {"error": error}


def is_api_request(request: HttpRequest) -> bool:
    """True for the ACS API's paths (`/routing…`), matched on the decoded path as the URL
    resolver and the HMAC middleware match it."""
    return request.path_info.lstrip("/").startswith("routing")


def error_response(status: int, code: str, message: str, headers: dict[str, str] | None = None) -> JsonResponse:
    """A plain Django response with the ACS error body and `x-ms-error-code` (outside DRF)."""
    response = JsonResponse(error_body(code, message), status=status, headers=headers)
    response["x-ms-error-code"] = code
    return response


def _unexpected(exc: BaseException | None) -> tuple[int, str, str, dict[str, str]]:
    """(status, code, message, headers) of an exception no one handled; logs it with an id."""
    error_id = str(uuid.uuid4())
    logger.error("unexpected %s, error id %s", type(exc).__name__, error_id, exc_info=exc)
    if isinstance(exc, OperationalError):
        message = f"The database is unavailable or busy; retry the request (error id {error_id})."
        return 503, "ServiceUnavailable", message, {"Retry-After": str(RETRY_AFTER_SECONDS)}
    return 500, "InternalServerError", f"The server failed to handle the request (error id {error_id}).", {}


def exception_handler(exc: Exception, context: dict) -> Response | None:
    """DRF's EXCEPTION_HANDLER: every exception a view raises becomes the ACS error body."""
    if isinstance(exc, RouterError):
        return Response(
            error_body(exc.code, exc.message, exc.target), status=exc.status, headers={"x-ms-error-code": exc.code}
        )
    if isinstance(exc, drf.APIException):
        code = next((c for cls, c in _DRF_CODES.items() if isinstance(exc, cls)), "BadRequest")
        detail = exc.detail if isinstance(exc.detail, str) else str(exc.detail)
        if isinstance(exc, drf.ParseError):
            detail = f"The request body is not valid JSON: {detail}"
        return Response(error_body(code, detail), status=exc.status_code, headers={"x-ms-error-code": code})
    if isinstance(exc, IntegrityError):
        # Two requests created the same resource at once; the loser may simply retry.
        message = "The resource was changed by a concurrent request; retry."
        return Response(error_body("Conflict", message), status=409, headers={"x-ms-error-code": "Conflict"})
    status, code, message, headers = _unexpected(exc)
    return Response(error_body(code, message), status=status, headers={"x-ms-error-code": code, **headers})


def server_error(request: HttpRequest) -> HttpResponse:
    """`handler500`: an exception outside the views (middleware, URL map). API paths get the
    ACS body with an error id (503 for the database, as in `exception_handler`); others Django's page."""
    if not is_api_request(request):
        return defaults.server_error(request)
    status, code, message, headers = _unexpected(sys.exc_info()[1])
    return error_response(status, code, message, headers)


def bad_request(request: HttpRequest, exception: Exception) -> HttpResponse:
    """`handler400`: Django's own refusals (a body over DATA_UPLOAD_MAX_MEMORY_SIZE, too many
    fields, a bad Host) as the ACS body for API paths: 413 for an oversize body, else 400."""
    if not is_api_request(request):
        return defaults.bad_request(request, exception)
    if isinstance(exception, RequestDataTooBig):
        return error_response(413, "RequestEntityTooLarge", "The request body is too large.")
    return error_response(400, "BadRequest", "The request was refused: " + type(exception).__name__)


def not_found_json(request, exception=None) -> JsonResponse:
    """404 for URLs no operation answers, in the ACS error shape."""
    return error_response(404, "NotFound", f"No operation at {request.path[:300]}.")
