"""The contract every API-version translator keeps (see `routing.api.versions`)."""

from __future__ import annotations

from typing import Any, Literal, Protocol

# The upsertable resources, named as the 2022-07-18-preview list wrappers name them.
ResourceKind = Literal["distributionPolicy", "classificationPolicy", "exceptionPolicy", "queue", "job", "worker"]
RESOURCE_KINDS: tuple[ResourceKind, ...] = (
    "distributionPolicy", "classificationPolicy", "exceptionPolicy", "queue", "job", "worker",
)


class WireVersion(Protocol):
    """Request parsing and response rendering of one `api-version`, to and from the
    2023-11-01 wire shape the rest of the server speaks."""

    name: str

    def needs_current(self, kind: ResourceKind, body: dict[str, Any]) -> bool:
        """True when `to_ga` must see the stored resource: the body patches a keyed map that
        this version merges per key but 2023-11-01 replaces as a whole list."""
        ...

    def to_ga(self, kind: ResourceKind, body: dict[str, Any], current: dict[str, Any] | None) -> dict[str, Any]:
        """An upsert body of this version as a 2023-11-01 merge patch. `current` is the stored
        resource in the 2023-11-01 shape (None when absent; only given when `needs_current`).
        InvalidRequest (400) on values this version cannot express."""
        ...

    def render(self, kind: ResourceKind, resource: dict[str, Any]) -> dict[str, Any]:
        """A 2023-11-01 resource body in this version's shape."""
        ...

    def list_item(self, kind: ResourceKind, resource: dict[str, Any]) -> dict[str, Any]:
        """One item of a list page (`value[i]`) in this version's shape."""
        ...
