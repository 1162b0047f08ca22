"""The one place that turns failures into the ACS error body (ACS 2023-11-01 §2.4):
`{"error": {"code", "message", "target"?}}` plus the `x-ms-error-code` header. Never a
Retry-After header: azure-core retries any 4xx that carries one."""

from __future__ import annotations

from typing import Any

from django.http import JsonResponse
from rest_framework import exceptions as drf
from rest_framework.response import Response

from routing.errors import RouterError

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


def exception_handler(exc: Exception, context: dict) -> Response | None:
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
    return None


def not_found_json(request, exception=None) -> JsonResponse:
    """404 for URLs no operation answers, in the ACS error shape."""
    response = JsonResponse(error_body("NotFound", f"No operation at {request.path}."), status=404)
    response["x-ms-error-code"] = "NotFound"
    return response
