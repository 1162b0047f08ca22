"""API versions at the edge: one translator per `api-version` query value.

The domain, the typed patches (`routing.patches`) and the renderers (`routing.api.wire`) know one
wire shape, that of ACS Job Router 2023-11-01. Every other version is a `WireVersion` that turns
its request bodies into that shape and the 2023-11-01 output into its own; the views pick one per
request from `VERSIONS` and never branch on the version themselves.
"""

from __future__ import annotations

from routing.api.versions import ga, preview
from routing.api.versions.base import RESOURCE_KINDS, ResourceKind, WireVersion
from routing.errors import InvalidRequest

VERSIONS: dict[str, WireVersion] = {
    ga.VERSION.name: ga.VERSION,
    preview.VERSION.name: preview.VERSION,
}
# Newest first: error messages name them in this order.
SUPPORTED_API_VERSIONS = tuple(VERSIONS)

__all__ = ["RESOURCE_KINDS", "ResourceKind", "SUPPORTED_API_VERSIONS", "VERSIONS", "WireVersion", "version_for"]


def version_for(api_version: str | None) -> WireVersion:
    """The translator of an `api-version` query value; InvalidRequest (400
    `MissingApiVersionParameter` / `UnsupportedApiVersion`, naming the supported ones) otherwise."""
    if not api_version:
        raise InvalidRequest(
            f"The api-version query parameter is required (one of {', '.join(SUPPORTED_API_VERSIONS)}).",
            code="MissingApiVersionParameter",
        )
    version = VERSIONS.get(api_version)
    if version is None:
        raise InvalidRequest(
            f"api-version {api_version[:40]!r} is not supported; use one of {', '.join(SUPPORTED_API_VERSIONS)}.",
            code="UnsupportedApiVersion",
        )
    return version
