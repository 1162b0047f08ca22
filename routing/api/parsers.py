"""Request body parsing for the router API: JSON and JSON merge patch (RFC 7396)."""

from __future__ import annotations

from rest_framework.parsers import JSONParser


class RouterJSONParser(JSONParser):
    """`application/json`; malformed JSON becomes a ParseError (400 with the ACS error body)."""

    media_type = "application/json"


class MergePatchJSONParser(JSONParser):
    """`application/merge-patch+json`, as the Azure SDK sends upserts."""

    media_type = "application/merge-patch+json"
