"""A real webhook receiver for router events (an HTTP server in the test process, built on
tests/remote_endpoint.py), answering as an Event Grid webhook handler does: the validation
handshake (Event Grid `SubscriptionValidationEvent` or the CloudEvents `OPTIONS`), then
notifications. `answers` scripts the status codes of the next notifications (then 200)."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from azure.core.rest import HttpRequest

from tests.remote_endpoint import FakeEndpoint, Recorded

API = "api-version=2023-11-01"


@dataclass
class EventReceiver:
    endpoint: FakeEndpoint
    path: str = "/events"
    validate: bool = True
    answers: list[int] = field(default_factory=list)
    # Every notification body the receiver accepted (2xx), in arrival order.
    accepted: list[Recorded] = field(default_factory=list)
    notifications: list[Recorded] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.endpoint.routes[self.path] = self.handle

    @property
    def url(self) -> str:
        return self.endpoint.url(self.path)

    def handle(self, rec: Recorded) -> tuple[Any, ...]:
        if rec.method == "OPTIONS":
            if not self.validate:
                return 403, b""
            return 200, b"", {"WebHook-Allowed-Origin": rec.headers.get("webhook-request-origin", "")}
        if rec.headers.get("aeg-event-type") == "SubscriptionValidation":
            if not self.validate:
                return 403, {"error": "refused"}
            return 200, {"validationResponse": rec.json()[0]["data"]["validationCode"]}
        self.notifications.append(rec)
        status = self.answers.pop(0) if self.answers else 200
        if status < 300:
            self.accepted.append(rec)
        return status, b""

    def events(self) -> list[dict[str, Any]]:
        """Every event accepted, in arrival order (each body is a JSON array)."""
        return [event for rec in self.accepted for event in json.loads(rec.body)]

    def types(self) -> list[str]:
        return [e.get("eventType") or e.get("type") for e in self.events()]


def rest(client, method: str, path: str, body: Any = None):
    """A signed request to the router through the official SDK's pipeline (HMAC as the SDK
    signs every call)."""
    return client.send_request(HttpRequest(method, f"{path}?{API}", json=body))


def subscribe(client, subscription_id: str, url: str, **fields: Any) -> dict[str, Any]:
    response = rest(client, "PATCH", f"/routing/eventSubscriptions/{subscription_id}", {"endpointUrl": url, **fields})
    assert response.status_code in (200, 201), response.text()
    return response.json()
