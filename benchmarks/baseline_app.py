"""ASGI entry point for benchmarks: the real router application plus one baseline endpoint.

Serve it exactly like the real server:

    python -m daphne -b 127.0.0.1 -p 8000 benchmarks.baseline_app:application

Everything behaves as `jobrouter.asgi:application` (it *is* that application object), except that
`POST /baseline/rows` is answered by `BaselineRowsView`: a minimal DRF view that verifies the
ACS HMAC signature itself (the HMAC middleware only guards `/routing` paths) and inserts one row.

The baseline route is added to the root URLconf at import time rather than dispatched by an
outer ASGI wrapper, so a baseline request takes exactly the same path through the server as an
API request: daphne -> Channels ProtocolTypeRouter -> Django ASGIHandler -> the full middleware
stack -> URL resolver -> a DRF APIView run in Django's sync thread -> SQLite. The measured
difference between a baseline request and a router request is therefore only what the router's
view does (validation, domain logic, queries, matching, rendering).

The row is a `routing.RouterTimer` with `fired_at` already set, so the timer loop (which only
looks at rows with `fired_at IS NULL`) never picks it up. No source file is modified.
"""

from __future__ import annotations

import os

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "jobrouter.settings")

from jobrouter.asgi import application as _router_application  # noqa: E402  (runs django.setup())

from django.conf import settings  # noqa: E402
from django.urls import path  # noqa: E402
from django.utils import timezone  # noqa: E402
from rest_framework.request import Request  # noqa: E402
from rest_framework.response import Response  # noqa: E402
from rest_framework.views import APIView  # noqa: E402

import jobrouter.urls  # noqa: E402
from routing.api.auth import HmacAuthError, raw_request_target, verify_signature  # noqa: E402
from routing.models import RouterTimer, TimerKind  # noqa: E402

BASELINE_PATH = "baseline/rows"


class BaselineRowsView(APIView):
    """POST /baseline/rows: check the HMAC signature, parse the JSON body, insert one row."""

    def post(self, request: Request) -> Response:
        django_request = request._request
        try:
            # The same call, with the same arguments, as HmacAuthenticationMiddleware._check.
            verify_signature(
                method=django_request.method or "",
                path_and_query=raw_request_target(django_request),
                host=django_request.META.get("HTTP_HOST", ""),
                headers=django_request.headers,
                body=django_request.body,
                access_key=settings.JOBROUTER_ACCESS_KEY,
                now=timezone.now(),
                max_skew_seconds=float(settings.JOBROUTER_MAX_CLOCK_SKEW_SECONDS),
            )
        except HmacAuthError as exc:
            return Response({"error": {"code": "Unauthorized", "message": str(exc)}}, status=401)
        data = request.data  # parsed like the API's bodies (RouterJSONParser)
        now = timezone.now()
        row = RouterTimer.objects.create(
            kind=TimerKind.OFFER_EXPIRY,
            target_id=str(data.get("tag", "baseline")) if isinstance(data, dict) else "baseline",
            due_at=now,
            fired_at=now,  # already "fired": invisible to the timer loop
        )
        return Response({"id": row.pk}, status=201)


def _install_baseline_route() -> None:
    patterns = jobrouter.urls.urlpatterns
    if not any(getattr(p.pattern, "_route", None) == BASELINE_PATH for p in patterns):
        patterns.insert(0, path(BASELINE_PATH, BaselineRowsView.as_view()))


_install_baseline_route()

# The real application object: same ProtocolTypeRouter, same Django handler, same middleware.
application = _router_application
