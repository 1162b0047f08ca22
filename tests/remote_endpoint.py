"""A real local HTTP server standing in for the Azure Functions and OAuth2-protected webhooks
that function and webhook rules call (ACS 2023-11-01 §3.3): an external peer of the router, so
it stays a socket server even when the router itself runs in-process. The `http_endpoint`
fixture (conftest) starts one per test."""

from __future__ import annotations

import json
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Callable
from urllib.parse import parse_qs

from azure.communication.jobrouter.models import (
    FunctionRouterRule,
    FunctionRouterRuleCredential,
    OAuth2WebhookClientCredential,
    WebhookRouterRule,
)


@dataclass
class Recorded:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes
    at: float = field(default_factory=time.monotonic)

    def json(self) -> Any:
        return json.loads(self.body)

    def form(self) -> dict[str, str]:
        return {k: v[0] for k, v in parse_qs(self.body.decode()).items()}


@dataclass
class FakeEndpoint:
    """A ThreadingHTTPServer on 127.0.0.1 (port 0) that records every request and answers with
    the handler registered for its path: handler(Recorded) -> (status, json-able body)."""

    routes: dict[str, Callable[[Recorded], tuple[Any, ...]]] = field(default_factory=dict)
    server: ThreadingHTTPServer | None = None
    requests: list[Recorded] = field(default_factory=list)

    def start(self, port: int = 0) -> "FakeEndpoint":
        """Serve on `port` (0: any free one; a stopped endpoint restarts on its old port)."""
        endpoint = self

        class Handler(BaseHTTPRequestHandler):
            # HTTP/1.1: the router keeps its connection to a webhook alive between deliveries.
            protocol_version = "HTTP/1.1"

            def do_POST(self):  # noqa: N802 (http.server naming)
                self._answer("POST")

            def do_OPTIONS(self):  # noqa: N802 (the CloudEvents webhook handshake)
                self._answer("OPTIONS")

            def do_GET(self):  # noqa: N802
                self._answer("GET")

            def _answer(self, method):
                if endpoint.server is not self.server:  # stopped: a kept-alive connection drops
                    self.close_connection = True
                    return
                length = int(self.headers.get("Content-Length") or 0)
                path = self.path.split("?", 1)[0]
                rec = Recorded(method, path, {k.lower(): v for k, v in self.headers.items()}, self.rfile.read(length))
                endpoint.requests.append(rec)
                route = endpoint.routes.get(path)
                # A route answers (status, body) or (status, body, extra headers).
                status, body, *extra = route(rec) if route else (404, {"error": "no route"})
                data = body if isinstance(body, bytes) else json.dumps(body).encode()
                try:
                    self.send_response(status)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(data)))
                    for name, value in (extra[0] if extra else {}).items():
                        self.send_header(name, value)
                    self.end_headers()
                    self.wfile.write(data)
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the router gave up waiting (timeout test)

            def log_message(self, *args):
                pass

        ThreadingHTTPServer.allow_reuse_address = True
        self.server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
        self.server.daemon_threads = True
        # A short poll interval: shutdown() waits for the serving loop's next look at its flag,
        # half a second by default, which would be most of a fast test's time.
        self._port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.01}, daemon=True)
        self.thread.start()
        return self

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self._port}{path}"

    def calls(self, path: str) -> list[Recorded]:
        return [r for r in self.requests if r.path == path]

    def stop(self) -> None:
        server, self.server = self.server, None
        if server is None:
            return
        server.shutdown()
        server.server_close()

    @property
    def port(self) -> int:
        return self._port


def function_rule(http_endpoint, path, key="fn-key-1"):
    return FunctionRouterRule(
        function_uri=http_endpoint.url(path), credential=FunctionRouterRuleCredential(function_key=key)
    )


def oauth_routes(http_endpoint, hook_delay=0.0):
    """A token endpoint (client credentials router-app / s3cret → tok-1) and a webhook at /hook
    that requires `Bearer tok-1` and answers a Region selector from the job labels."""

    def token(rec):
        form = rec.form()
        auth_ok = form.get("client_id") == "router-app" and form.get("client_secret") == "s3cret"
        if form.get("grant_type") != "client_credentials" or not auth_ok:
            return 401, {"error": "invalid_client"}
        return 200, {"access_token": "tok-1", "token_type": "Bearer", "expires_in": 3600}

    def hook(rec):
        if rec.headers.get("authorization") != "Bearer tok-1":
            return 401, {"error": "unauthorized"}
        time.sleep(hook_delay)
        return 200, {"value": [{"key": "Region", "labelOperator": "equal", "value": rec.json()["job"]["Region"]}]}

    http_endpoint.routes["/oauth/token"] = token
    http_endpoint.routes["/hook"] = hook
    return WebhookRouterRule(
        authorization_server_uri=http_endpoint.url("/oauth/token"),
        client_credential=OAuth2WebhookClientCredential(client_id="router-app", client_secret="s3cret"),
        webhook_uri=http_endpoint.url("/hook"),
    )
