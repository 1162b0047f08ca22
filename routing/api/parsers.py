"""Request body parsing for the router API: JSON and JSON merge patch (RFC 7396), bounded.

Every body is decoded by `load_json`, which refuses what would reach the engine as a value no
code expects: `NaN`/`Infinity` and numbers that overflow a double (Python reads `1e999` as
infinity), integer literals over `MAX_INTEGER_DIGITS` digits, nesting deeper than
`limits.MAX_JSON_DEPTH` (Python's decoder would raise RecursionError near 1,000 levels), and
strings no database stores (NUL, lone surrogates). Each is a
ParseError: 400 with the ACS error body (`routing.api.errors`). Size and media type are checked
before parsing, by `routing.api.middleware.RequestLimitsMiddleware` (413, 415).
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from typing import Any

from rest_framework.exceptions import ParseError
from rest_framework.parsers import JSONParser

from routing import limits

# Digits of one JSON integer literal; every integer the API accepts has far fewer.
MAX_INTEGER_DIGITS = 50
# Media types of request bodies (the SDK sends merge-patch for upserts, JSON for actions).
JSON_MEDIA_TYPES = ("application/json", "application/merge-patch+json")


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON number")


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise ValueError(f"the number {text[:40]} is out of range")
    return value


def _bounded_int(text: str) -> int:
    if len(text.lstrip("-")) > MAX_INTEGER_DIGITS:
        raise ValueError(f"an integer has more than {MAX_INTEGER_DIGITS} digits")
    return int(text)


def _structure_problem(data: Any, limit: int) -> str | None:
    """Why `data` may not enter the router, or None: arrays and objects nested deeper than
    `limit`, or a string (value or key) holding NUL, which PostgreSQL text cannot store.
    Iterative, so no depth reaches Python's recursion limit."""
    stack: list[tuple[Any, int]] = [(data, 0)]
    while stack:
        value, depth = stack.pop()
        if isinstance(value, str):
            if "\x00" in value:
                return "strings may not contain NUL (\\u0000)"
            continue
        if isinstance(value, dict):
            children: Any = [*value.keys(), *value.values()]
        elif isinstance(value, list):
            children = value
        else:
            continue
        if depth >= limit:
            return f"JSON nests arrays and objects deeper than {limit} levels"
        stack.extend((child, depth + 1) for child in children)
    return None


def load_json(text: str | bytes) -> Any:
    """Decode a JSON document within the API's bounds.

    Returns the decoded value (dict, list, str, int, finite float, bool or None). Raises
    ParseError (400) for malformed JSON, NaN/Infinity, numbers beyond a double, integers of more
    than `MAX_INTEGER_DIGITS` digits, and nesting deeper than `limits.MAX_JSON_DEPTH`.
    """
    try:
        data = json.loads(text, parse_constant=_reject_constant, parse_float=_finite_float, parse_int=_bounded_int)
        # A lone surrogate ("\ud800") is valid JSON but no database stores it: encode once, in C.
        json.dumps(data, ensure_ascii=False).encode("utf-8")
    except RecursionError:
        raise ParseError(f"JSON nests arrays and objects deeper than {limits.MAX_JSON_DEPTH} levels") from None
    except ValueError as exc:  # JSONDecodeError, UnicodeDecodeError and UnicodeEncodeError are ValueErrors
        raise ParseError(f"JSON parse error - {limits.truncate(str(exc), limits.MAX_STORED_ERROR_LENGTH)}") from None
    problem = _structure_problem(data, limits.MAX_JSON_DEPTH)
    if problem is not None:
        raise ParseError(problem)
    return data


class RouterJSONParser(JSONParser):
    """`application/json`, decoded by `load_json`; any problem is a ParseError (400 with the
    ACS error body)."""

    media_type = "application/json"

    def parse(self, stream: Any, media_type: str | None = None, parser_context: Mapping[str, Any] | None = None) -> Any:
        raw = stream.read() if stream is not None else b""
        encoding = (parser_context or {}).get("encoding") or "utf-8"
        try:
            text = raw.decode(encoding)
        except (LookupError, UnicodeDecodeError) as exc:
            raise ParseError(f"The body is not {encoding} text: {exc.__class__.__name__}") from None
        return load_json(text)


class MergePatchJSONParser(RouterJSONParser):
    """`application/merge-patch+json`, as the Azure SDK sends upserts."""

    media_type = "application/merge-patch+json"
