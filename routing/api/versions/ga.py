"""ACS Job Router 2023-11-01 (`azure-communication-jobrouter` 1.0.0): the server's own wire
shape, so the translation is the identity."""

from __future__ import annotations

from typing import Any

from routing.api.versions.base import ResourceKind


class GeneralAvailability:
    """2023-11-01: bodies pass through; list items are the resources themselves (with `etag`)."""

    name = "2023-11-01"

    def needs_current(self, kind: ResourceKind, body: dict[str, Any]) -> bool:
        return False

    def to_ga(self, kind: ResourceKind, body: dict[str, Any], current: dict[str, Any] | None) -> dict[str, Any]:
        return body

    def render(self, kind: ResourceKind, resource: dict[str, Any]) -> dict[str, Any]:
        return resource

    def list_item(self, kind: ResourceKind, resource: dict[str, Any]) -> dict[str, Any]:
        return resource


VERSION = GeneralAvailability()
