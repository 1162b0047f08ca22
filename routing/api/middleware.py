"""Size and media-type checks of `/routing` request bodies, before anything reads them.

Placed ahead of the HMAC middleware (which hashes the body): a body over
`settings.DATA_UPLOAD_MAX_MEMORY_SIZE` bytes (`routing.limits.MAX_BODY_BYTES`, 1 MiB) answers
413 and a non-empty body that is not JSON (`application/json` or `application/merge-patch+json`,
ACS 2023-11-01 §2) answers 415, both with the ACS error body. Without a Content-Length (chunked
uploads) the size is found by reading at most one byte past the limit, which Django does and
reports as RequestDataTooBig.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from asgiref.sync import iscoroutinefunction, markcoroutinefunction
from django.conf import settings
from django.core.exceptions import RequestDataTooBig
from django.http import HttpRequest, HttpResponse

from routing.api.errors import error_response, is_api_request
from routing.api.parsers import JSON_MEDIA_TYPES


def body_too_large() -> HttpResponse:
    limit = settings.DATA_UPLOAD_MAX_MEMORY_SIZE
    return error_response(413, "RequestEntityTooLarge", f"The request body is larger than {limit} bytes.")


def _declared_length(request: HttpRequest) -> int:
    try:
        return max(0, int(request.META.get("CONTENT_LENGTH") or 0))
    except ValueError:
        return 0


def check_body(request: HttpRequest) -> HttpResponse | None:
    """413 or 415 (ACS error body) for an API request whose body is too large or not JSON;
    None when it may go on."""
    if not is_api_request(request):
        return None
    limit = settings.DATA_UPLOAD_MAX_MEMORY_SIZE
    if limit is not None and _declared_length(request) > limit:
        return body_too_large()
    try:
        body = request.body
    except RequestDataTooBig:
        return body_too_large()
    media_type = (request.content_type or "").strip().lower()
    if body and media_type not in JSON_MEDIA_TYPES:
        return error_response(
            415,
            "UnsupportedMediaType",
            f"Request bodies must be {' or '.join(JSON_MEDIA_TYPES)}, not {media_type or 'untyped'}.",
        )
    return None


class GateMiddleware:
    """A middleware that may answer a request itself before the view runs: `check(request)`
    returns a response to send instead (a rejection) or None to go on.

    Both sync- and async-capable: under ASGI a sync-only middleware would force a thread hop on
    every request; the checks are short CPU work, and ASGIRequest has already read the body."""

    sync_capable = True
    async_capable = True

    def __init__(self, get_response: Callable[[HttpRequest], Any]) -> None:
        self.get_response = get_response
        self._async = iscoroutinefunction(get_response)
        if self._async:
            markcoroutinefunction(self)

    def check(self, request: HttpRequest) -> HttpResponse | None:
        raise NotImplementedError

    def __call__(self, request: HttpRequest) -> HttpResponse | Awaitable[HttpResponse]:
        if self._async:
            return self.__acall__(request)
        rejection = self.check(request)
        return rejection if rejection is not None else self.get_response(request)

    async def __acall__(self, request: HttpRequest) -> HttpResponse:
        rejection = self.check(request)
        return rejection if rejection is not None else await self.get_response(request)


class RequestLimitsMiddleware(GateMiddleware):
    """Applies `check_body` to every `/routing` request (before the HMAC middleware)."""

    def check(self, request: HttpRequest) -> HttpResponse | None:
        return check_body(request)
