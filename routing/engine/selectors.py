"""Label selector matching (ACS Job Router 2023-11-01 §4.2, §4.6). Plain Python over plain data.

A selector is the stored RouterWorkerSelector dict: `{key, labelOperator, value, expedite,
status, expiresAt?}`. Labels are `{str: str | number | bool}`.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Iterable, Mapping

from django.utils.dateparse import parse_datetime


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _same_kind(a: Any, b: Any) -> bool:
    if _is_number(a) and _is_number(b):
        return True
    return type(a) is type(b)


def selector_matches(selector: Mapping[str, Any], labels: Mapping[str, Any]) -> bool:
    """Whether `labels` satisfy one selector.

    A missing label never matches, whatever the operator (ACS: "a missing label never
    matches"); values of different kinds (a string against a number) never match, not even
    `notEqual`. Ordering operators compare numbers, or strings with strings; booleans only
    compare for (in)equality.
    """
    key = selector["key"]
    if key not in labels:
        return False
    actual = labels[key]
    expected = selector.get("value")
    if expected is None or actual is None or not _same_kind(actual, expected):
        return False
    op = selector["labelOperator"]
    if op == "equal":
        return actual == expected
    if op == "notEqual":
        return actual != expected
    if isinstance(actual, bool):
        return False
    if op == "greaterThan":
        return actual > expected
    if op == "greaterThanOrEqual":
        return actual >= expected
    if op == "lessThan":
        return actual < expected
    if op == "lessThanOrEqual":
        return actual <= expected
    return False


def selector_is_active(selector: Mapping[str, Any], now: datetime) -> bool:
    """A selector constrains matching until its `expiresAt` (ACS §4.6, expiresAfterSeconds)."""
    if selector.get("status", "active") != "active":
        return False
    expires_at = selector.get("expiresAt")
    if expires_at:
        parsed = parse_datetime(expires_at) if isinstance(expires_at, str) else expires_at
        if parsed is not None and parsed <= now:
            return False
    return True


def active_selectors(selectors: Iterable[Mapping[str, Any]], now: datetime) -> list[Mapping[str, Any]]:
    return [s for s in selectors if selector_is_active(s, now)]


def all_match(selectors: Iterable[Mapping[str, Any]], labels: Mapping[str, Any]) -> bool:
    return all(selector_matches(s, labels) for s in selectors)
