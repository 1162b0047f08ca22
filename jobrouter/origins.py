"""Which web pages may open the router's websockets (`/ws/desk/`, `/ws/wait/…`, `/ws/supervisor/`).

A browser sends the session cookie with any websocket it opens, whatever page opened it, so a
foreign page could drive a logged-in agent's desk; the `Origin` header is what tells them apart.
The allow-list is `JOBROUTER_ALLOWED_ORIGINS` (Channels `OriginValidator` patterns:
`https://desk.example.com`, `https://desk.example.com:8443`, `.example.com` for a domain and its
subdomains, or `same-origin`). Unset, it follows `DJANGO_ALLOWED_HOSTS`: each host name is
allowed on any scheme and port; when the hosts are `*`, only `same-origin` is allowed (the
Origin's host and port equal the request's `Host` header: the page the server itself served),
or anything with `DJANGO_DEBUG=true`. `*` is refused outside debug mode (settings fail loudly).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any
from urllib.parse import ParseResult, urlparse

from channels.security.websocket import OriginValidator
from django.conf import settings

SAME_ORIGIN = "same-origin"


def websocket_origins(*, configured: Sequence[str], allowed_hosts: Iterable[str], debug: bool) -> list[str]:
    """The effective Origin patterns: `configured` when given, else derived from the hosts as
    the module doc says."""
    if configured:
        return list(configured)
    hosts = list(allowed_hosts)
    if "*" not in hosts:
        return hosts
    return ["*"] if debug else [SAME_ORIGIN]


DEFAULT_PORTS = {"http": 80, "ws": 80, "https": 443, "wss": 443}


def _header(scope: dict[str, Any], name: bytes) -> str | None:
    for key, value in scope.get("headers", []):
        if key == name:
            return value.decode("latin1")
    return None


def _host_and_port(parsed: ParseResult) -> tuple[str | None, int | None]:
    return parsed.hostname, parsed.port or DEFAULT_PORTS.get(parsed.scheme)


def is_same_origin(scope: dict[str, Any]) -> bool:
    """True when the `Origin` header names the host and port of the `Host` header (the default
    port of the Origin's scheme when either leaves it out)."""
    origin_text, host = _header(scope, b"origin"), _header(scope, b"host")
    if not origin_text or not host:
        return False
    try:
        origin = urlparse(origin_text)
        served = urlparse(f"{origin.scheme}://{host}")
        return origin.hostname is not None and _host_and_port(origin) == _host_and_port(served)
    except ValueError:  # a malformed port
        return False


class RouterOriginValidator:
    """ASGI middleware: Channels' `OriginValidator` over the patterns of
    `settings.JOBROUTER_ALLOWED_ORIGINS` (read per connection, see `websocket_origins`), plus the
    `same-origin` pattern. A refused socket is closed before the consumer runs (the client sees
    the handshake fail with 403)."""

    def __init__(self, application: Any) -> None:
        self.application = application

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> Any:
        patterns = websocket_origins(
            configured=settings.JOBROUTER_ALLOWED_ORIGINS, allowed_hosts=settings.ALLOWED_HOSTS, debug=settings.DEBUG
        )
        if SAME_ORIGIN in patterns and is_same_origin(scope):
            return await self.application(scope, receive, send)
        listed = [p for p in patterns if p != SAME_ORIGIN]
        return await OriginValidator(self.application, listed)(scope, receive, send)
