"""Validation and normalisation of the router's structured values (ACS Job Router 2023-11-01 §3).

Each function takes a decoded JSON value as a client sent it, checks it, fills in the service's
response defaults (§3.6) and returns the canonical shape that is stored. Every problem raises
`InvalidRequest` whose message names the field path, so the REST API and the admin say the same.
Kinds are accepted in camelCase and, leniently, in the kebab-case of older documents; they are
always stored in camelCase.
"""

from __future__ import annotations

import math
import uuid
from datetime import datetime, timedelta
from datetime import timezone as dt_timezone
from typing import Any, Callable

from django.utils.dateparse import parse_datetime

from routing import limits
from routing.engine.expressions import ExpressionError, compile_expression
from routing.errors import InvalidRequest

LABEL_OPERATORS = (
    "equal", "notEqual", "lessThan", "lessThanOrEqual", "greaterThan", "greaterThanOrEqual",
)
_OPERATOR_ALIASES = {"greaterThanEqual": "greaterThanOrEqual", "lessThanEqual": "lessThanOrEqual"}

DISTRIBUTION_MODE_KINDS = ("bestWorker", "longestIdle", "roundRobin")
RULE_KINDS = ("directMap", "expression", "function", "static", "webhook")
ATTACHMENT_KINDS = ("conditional", "passThrough", "ruleEngine", "static", "weightedAllocation")
TRIGGER_KINDS = ("queueLength", "waitTime")
ACTION_KINDS = ("cancel", "manualReclassify", "reclassify")
MATCHING_MODE_KINDS = ("queueAndMatch", "scheduleAndSuspend", "suspend")
SCORING_PARAMETERS = ("jobLabels", "workerSelectors")


def _camel(value: str) -> str:
    head, *rest = value.split("-")
    return head + "".join(part[:1].upper() + part[1:] for part in rest)


def require_object(value: Any, where: str) -> dict:
    if not isinstance(value, dict):
        raise InvalidRequest(f"{where} must be a JSON object.", target=where)
    return value


def require_list(value: Any, where: str, *, max_items: int = limits.MAX_LIST_ITEMS) -> list:
    """A JSON array of at most `max_items` items (default `limits.MAX_LIST_ITEMS`)."""
    if not isinstance(value, list):
        raise InvalidRequest(f"{where} must be a JSON array.", target=where)
    if len(value) > max_items:
        raise InvalidRequest(f"{where} has {len(value)} items; at most {max_items} are allowed.", target=where)
    return value


def optional_string(value: Any, where: str, *, max_length: int = limits.MAX_TEXT_LENGTH) -> str | None:
    """A string of at most `max_length` characters (default `limits.MAX_TEXT_LENGTH`), or None."""
    if value is None:
        return None
    if not isinstance(value, str):
        raise InvalidRequest(f"{where} must be a string.", target=where)
    if len(value) > max_length:
        raise InvalidRequest(
            f"{where} is {len(value)} characters long; at most {max_length} are allowed.", target=where
        )
    return value


def optional_id(value: Any, where: str) -> str | None:
    """An id (of a queue, policy, channel, rule…): a string of at most `limits.MAX_ID_LENGTH`."""
    return optional_string(value, where, max_length=limits.MAX_ID_LENGTH)


def required_string(obj: dict, key: str, where: str, *, max_length: int = limits.MAX_ID_LENGTH) -> str:
    """A non-empty string field of at most `max_length` characters (default: an id's bound)."""
    value = optional_string(obj.get(key), f"{where}.{key}", max_length=max_length)
    if not value:
        raise InvalidRequest(f"{where}.{key} is required.", target=f"{where}.{key}")
    return value


def _check_range(value: float, where: str, minimum: float | None, maximum: float | None) -> None:
    if minimum is not None and value < minimum:
        raise InvalidRequest(f"{where} must be at least {minimum:g}.", target=where)
    if maximum is not None and value > maximum:
        raise InvalidRequest(f"{where} must be at most {maximum:g}.", target=where)


def optional_int(
    value: Any, where: str, *, minimum: int | None = None, maximum: int | None = None
) -> int | None:
    """An integer within the int32 range and [minimum, maximum]; JSON's 3.0 is accepted as 3."""
    if value is None:
        return None
    # JSON has one number type; accept 3.0 for 3 but not 3.5 or true.
    if isinstance(value, bool) or not isinstance(value, (int, float)) or (
        isinstance(value, float) and not value.is_integer()
    ):
        raise InvalidRequest(f"{where} must be an integer.", target=where)
    value = int(value)
    if not -(2**31) <= value < 2**31:
        raise InvalidRequest(f"{where} is out of the int32 range.", target=where)
    _check_range(value, where, minimum, maximum)
    return value


def optional_number(
    value: Any, where: str, *, minimum: float | None = None, maximum: float | None = None
) -> float | int | None:
    """A finite JSON number within [minimum, maximum], or None."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise InvalidRequest(f"{where} must be a number.", target=where)
    _check_range(value, where, minimum, maximum)
    return value


def optional_duration(value: Any, where: str) -> float | int | None:
    """A duration in seconds: finite, 0 ≤ x ≤ `limits.MAX_DURATION_SECONDS` (10 years), or None."""
    return optional_number(value, where, minimum=0, maximum=limits.MAX_DURATION_SECONDS)


def optional_job_priority(value: Any, where: str) -> int | None:
    """A job priority: an integer in −100..100 (ACS RouterJob.priority), or None."""
    return optional_int(value, where, minimum=limits.MIN_JOB_PRIORITY, maximum=limits.MAX_JOB_PRIORITY)


def optional_bool(value: Any, where: str) -> bool | None:
    if value is None:
        return None
    if not isinstance(value, bool):
        raise InvalidRequest(f"{where} must be true or false.", target=where)
    return value


def optional_datetime(value: Any, where: str) -> datetime | None:
    """An RFC 3339 date-time; naive values are taken as UTC (as the Azure SDK sends them)."""
    if value is None:
        return None
    if not isinstance(value, str):
        raise InvalidRequest(f"{where} must be an RFC 3339 date-time string.", target=where)
    if len(value) > 64:
        raise InvalidRequest(f"{where} is not a valid RFC 3339 date-time.", target=where)
    try:
        parsed = parse_datetime(value)
    except ValueError:
        parsed = None
    if parsed is None:
        raise InvalidRequest(f"{where} is not a valid RFC 3339 date-time: {quoted(value)}.", target=where)
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=dt_timezone.utc)
    try:
        # Year 1 at +14:00 is a valid string whose UTC instant lies before datetime.min.
        in_utc = parsed.astimezone(dt_timezone.utc)
    except OverflowError:
        in_utc = None
    if in_utc is None or not limits.EARLIEST_DATETIME <= in_utc < limits.LATEST_DATETIME:
        raise InvalidRequest(
            f"{where} must lie between {limits.EARLIEST_DATETIME.date()} and {limits.LATEST_DATETIME.date()} UTC.",
            target=where,
        )
    return parsed


def quoted(value: Any) -> str:
    """`repr(value)` cut to `limits.MAX_QUOTED_VALUE_LENGTH`: how an error message quotes input."""
    return limits.truncate(repr(value), limits.MAX_QUOTED_VALUE_LENGTH)


def kind_of(obj: dict, allowed: tuple[str, ...], where: str) -> str:
    raw = obj.get("kind")
    if not isinstance(raw, str) or not raw:
        raise InvalidRequest(f"{where}.kind is required (one of {', '.join(allowed)}).", target=f"{where}.kind")
    kind = _camel(raw)
    for candidate in allowed:
        if candidate.lower() == kind.lower():
            return candidate
    raise InvalidRequest(
        f"{where}.kind {quoted(raw)} is not supported (one of {', '.join(allowed)}).", target=f"{where}.kind"
    )


def label_operator(value: Any, where: str) -> str:
    if not isinstance(value, str):
        raise InvalidRequest(f"{where} is required (one of {', '.join(LABEL_OPERATORS)}).", target=where)
    value = _OPERATOR_ALIASES.get(value, value)
    for candidate in LABEL_OPERATORS:
        if candidate.lower() == value.lower():
            return candidate
    raise InvalidRequest(f"{where} {quoted(value)} is not one of {', '.join(LABEL_OPERATORS)}.", target=where)


def label_value(value: Any, where: str) -> Any:
    """Labels, tags and selector values hold JSON primitives: a string of at most
    `limits.MAX_TEXT_LENGTH` characters, a boolean, or a finite number with |x| ≤ 1e15."""
    if isinstance(value, bool):
        return value
    if isinstance(value, str):
        return optional_string(value, where)
    if isinstance(value, (int, float)) and math.isfinite(value) and abs(value) <= limits.MAX_LABEL_NUMBER:
        return value
    if isinstance(value, (int, float)):
        raise InvalidRequest(
            f"{where} must be a finite number between -{limits.MAX_LABEL_NUMBER:g} and {limits.MAX_LABEL_NUMBER:g}.",
            target=where,
        )
    raise InvalidRequest(f"{where} must be a string, number or boolean.", target=where)


def label_map(value: Any, where: str) -> dict:
    """A label/tag map (or its patch) of at most `limits.MAX_LABELS` keys of at most
    `limits.MAX_ID_LENGTH` characters; values are not checked here."""
    obj = require_object(value, where)
    if len(obj) > limits.MAX_LABELS:
        raise InvalidRequest(f"{where} has {len(obj)} keys; at most {limits.MAX_LABELS} are allowed.", target=where)
    for key in obj:
        if len(key) > limits.MAX_ID_LENGTH:
            raise InvalidRequest(
                f"{where} has a key of {len(key)} characters; at most {limits.MAX_ID_LENGTH} are allowed.", target=where
            )
    return obj


def merge_label_map(current: dict, patch: Any, where: str) -> dict:
    """RFC 7396 merge of a label/tag map: keys merge one by one, a null value removes the key."""
    patch = label_map(patch, where)
    merged = dict(current)
    for key, value in patch.items():
        if value is None:
            merged.pop(key, None)
        else:
            merged[key] = label_value(value, f"{where}.{key}")
    return merged


def merge_patch(target: Any, patch: Any) -> Any:
    """RFC 7396 JSON merge patch: objects merge recursively, anything else replaces."""
    if not isinstance(patch, dict):
        return patch
    result = dict(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = merge_patch(result.get(key), value)
    return result


def merge_polymorphic(current: Any, patch: Any) -> Any:
    """Merge a patch into a `kind`-discriminated object; a different kind replaces it whole."""
    if (
        isinstance(patch, dict)
        and isinstance(current, dict)
        and "kind" in patch
        and _camel(str(patch["kind"])).lower() != str(current.get("kind", "")).lower()
    ):
        return patch
    return merge_patch(current, patch)


# --- selectors -------------------------------------------------------------------------------


def queue_selector(value: Any, where: str) -> dict:
    obj = require_object(value, where)
    return {
        "key": required_string(obj, "key", where),
        "labelOperator": label_operator(obj.get("labelOperator"), f"{where}.labelOperator"),
        "value": label_value(obj.get("value"), f"{where}.value") if obj.get("value") is not None else None,
    }


def worker_selector(value: Any, where: str, *, with_defaults: bool = True) -> dict:
    """A RouterWorkerSelector. With defaults (jobs, classification policies) `expedite` is
    false unless given and `status` is active (§3.6); read-only fields a client sends are ignored."""
    obj = require_object(value, where)
    result: dict[str, Any] = {
        "key": required_string(obj, "key", where),
        "labelOperator": label_operator(obj.get("labelOperator"), f"{where}.labelOperator"),
    }
    if obj.get("value") is not None:
        result["value"] = label_value(obj.get("value"), f"{where}.value")
    expires = optional_duration(obj.get("expiresAfterSeconds"), f"{where}.expiresAfterSeconds")
    if expires is not None:
        result["expiresAfterSeconds"] = expires
    expedite = optional_bool(obj.get("expedite"), f"{where}.expedite")
    if with_defaults:
        result["expedite"] = bool(expedite)
        result["status"] = "active"
    elif expedite is not None:
        result["expedite"] = expedite
    return result


def worker_selectors(value: Any, where: str, *, with_defaults: bool = True) -> list[dict]:
    return [
        worker_selector(item, f"{where}[{i}]", with_defaults=with_defaults)
        for i, item in enumerate(require_list(value, where))
    ]


# --- rules -----------------------------------------------------------------------------------


def bounded_json(value: Any, where: str, depth: int = 0) -> Any:
    """Any JSON value whose strings and numbers obey the label bounds, within
    `limits.MAX_LIST_ITEMS` items or `limits.MAX_LABELS` keys per level (a static rule's value)."""
    if depth > limits.MAX_JSON_DEPTH:
        raise InvalidRequest(f"{where} is nested too deeply.", target=where)
    if isinstance(value, list):
        return [bounded_json(item, f"{where}[{i}]", depth + 1) for i, item in enumerate(require_list(value, where))]
    if isinstance(value, dict):
        return {k: bounded_json(item, f"{where}.{k}", depth + 1) for k, item in label_map(value, where).items()}
    return None if value is None else label_value(value, where)


def _static_rule(obj: dict, where: str) -> dict:
    result: dict[str, Any] = {"kind": "static"}
    if obj.get("value") is not None:
        result["value"] = bounded_json(obj["value"], f"{where}.value")
    return result


def _expression_rule(obj: dict, where: str) -> dict:
    source = required_string(obj, "expression", where, max_length=limits.MAX_EXPRESSION_LENGTH)
    language = obj.get("language") or "powerFx"
    if not isinstance(language, str) or language.lower() != "powerfx":
        raise InvalidRequest(f"{where}.language must be powerFx.", target=f"{where}.language")
    try:
        compile_expression(source)
    except ExpressionError as exc:
        raise InvalidRequest(f"{where}.expression: {exc}", target=f"{where}.expression") from exc
    return {"kind": "expression", "language": "powerFx", "expression": source}


def _credential(obj: dict, key: str, fields: tuple[str, ...], where: str) -> dict[str, str | None]:
    cred = label_map(obj[key], f"{where}.{key}")
    return {k: optional_string(cred.get(k), f"{where}.{key}.{k}") for k in fields if cred.get(k) is not None}


def _function_rule(obj: dict, where: str) -> dict:
    result: dict[str, Any] = {"kind": "function", "functionUri": _uri(obj, "functionUri", where)}
    if obj.get("credential") is not None:
        result["credential"] = _credential(obj, "credential", ("functionKey", "appKey", "clientId"), where)
    return result


def _webhook_rule(obj: dict, where: str) -> dict:
    result: dict[str, Any] = {"kind": "webhook"}
    for key in ("authorizationServerUri", "webhookUri"):
        if obj.get(key) is not None:
            result[key] = _uri(obj, key, where)
    if obj.get("clientCredential") is not None:
        result["clientCredential"] = _credential(obj, "clientCredential", ("clientId", "clientSecret"), where)
    return result


_RULE_PARSERS: dict[str, Callable[[dict, str], dict]] = {
    "static": _static_rule,
    "directMap": lambda obj, where: {"kind": "directMap"},
    "expression": _expression_rule,
    "function": _function_rule,
    "webhook": _webhook_rule,
}


def rule(value: Any, where: str) -> dict:
    """A RouterRule (§3.3). Expression rules are compiled now so a syntax error is a 400 that
    names the position; `language` is filled in as powerFx, as the service does."""
    obj = require_object(value, where)
    return _RULE_PARSERS[kind_of(obj, RULE_KINDS, where)](obj, where)


def _uri(obj: dict, key: str, where: str) -> str:
    value = required_string(obj, key, where, max_length=limits.MAX_URI_LENGTH)
    if not value.lower().startswith(("http://", "https://")):
        raise InvalidRequest(f"{where}.{key} must be an http(s) URI.", target=f"{where}.{key}")
    return value


# --- distribution policies -------------------------------------------------------------------


def distribution_mode(value: Any, where: str = "mode") -> dict:
    """A DistributionMode with its defaults: min/max concurrent offers 1, bypassSelectors false."""
    obj = require_object(value, where)
    kind = kind_of(obj, DISTRIBUTION_MODE_KINDS, where)
    min_offers = optional_int(
        obj.get("minConcurrentOffers"), f"{where}.minConcurrentOffers", minimum=1, maximum=limits.MAX_CONCURRENT_OFFERS
    )
    max_offers = optional_int(
        obj.get("maxConcurrentOffers"), f"{where}.maxConcurrentOffers", minimum=1, maximum=limits.MAX_CONCURRENT_OFFERS
    )
    min_offers = 1 if min_offers is None else min_offers
    max_offers = max(1, min_offers) if max_offers is None else max_offers
    if max_offers < min_offers:
        raise InvalidRequest(
            f"{where}.maxConcurrentOffers must be at least minConcurrentOffers.", target=f"{where}.maxConcurrentOffers"
        )
    result: dict[str, Any] = {
        "kind": kind,
        "minConcurrentOffers": min_offers,
        "maxConcurrentOffers": max_offers,
        "bypassSelectors": bool(optional_bool(obj.get("bypassSelectors"), f"{where}.bypassSelectors")),
    }
    if kind == "bestWorker":
        if obj.get("scoringRule") is not None:
            result["scoringRule"] = rule(obj["scoringRule"], f"{where}.scoringRule")
            if result["scoringRule"]["kind"] == "directMap":
                raise InvalidRequest(f"{where}.scoringRule cannot be directMap.", target=f"{where}.scoringRule")
        if obj.get("scoringRuleOptions") is not None:
            result["scoringRuleOptions"] = scoring_rule_options(
                obj["scoringRuleOptions"], f"{where}.scoringRuleOptions"
            )
    return result


def scoring_rule_options(value: Any, where: str) -> dict:
    obj = require_object(value, where)
    result: dict[str, Any] = {}
    batch = optional_int(obj.get("batchSize"), f"{where}.batchSize", minimum=1, maximum=limits.MAX_BATCH_SIZE)
    if batch is not None:
        result["batchSize"] = batch
    if obj.get("scoringParameters") is not None:
        params = require_list(obj["scoringParameters"], f"{where}.scoringParameters")
        for i, param in enumerate(params):
            if not isinstance(param, str) or param not in SCORING_PARAMETERS:
                raise InvalidRequest(
                    f"{where}.scoringParameters[{i}] must be one of {', '.join(SCORING_PARAMETERS)}.",
                    target=f"{where}.scoringParameters",
                )
        result["scoringParameters"] = list(params)
    for key in ("isBatchScoringEnabled", "descendingOrder"):
        flag = optional_bool(obj.get(key), f"{where}.{key}")
        if flag is not None:
            result[key] = flag
    return result


# --- classification policies -----------------------------------------------------------------


def queue_selector_attachment(value: Any, where: str) -> dict:
    obj = require_object(value, where)
    kind = kind_of(obj, ATTACHMENT_KINDS, where)
    if kind == "static":
        return {"kind": kind, "queueSelector": queue_selector(obj.get("queueSelector"), f"{where}.queueSelector")}
    if kind == "conditional":
        return {
            "kind": kind,
            "condition": rule(obj.get("condition"), f"{where}.condition"),
            "queueSelectors": [
                queue_selector(s, f"{where}.queueSelectors[{i}]")
                for i, s in enumerate(require_list(obj.get("queueSelectors"), f"{where}.queueSelectors"))
            ],
        }
    if kind == "passThrough":
        return {
            "kind": kind,
            "key": required_string(obj, "key", where),
            "labelOperator": label_operator(obj.get("labelOperator"), f"{where}.labelOperator"),
        }
    if kind == "ruleEngine":
        return {"kind": kind, "rule": rule(obj.get("rule"), f"{where}.rule")}
    return {
        "kind": kind,
        "allocations": _allocations(obj, where, "queueSelectors", lambda s, w: queue_selector(s, w)),
    }


def worker_selector_attachment(value: Any, where: str) -> dict:
    obj = require_object(value, where)
    kind = kind_of(obj, ATTACHMENT_KINDS, where)
    if kind == "static":
        return {"kind": kind, "workerSelector": worker_selector(obj.get("workerSelector"), f"{where}.workerSelector")}
    if kind == "conditional":
        return {
            "kind": kind,
            "condition": rule(obj.get("condition"), f"{where}.condition"),
            "workerSelectors": worker_selectors(obj.get("workerSelectors"), f"{where}.workerSelectors"),
        }
    if kind == "passThrough":
        result: dict[str, Any] = {
            "kind": kind,
            "key": required_string(obj, "key", where),
            "labelOperator": label_operator(obj.get("labelOperator"), f"{where}.labelOperator"),
        }
        expires = optional_duration(obj.get("expiresAfterSeconds"), f"{where}.expiresAfterSeconds")
        if expires is not None:
            result["expiresAfterSeconds"] = expires
        return result
    if kind == "ruleEngine":
        return {"kind": kind, "rule": rule(obj.get("rule"), f"{where}.rule")}
    return {"kind": kind, "allocations": _allocations(obj, where, "workerSelectors", worker_selector)}


def _allocations(obj: dict, where: str, selectors_key: str, parse: Callable[[Any, str], dict]) -> list[dict]:
    allocations = require_list(obj.get("allocations"), f"{where}.allocations")
    if not allocations:
        raise InvalidRequest(f"{where}.allocations must not be empty.", target=f"{where}.allocations")
    result = []
    total = 0.0
    for i, item in enumerate(allocations):
        at = f"{where}.allocations[{i}]"
        alloc = require_object(item, at)
        weight = optional_number(alloc.get("weight"), f"{at}.weight", minimum=0, maximum=1)
        if weight is None:
            raise InvalidRequest(f"{at}.weight is required.", target=f"{at}.weight")
        total += weight
        result.append({
            "weight": weight,
            selectors_key: [
                parse(s, f"{at}.{selectors_key}[{j}]")
                for j, s in enumerate(require_list(alloc.get(selectors_key), f"{at}.{selectors_key}"))
            ],
        })
    if abs(total - 1.0) > 1e-6:
        raise InvalidRequest(f"{where}.allocations weights must add up to 1 (got {total:g}).", target=f"{where}.allocations")
    return result


# --- exception policies ----------------------------------------------------------------------


def exception_rule(value: Any, where: str) -> dict:
    obj = require_object(value, where)
    trigger = require_object(obj.get("trigger"), f"{where}.trigger")
    trigger_kind = kind_of(trigger, TRIGGER_KINDS, f"{where}.trigger")
    if trigger_kind == "queueLength":
        threshold = optional_int(
            trigger.get("threshold"), f"{where}.trigger.threshold", minimum=0, maximum=limits.MAX_QUEUE_LENGTH_THRESHOLD
        )
        if threshold is None:
            raise InvalidRequest(f"{where}.trigger.threshold is required.", target=f"{where}.trigger.threshold")
        parsed_trigger: dict[str, Any] = {"kind": trigger_kind, "threshold": threshold}
    else:
        seconds = optional_duration(trigger.get("thresholdSeconds"), f"{where}.trigger.thresholdSeconds")
        if seconds is None:
            raise InvalidRequest(
                f"{where}.trigger.thresholdSeconds is required.", target=f"{where}.trigger.thresholdSeconds"
            )
        parsed_trigger = {"kind": trigger_kind, "thresholdSeconds": seconds}
    actions = require_list(obj.get("actions"), f"{where}.actions")
    return {
        "id": required_string(obj, "id", where),
        "trigger": parsed_trigger,
        "actions": [exception_action(a, f"{where}.actions[{i}]") for i, a in enumerate(actions)],
    }


def exception_action(value: Any, where: str) -> dict:
    """An ExceptionAction; a missing `id` gets a generated GUID, as the service does. Optional
    fields are not filled in (the official tests expect note/dispositionCode to stay None)."""
    obj = require_object(value, where)
    kind = kind_of(obj, ACTION_KINDS, where)
    result: dict[str, Any] = {"kind": kind, "id": optional_id(obj.get("id"), f"{where}.id") or str(uuid.uuid4())}
    if kind == "cancel":
        if obj.get("note") is not None:
            result["note"] = optional_string(obj["note"], f"{where}.note", max_length=limits.MAX_NOTE_LENGTH)
        if obj.get("dispositionCode") is not None:
            result["dispositionCode"] = optional_id(obj["dispositionCode"], f"{where}.dispositionCode")
    elif kind == "manualReclassify":
        if obj.get("queueId") is not None:
            result["queueId"] = optional_id(obj["queueId"], f"{where}.queueId")
        if obj.get("priority") is not None:
            result["priority"] = optional_job_priority(obj["priority"], f"{where}.priority")
        result["workerSelectors"] = worker_selectors(
            obj.get("workerSelectors") or [], f"{where}.workerSelectors", with_defaults=False
        )
    else:
        if obj.get("classificationPolicyId") is not None:
            result["classificationPolicyId"] = optional_id(
                obj["classificationPolicyId"], f"{where}.classificationPolicyId"
            )
        result["labelsToUpsert"] = merge_label_map({}, obj.get("labelsToUpsert") or {}, f"{where}.labelsToUpsert")
    return result


# --- jobs ------------------------------------------------------------------------------------


def matching_mode(value: Any, where: str = "matchingMode") -> dict:
    obj = require_object(value, where)
    kind = kind_of(obj, MATCHING_MODE_KINDS, where)
    if kind == "scheduleAndSuspend":
        schedule_at = optional_datetime(obj.get("scheduleAt"), f"{where}.scheduleAt")
        if schedule_at is None:
            raise InvalidRequest(f"{where}.scheduleAt is required.", target=f"{where}.scheduleAt")
        return {"kind": kind, "scheduleAt": format_datetime(schedule_at)}
    return {"kind": kind}


def notes(value: Any, where: str, now: datetime) -> list[dict]:
    """RouterJobNote list; `addedAt` defaults to now and is normalised to UTC (§4.8). Each note
    keeps its own instant: one that repeats an earlier note's `addedAt` is stored a microsecond
    after it, because clients that key notes by their time (ACS 2022-07-18-preview,
    RouterJob.notes `{"<date-time>": "text"}`) would otherwise see one note where there are two."""
    result = []
    taken: set[datetime] = set()
    for i, item in enumerate(require_list(value, where)):
        obj = require_object(item, f"{where}[{i}]")
        message = required_string(obj, "message", f"{where}[{i}]", max_length=limits.MAX_NOTE_LENGTH)
        added = optional_datetime(obj.get("addedAt"), f"{where}[{i}].addedAt") or now
        while added in taken:
            added += timedelta(microseconds=1)
        taken.add(added)
        result.append({"message": message, "addedAt": format_datetime(added)})
    return result


def format_datetime(value: datetime) -> str:
    """Server → client date-times: ISO 8601 in UTC with an explicit `+00:00` offset (§3.7)."""
    return value.astimezone(dt_timezone.utc).isoformat()
