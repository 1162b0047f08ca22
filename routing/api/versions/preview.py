"""ACS Job Router 2022-07-18-preview (`azure-communication-jobrouter` 1.0.0b1) ↔ 2023-11-01.

The preview differs from 2023-11-01 in shapes only (spec: shared/spec/acs-jobrouter-preview-diff.md
§2–§3), so every preview body is translated here, both ways, and nothing else in the server knows
the preview exists:

- discriminators are kebab-case with suffixes (`best-worker`, `static-rule`, `pass-through`,
  `weighted-allocation-queue-selector`, `queue-length`, `manual-reclassify`, …) and the label
  operators `lessThanEqual` / `greaterThanEqual`; unknown preview values are refused with 400
  rather than stored, because the 1.0.0b1 client raises on any value it does not know;
- RouterWorker: `totalCapacity`, `queueAssignments: {queueId: {}}` and
  `channelConfigurations: {channelId: {capacityCostPerJob, maxNumberOfJobs?}}` for `capacity`,
  `queues` and `channels`;
- RouterJob: `notes: {"<date-time>": "text"}` for `[{message, addedAt}]`, and `matchingMode`
  as `{modeType, queueAndMatchMode | scheduleAndSuspendMode: {scheduleAt} | suspendMode}` with the
  unused siblings sent as null;
- ClassificationPolicy: top-level `queueSelectors` / `workerSelectors` for
  `queueSelectorAttachments` / `workerSelectorAttachments`; ScoringRuleOptions
  `allowScoringBatchOfWorkers` for `isBatchScoringEnabled`;
- ExceptionPolicy: `exceptionRules: {ruleId: {trigger, actions: {actionId: action}}}` for lists
  with `id`s;
- no `etag` in resource bodies; list items are wrapped as `{<kind>: resource, etag}`.

The preview merges its keyed maps per key (RFC 7396: a null value deletes that key) where
2023-11-01 replaces whole lists, so a preview patch of such a map is merged here into the stored
map (`current`, read by the view) and sent on as the complete 2023-11-01 list. Two notes with the
same `addedAt` would share one preview key; the later ones are shown a microsecond apart.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any, Callable

from routing import limits
from routing import validation as v
from routing.api.versions.base import ResourceKind
from routing.errors import InvalidRequest

Json = dict[str, Any]


class _Names:
    """One enumeration: preview wire value ↔ 2023-11-01 wire value."""

    def __init__(self, pairs: dict[str, str]) -> None:
        self.to_ga = pairs
        self.to_preview = {ga: preview for preview, ga in pairs.items()}

    def rename(self, value: Any, inbound: bool, where: str) -> Any:
        """Inbound: the 2023-11-01 value, InvalidRequest for anything the preview does not
        define (None passes, for the 2023-11-01 validators to call required). Outbound: the
        preview value (values of our own extensions pass unchanged)."""
        if not inbound:
            return self.to_preview.get(value, value) if isinstance(value, str) else value
        if value is None:
            return None
        if isinstance(value, str) and value in self.to_ga:
            return self.to_ga[value]
        raise InvalidRequest(
            f"{where} {v.quoted(value)} is not a 2022-07-18-preview value (one of {', '.join(self.to_ga)}).",
            target=where,
        )


MODES = _Names({"best-worker": "bestWorker", "longest-idle": "longestIdle", "round-robin": "roundRobin"})
RULES = _Names({
    "static-rule": "static", "direct-map-rule": "directMap", "expression-rule": "expression",
    "azure-function-rule": "function", "webhook-rule": "webhook",
})
_COMMON_ATTACHMENTS = {"static": "static", "conditional": "conditional", "rule-engine": "ruleEngine",
                       "pass-through": "passThrough"}
QUEUE_ATTACHMENTS = _Names({**_COMMON_ATTACHMENTS, "weighted-allocation-queue-selector": "weightedAllocation"})
WORKER_ATTACHMENTS = _Names({**_COMMON_ATTACHMENTS, "weighted-allocation-worker-selector": "weightedAllocation"})
TRIGGERS = _Names({"queue-length": "queueLength", "wait-time": "waitTime"})
ACTIONS = _Names({"cancel": "cancel", "manual-reclassify": "manualReclassify", "reclassify": "reclassify"})
OPERATORS = _Names({
    "equal": "equal", "notEqual": "notEqual", "lessThan": "lessThan", "lessThanEqual": "lessThanOrEqual",
    "greaterThan": "greaterThan", "greaterThanEqual": "greaterThanOrEqual",
})
MATCHING_MODES = _Names({
    "queueAndMatchMode": "queueAndMatch", "scheduleAndSuspendMode": "scheduleAndSuspend", "suspendMode": "suspend",
})
# ScoringRuleOptions: the one renamed nested field.
_BATCH_SCORING = ("allowScoringBatchOfWorkers", "isBatchScoringEnabled")

# --- nested polymorphic values (both directions) -----------------------------------------------

Walk = Callable[[Any, bool, str], Any]


def _with_kind(value: Any, names: _Names, inbound: bool, where: str) -> Any:
    if not isinstance(value, dict):
        return value  # not an object: the 2023-11-01 validators refuse it with their message
    out = dict(value)
    if "kind" in out:
        out["kind"] = names.rename(out["kind"], inbound, f"{where}.kind")
    return out


def _each(items: Any, walk: Walk, inbound: bool, where: str) -> Any:
    if not isinstance(items, list):
        return items
    return [walk(item, inbound, f"{where}[{i}]") for i, item in enumerate(items)]


def _rule(value: Any, inbound: bool, where: str) -> Any:
    """RouterRule: `static-rule`, `direct-map-rule`, `expression-rule`, `azure-function-rule`,
    `webhook-rule`; the fields are the same in both versions."""
    return _with_kind(value, RULES, inbound, where)


def _selector(value: Any, inbound: bool, where: str) -> Any:
    """RouterQueueSelector / RouterWorkerSelector (and pass-through attachments): the label operator."""
    if not isinstance(value, dict) or "labelOperator" not in value:
        return value
    return {**value, "labelOperator": OPERATORS.rename(value["labelOperator"], inbound, f"{where}.labelOperator")}


def _mode(value: Any, inbound: bool, where: str = "mode") -> Any:
    """DistributionMode, with BestWorkerMode's scoring rule and options."""
    out = _with_kind(value, MODES, inbound, where)
    if not isinstance(out, dict):
        return out
    if "scoringRule" in out:
        out["scoringRule"] = _rule(out["scoringRule"], inbound, f"{where}.scoringRule")
    options = out.get("scoringRuleOptions")
    if isinstance(options, dict):
        old, new = _BATCH_SCORING if inbound else _BATCH_SCORING[::-1]
        options = dict(options)
        if old in options:
            options[new] = options.pop(old)
        out["scoringRuleOptions"] = options
    return out


def _attachment(names: _Names, selector_key: str) -> Walk:
    """A Queue- or WorkerSelectorAttachment walker; `selector_key` is `queueSelector` or
    `workerSelector` (its plural names the lists of conditional attachments and allocations)."""
    plural = selector_key + "s"

    def walk(value: Any, inbound: bool, where: str) -> Any:
        out = _selector(_with_kind(value, names, inbound, where), inbound, where)
        if not isinstance(out, dict):
            return out
        for key in ("condition", "rule"):
            if key in out:
                out[key] = _rule(out[key], inbound, f"{where}.{key}")
        if selector_key in out:
            out[selector_key] = _selector(out[selector_key], inbound, f"{where}.{selector_key}")
        if plural in out:
            out[plural] = _each(out[plural], _selector, inbound, f"{where}.{plural}")
        if isinstance(out.get("allocations"), list):
            out["allocations"] = [
                {**a, plural: _each(a[plural], _selector, inbound, f"{where}.allocations[{i}].{plural}")}
                if isinstance(a, dict) and plural in a else a
                for i, a in enumerate(out["allocations"])
            ]
        return out

    return walk


_queue_attachment = _attachment(QUEUE_ATTACHMENTS, "queueSelector")
_worker_attachment = _attachment(WORKER_ATTACHMENTS, "workerSelector")


def _trigger(value: Any, inbound: bool, where: str) -> Any:
    return _with_kind(value, TRIGGERS, inbound, where)


def _action(value: Any, inbound: bool, where: str) -> Any:
    out = _with_kind(value, ACTIONS, inbound, where)
    if isinstance(out, dict) and "workerSelectors" in out:
        out["workerSelectors"] = _each(out["workerSelectors"], _selector, inbound, f"{where}.workerSelectors")
    return out


# --- keyed maps --------------------------------------------------------------------------------


def _merged_map(current: Json, patch: Any, where: str, max_items: int = limits.MAX_LIST_ITEMS) -> Json:
    """RFC 7396 merge of a preview map patch into the stored map; null clears the whole map.
    At most `max_items` entries, the bound of the 2023-11-01 list it becomes."""
    if patch is None:
        return {}
    patch = v.require_object(patch, where)
    if len(patch) > max_items:
        raise InvalidRequest(f"{where} has more than {max_items} entries.", target=where)
    merged = v.merge_patch(current, patch)
    if len(merged) > max_items:
        raise InvalidRequest(f"{where} would hold more than {max_items} entries.", target=where)
    return merged


def _notes_to_preview(notes: list[Json]) -> dict[str, str]:
    """`[{message, addedAt}]` → `{addedAt: message}`; a repeated `addedAt` is shown 1 µs later."""
    out: dict[str, str] = {}
    for note in notes:
        added: datetime = v.optional_datetime(note["addedAt"], "addedAt")  # type: ignore[assignment]
        key = v.format_datetime(added)
        while key in out:
            added += timedelta(microseconds=1)
            key = v.format_datetime(added)
        out[key] = note["message"]
    return out


def _notes_to_ga(current: list[Json], patch: Any, where: str = "notes") -> list[Json]:
    """Merge a preview notes patch (keys: RFC 3339 date-times, a null value deletes that note)
    into the stored notes; the complete 2023-11-01 list, oldest first."""
    if patch is None:
        return []
    merged: dict[datetime, Any] = {
        v.optional_datetime(key, where): message  # type: ignore[misc]
        for key, message in _notes_to_preview(current).items()
    }
    for key, message in _merged_patch_items(patch, where):
        added = v.optional_datetime(key, f"{where} key")
        if added is None:
            raise InvalidRequest(f"{where} keys must be RFC 3339 date-times.", target=where)
        if message is None:
            merged.pop(added, None)
        else:
            merged[added] = message
    return [{"message": merged[added], "addedAt": v.format_datetime(added)} for added in sorted(merged)]


def _merged_patch_items(patch: Any, where: str) -> list[tuple[str, Any]]:
    patch = v.require_object(patch, where)
    if len(patch) > limits.MAX_LIST_ITEMS:
        raise InvalidRequest(f"{where} has more than {limits.MAX_LIST_ITEMS} entries.", target=where)
    return list(patch.items())


def _rules_to_preview(rules: list[Json]) -> Json:
    """`[{id, trigger, actions: [{id, kind, …}]}]` → `{id: {trigger, actions: {id: {kind, …}}}}`."""
    return {
        rule["id"]: {
            "trigger": _trigger(rule.get("trigger"), False, "trigger"),
            "actions": {
                action.get("id"): _action({k: val for k, val in action.items() if k != "id"}, False, "action")
                for action in rule.get("actions") or []
            },
        }
        for rule in rules
    }


def _rules_to_ga(rules: Json, where: str = "exceptionRules") -> list[Json]:
    result = []
    for rule_id, rule in rules.items():
        at = f"{where}.{rule_id}"
        rule = v.require_object(rule, at)
        actions = rule.get("actions")
        if actions is None:
            actions = {}
        if not isinstance(actions, dict):
            raise InvalidRequest(f"{at}.actions must be a JSON object keyed by action id.", target=f"{at}.actions")
        result.append({
            "id": rule_id,
            "trigger": _trigger(rule.get("trigger"), True, f"{at}.trigger"),
            "actions": [
                {**_action(v.require_object(action, f"{at}.actions.{action_id}"), True, f"{at}.actions.{action_id}"),
                 "id": action_id}
                for action_id, action in actions.items()
            ],
        })
    return result


# --- resources: preview request → 2023-11-01 ---------------------------------------------------


def _without(body: Json, *keys: str) -> Json:
    return {k: val for k, val in body.items() if k not in keys and k != "etag"}


def _distribution_policy_in(body: Json, current: Json | None) -> Json:
    out = _without(body, "mode")
    if "mode" in body:
        out["mode"] = _mode(body["mode"], True)
    return out


def _classification_policy_in(body: Json, current: Json | None) -> Json:
    out = _without(body, "queueSelectors", "workerSelectors", "queueSelectorAttachments",
                   "workerSelectorAttachments", "prioritizationRule")
    if "queueSelectors" in body:
        out["queueSelectorAttachments"] = _each(body["queueSelectors"], _queue_attachment, True, "queueSelectors")
    if "workerSelectors" in body:
        out["workerSelectorAttachments"] = _each(body["workerSelectors"], _worker_attachment, True, "workerSelectors")
    if "prioritizationRule" in body:
        out["prioritizationRule"] = _rule(body["prioritizationRule"], True, "prioritizationRule")
    return out


def _exception_policy_in(body: Json, current: Json | None) -> Json:
    out = _without(body, "exceptionRules")
    if "exceptionRules" in body:
        stored = _rules_to_preview((current or {}).get("exceptionRules") or [])
        out["exceptionRules"] = _rules_to_ga(_merged_map(stored, body["exceptionRules"], "exceptionRules"))
    return out


def _queue_in(body: Json, current: Json | None) -> Json:
    return _without(body)


def _matching_mode_in(value: Any, where: str = "matchingMode") -> Json | None:
    """`{modeType, <mode>: {...}, <others>: null}` → `{kind, scheduleAt?}`; the null siblings the
    client always sends mean nothing. Without `modeType` the one non-null sibling names the mode."""
    if value is None:
        return None
    obj = v.require_object(value, where)
    mode_type = obj.get("modeType")
    if mode_type is None:
        present = [name for name in MATCHING_MODES.to_ga if obj.get(name) is not None]
        if len(present) != 1:
            raise InvalidRequest(f"{where}.modeType is required.", target=f"{where}.modeType")
        mode_type = present[0]
    kind = MATCHING_MODES.rename(mode_type, True, f"{where}.modeType")
    out: Json = {"kind": kind}
    details = obj.get(mode_type)
    if details is not None:
        details = v.require_object(details, f"{where}.{mode_type}")
        if "scheduleAt" in details:
            out["scheduleAt"] = details["scheduleAt"]
    return out


def _job_in(body: Json, current: Json | None) -> Json:
    out = _without(body, "requestedWorkerSelectors", "notes", "matchingMode")
    if "requestedWorkerSelectors" in body:
        out["requestedWorkerSelectors"] = _each(
            body["requestedWorkerSelectors"], _selector, True, "requestedWorkerSelectors")
    if "notes" in body:
        out["notes"] = _notes_to_ga((current or {}).get("notes") or [], body["notes"])
    if "matchingMode" in body:
        out["matchingMode"] = _matching_mode_in(body["matchingMode"])
    return out


def _worker_in(body: Json, current: Json | None) -> Json:
    out = _without(body, "totalCapacity", "queueAssignments", "channelConfigurations", "capacity", "queues", "channels")
    stored = current or {}
    if "totalCapacity" in body:
        out["capacity"] = body["totalCapacity"]
    if "queueAssignments" in body:
        queues = _merged_map({q: {} for q in stored.get("queues") or []}, body["queueAssignments"], "queueAssignments",
                             limits.MAX_WORKER_QUEUES)
        for queue_id, assignment in queues.items():
            v.require_object(assignment, f"queueAssignments.{queue_id}")
        out["queues"] = list(queues)
    if "channelConfigurations" in body:
        existing = {c["channelId"]: _without(c, "channelId") for c in stored.get("channels") or []}
        channels = _merged_map(existing, body["channelConfigurations"], "channelConfigurations")
        out["channels"] = [
            {**v.require_object(config, f"channelConfigurations.{channel_id}"), "channelId": channel_id}
            for channel_id, config in channels.items()
        ]
    return out


# --- resources: 2023-11-01 → preview response --------------------------------------------------


def _distribution_policy_out(resource: Json) -> Json:
    out = _without(resource)
    if "mode" in out:
        out["mode"] = _mode(out["mode"], False)
    return out


def _classification_policy_out(resource: Json) -> Json:
    out = _without(resource, "queueSelectorAttachments", "workerSelectorAttachments")
    out["queueSelectors"] = _each(resource.get("queueSelectorAttachments") or [], _queue_attachment, False, "")
    out["workerSelectors"] = _each(resource.get("workerSelectorAttachments") or [], _worker_attachment, False, "")
    if "prioritizationRule" in out:
        out["prioritizationRule"] = _rule(out["prioritizationRule"], False, "")
    return out


def _exception_policy_out(resource: Json) -> Json:
    return {**_without(resource), "exceptionRules": _rules_to_preview(resource.get("exceptionRules") or [])}


def _matching_mode_out(mode: Json) -> Json:
    mode_type = MATCHING_MODES.rename(mode.get("kind"), False, "")
    return {"modeType": mode_type, mode_type: _without(mode, "kind")}


def _job_out(resource: Json) -> Json:
    out = _without(resource)
    for key in ("requestedWorkerSelectors", "attachedWorkerSelectors"):
        if key in out:
            out[key] = _each(out[key], _selector, False, "")
    out["notes"] = _notes_to_preview(resource.get("notes") or [])
    if "matchingMode" in out:
        out["matchingMode"] = _matching_mode_out(out["matchingMode"])
    return out


def _worker_out(resource: Json) -> Json:
    out = _without(resource, "capacity", "queues", "channels")
    if "capacity" in resource:
        out["totalCapacity"] = resource["capacity"]
    out["queueAssignments"] = {queue_id: {} for queue_id in resource.get("queues") or []}
    out["channelConfigurations"] = {c["channelId"]: _without(c, "channelId") for c in resource.get("channels") or []}
    return out


_INBOUND: dict[str, Callable[[Json, Json | None], Json]] = {
    "distributionPolicy": _distribution_policy_in,
    "classificationPolicy": _classification_policy_in,
    "exceptionPolicy": _exception_policy_in,
    "queue": _queue_in,
    "job": _job_in,
    "worker": _worker_in,
}
_OUTBOUND: dict[str, Callable[[Json], Json]] = {
    "distributionPolicy": _distribution_policy_out,
    "classificationPolicy": _classification_policy_out,
    "exceptionPolicy": _exception_policy_out,
    "queue": _without,
    "job": _job_out,
    "worker": _worker_out,
}
# The keyed maps the preview merges per key (translated against the stored resource).
_MERGED_MAPS: dict[str, tuple[str, ...]] = {
    "worker": ("queueAssignments", "channelConfigurations"),
    "job": ("notes",),
    "exceptionPolicy": ("exceptionRules",),
}


class Preview:
    """2022-07-18-preview: see the module docstring for every difference it translates."""

    name = "2022-07-18-preview"

    def needs_current(self, kind: ResourceKind, body: Json) -> bool:
        return any(key in body for key in _MERGED_MAPS.get(kind, ()))

    def to_ga(self, kind: ResourceKind, body: Json, current: Json | None) -> Json:
        return _INBOUND[kind](body, current)

    def render(self, kind: ResourceKind, resource: Json) -> Json:
        return _OUTBOUND[kind](resource)

    def list_item(self, kind: ResourceKind, resource: Json) -> Json:
        """`{<kind>: resource, etag}` (ACS 2022-07-18-preview list item wrappers)."""
        return {kind: self.render(kind, resource), "etag": resource.get("etag")}


VERSION = Preview()
