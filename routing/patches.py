"""Typed merge patches: a wire body (JSON merge patch, ACS Job Router 2023-11-01 §2) parsed and
validated once at the edge into a value the domain applies.

Each `*Patch.from_wire(body)` checks every field it can check without stored state and raises
`InvalidRequest` (400) naming the field path; a field absent from the body is `UNSET` (left as it
is), a JSON null is None (cleared, where the field allows it). Label and tag maps stay patches
(`LabelPatch`: a null value removes the key) and polymorphic objects (`mode`, `matchingMode`,
`prioritizationRule`) stay raw merge patches, because both merge with the stored value: the domain
merges them and validates the result with the same `routing.validation` functions
(`resolve_*`). The REST API and the admin forms both parse through these classes.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Callable, TypeVar

from routing import limits
from routing import validation as v
from routing.errors import InvalidRequest
from routing.models import ROUTER_EVENT_TYPES

T = TypeVar("T")


class Unset(enum.Enum):
    """Marks a field the patch does not mention."""

    UNSET = "unset"


UNSET = Unset.UNSET

# A label or tag map patch: values are JSON primitives, None removes the key.
LabelPatch = dict[str, Any]


def _field(body: dict[str, Any], key: str, parse: Callable[[Any, str], T]) -> T | Unset:
    return parse(body[key], key) if key in body else UNSET


def _non_null(body: dict[str, Any], key: str, parse: Callable[[Any, str], T]) -> T | Unset:
    """A field whose null means "leave as it is" (merge-patch of a value with a default)."""
    return parse(body[key], key) if body.get(key) is not None else UNSET


def label_patch(value: Any, where: str) -> LabelPatch:
    """Validate a label/tag map patch (values checked, nulls kept to remove keys)."""
    obj = v.label_map(value, where)
    return {key: None if val is None else v.label_value(val, f"{where}.{key}") for key, val in obj.items()}


def apply_labels(current: dict[str, Any] | None, patch: LabelPatch | Unset) -> dict[str, Any]:
    """RFC 7396 merge of a validated label patch into the stored map."""
    merged = dict(current or {})
    if patch is UNSET:
        return merged
    for key, value in patch.items():
        if value is None:
            merged.pop(key, None)
        else:
            merged[key] = value
    return merged


def _object_patch(value: Any, where: str) -> dict[str, Any]:
    return v.require_object(value, where)


def _optional_object_patch(value: Any, where: str) -> dict[str, Any] | None:
    return None if value is None else v.require_object(value, where)


def _list_of(parse: Callable[[Any, str], T]) -> Callable[[Any, str], list[T]]:
    def parse_list(value: Any, where: str) -> list[T]:
        return [parse(item, f"{where}[{i}]") for i, item in enumerate(v.require_list(value or [], where))]

    return parse_list


def _job_priority(value: Any, where: str) -> int:
    return v.optional_job_priority(value, where) or 0


def _queue_priority(value: Any, where: str) -> int:
    """Extension priorities (queue, a worker's per-queue): integers in −1000..1000."""
    return v.optional_int(value, where, minimum=limits.MIN_QUEUE_PRIORITY, maximum=limits.MAX_QUEUE_PRIORITY) or 0


def _name(value: Any, where: str) -> str:
    return v.optional_id(value, where) or ""


def _description(value: Any, where: str) -> str:
    return v.optional_string(value, where, max_length=limits.MAX_NOTE_LENGTH) or ""


def _capacity(value: Any, where: str) -> int:
    return v.optional_int(value, where, minimum=0, maximum=limits.MAX_CAPACITY) or 0


# --- jobs ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class JobPatch:
    """RouterJob merge patch. `requested_worker_selectors` replaces the list (not yet stamped
    with expiresAt: the domain stamps them at attach time); `notes` replaces the list."""

    channel_reference: str | None | Unset = UNSET
    channel_id: str | None | Unset = UNSET
    queue_id: str | None | Unset = UNSET
    classification_policy_id: str | None | Unset = UNSET
    priority: int | Unset = UNSET
    requested_worker_selectors: list[dict] | Unset = UNSET
    labels: LabelPatch | Unset = UNSET
    tags: LabelPatch | Unset = UNSET
    notes: list[dict] | Unset = UNSET
    disposition_code: str | None | Unset = UNSET
    matching_mode: dict[str, Any] | Unset = UNSET

    @classmethod
    def from_wire(cls, body: dict[str, Any], *, now: datetime) -> JobPatch:
        """Parse a RouterJob body; notes without `addedAt` are stamped `now`."""
        return cls(
            channel_reference=_field(body, "channelReference", v.optional_string),
            channel_id=_field(body, "channelId", v.optional_id),
            queue_id=_field(body, "queueId", v.optional_id),
            classification_policy_id=_field(body, "classificationPolicyId", v.optional_id),
            priority=_non_null(body, "priority", _job_priority),
            requested_worker_selectors=_field(
                body, "requestedWorkerSelectors", lambda val, where: v.worker_selectors(val or [], where)
            ),
            labels=_non_null(body, "labels", label_patch),
            tags=_non_null(body, "tags", label_patch),
            notes=_field(body, "notes", lambda val, where: v.notes(val or [], where, now)),
            disposition_code=_field(body, "dispositionCode", v.optional_id),
            matching_mode=_non_null(body, "matchingMode", _object_patch),
        )


def resolve_matching_mode(current: dict | None, patch: dict[str, Any] | Unset) -> dict:
    """The job's matching mode after the patch (queueAndMatch by default), validated."""
    if patch is UNSET:
        return current or {"kind": "queueAndMatch"}
    return v.matching_mode(v.merge_polymorphic(current, patch))


# --- workers ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class ChannelSpec:
    """RouterChannel: `capacity_cost_per_job` (≥ 0) and optional `max_number_of_jobs` (≥ 1)."""

    channel_id: str
    capacity_cost_per_job: int
    max_number_of_jobs: int | None


def _channels(value: Any, where: str) -> list[ChannelSpec]:
    channels: list[ChannelSpec] = []
    for i, item in enumerate(v.require_list(value or [], where)):
        at = f"{where}[{i}]"
        obj = v.require_object(item, at)
        channel_id = v.required_string(obj, "channelId", at)
        if any(c.channel_id == channel_id for c in channels):
            raise InvalidRequest(f"{at}.channelId {channel_id!r} is listed twice.", target=at)
        cost = v.optional_int(
            obj.get("capacityCostPerJob"), f"{at}.capacityCostPerJob", minimum=0, maximum=limits.MAX_CAPACITY
        )
        if cost is None:
            raise InvalidRequest(f"{at}.capacityCostPerJob is required.", target=f"{at}.capacityCostPerJob")
        max_jobs = v.optional_int(obj.get("maxNumberOfJobs"), f"{at}.maxNumberOfJobs", minimum=1, maximum=limits.MAX_CAPACITY)
        channels.append(ChannelSpec(channel_id, cost, max_jobs))
    return channels


def _queue_ids(value: Any, where: str) -> list[str]:
    queues: list[str] = []
    for i, item in enumerate(v.require_list(value or [], where, max_items=limits.MAX_WORKER_QUEUES)):
        queue_id = v.optional_id(item, f"{where}[{i}]")
        if not queue_id:
            raise InvalidRequest(f"{where}[{i}] must be a queue id.", target=where)
        queues.append(queue_id)
    # dict.fromkeys keeps the order and drops repeats in linear time.
    return list(dict.fromkeys(queues))


def _queue_priorities(value: Any, where: str) -> dict[str, int]:
    raw = v.require_object(value, where)
    if len(raw) > limits.MAX_WORKER_QUEUES:
        raise InvalidRequest(f"{where} has more than {limits.MAX_WORKER_QUEUES} queues.", target=where)
    return {
        v.optional_id(k, f"{where} key") or k: _queue_priority(val, f"{where}.{k}")
        for k, val in raw.items() if val is not None
    }


@dataclass(frozen=True)
class WorkerPatch:
    """RouterWorker merge patch. `queues` and `channels` replace the lists; `queue_priorities`
    (seed 002 extension `queuePriorities`, {queueId: int}) merges per queue."""

    capacity: int | Unset = UNSET
    labels: LabelPatch | Unset = UNSET
    tags: LabelPatch | Unset = UNSET
    available_for_offers: bool | Unset = UNSET
    channels: list[ChannelSpec] | Unset = UNSET
    queues: list[str] | Unset = UNSET
    queue_priorities: dict[str, int] | Unset = UNSET

    @classmethod
    def from_wire(cls, body: dict[str, Any]) -> WorkerPatch:
        return cls(
            capacity=_field(body, "capacity", _capacity),
            labels=_non_null(body, "labels", label_patch),
            tags=_non_null(body, "tags", label_patch),
            available_for_offers=_field(body, "availableForOffers", lambda val, where: bool(v.optional_bool(val, where))),
            channels=_field(body, "channels", _channels),
            queues=_field(body, "queues", _queue_ids),
            queue_priorities=_non_null(body, "queuePriorities", _queue_priorities),
        )

    def check_complete(self, *, created: bool) -> None:
        """Everything is checked by `from_wire`."""


# --- policies and queues ---------------------------------------------------------------------


@dataclass(frozen=True)
class DistributionPolicyPatch:
    """DistributionPolicy merge patch; `offer_expires_after_seconds` in seconds (≥ 0)."""

    name: str | Unset = UNSET
    offer_expires_after_seconds: float | None | Unset = UNSET
    mode: dict[str, Any] | Unset = UNSET

    @classmethod
    def from_wire(cls, body: dict[str, Any]) -> DistributionPolicyPatch:
        return cls(
            name=_field(body, "name", _name),
            offer_expires_after_seconds=_field(
                body, "offerExpiresAfterSeconds", v.optional_duration
            ),
            mode=_non_null(body, "mode", _object_patch),
        )

    def resolve_mode(self, current: dict | None, *, created: bool) -> dict | None:
        """The mode after the patch, validated; None when unchanged. InvalidRequest on a new
        policy without one."""
        if self.mode is UNSET:
            if created:
                raise InvalidRequest("mode is required.", target="mode")
            return None
        return v.distribution_mode(v.merge_polymorphic(current, self.mode))

    def check_complete(self, *, created: bool) -> None:
        """Validate a patch that holds complete values (an admin form) on its own."""
        self.resolve_mode(None, created=True)


@dataclass(frozen=True)
class ClassificationPolicyPatch:
    """ClassificationPolicy merge patch (attachment lists replace whole)."""

    name: str | Unset = UNSET
    fallback_queue_id: str | None | Unset = UNSET
    queue_selector_attachments: list[dict] | Unset = UNSET
    worker_selector_attachments: list[dict] | Unset = UNSET
    prioritization_rule: dict[str, Any] | None | Unset = UNSET

    @classmethod
    def from_wire(cls, body: dict[str, Any]) -> ClassificationPolicyPatch:
        return cls(
            name=_field(body, "name", _name),
            fallback_queue_id=_field(body, "fallbackQueueId", v.optional_id),
            queue_selector_attachments=_field(
                body, "queueSelectorAttachments", _list_of(v.queue_selector_attachment)
            ),
            worker_selector_attachments=_field(
                body, "workerSelectorAttachments", _list_of(v.worker_selector_attachment)
            ),
            prioritization_rule=_field(body, "prioritizationRule", _optional_object_patch),
        )

    def resolve_prioritization_rule(self, current: dict | None) -> dict | None:
        """The rule after the patch, validated (None clears it); only call when it is set."""
        if self.prioritization_rule is UNSET or self.prioritization_rule is None:
            return None
        return v.rule(v.merge_polymorphic(current, self.prioritization_rule), "prioritizationRule")

    def check_complete(self, *, created: bool) -> None:
        """Validate a patch that holds complete values (an admin form) on its own."""
        self.resolve_prioritization_rule(None)


def _exception_rules(value: Any, where: str) -> list[dict]:
    rules = _list_of(v.exception_rule)(value, where)
    ids = [r["id"] for r in rules]
    if len(set(ids)) != len(ids):
        raise InvalidRequest("exceptionRules ids must be unique.", target="exceptionRules")
    return rules


@dataclass(frozen=True)
class ExceptionPolicyPatch:
    """ExceptionPolicy merge patch; `exception_rules` replaces the list."""

    name: str | Unset = UNSET
    exception_rules: list[dict] | Unset = UNSET

    @classmethod
    def from_wire(cls, body: dict[str, Any]) -> ExceptionPolicyPatch:
        return cls(name=_field(body, "name", _name), exception_rules=_field(body, "exceptionRules", _exception_rules))

    def check_complete(self, *, created: bool) -> None:
        """Everything is checked by `from_wire`."""


@dataclass(frozen=True)
class QueuePatch:
    """RouterQueue merge patch; `priority` (int, default 0) and `description` are seed 002
    extensions."""

    name: str | Unset = UNSET
    description: str | Unset = UNSET
    distribution_policy_id: str | None | Unset = UNSET
    exception_policy_id: str | None | Unset = UNSET
    labels: LabelPatch | Unset = UNSET
    priority: int | Unset = UNSET

    @classmethod
    def from_wire(cls, body: dict[str, Any]) -> QueuePatch:
        return cls(
            name=_field(body, "name", _name),
            description=_field(body, "description", _description),
            distribution_policy_id=_field(body, "distributionPolicyId", v.optional_id),
            exception_policy_id=_field(body, "exceptionPolicyId", v.optional_id),
            labels=_non_null(body, "labels", label_patch),
            priority=_field(body, "priority", _queue_priority),
        )

    def check_complete(self, *, created: bool) -> None:
        """A new queue needs a distribution policy (policy existence is the domain's check)."""
        if created and (self.distribution_policy_id is UNSET or self.distribution_policy_id is None):
            raise InvalidRequest("distributionPolicyId is required.", target="distributionPolicyId")


# --- event subscriptions ---------------------------------------------------------------------

# Event Grid's bounds and defaults of a webhook event subscription.
EVENT_SUBSCRIPTION_DEFAULTS: dict[str, Any] = {
    "delivery_schema": "EventGridSchema",
    "included_event_types": [],
    "subject_begins_with": "",
    "subject_ends_with": "",
    "max_delivery_attempts": 30,
    "event_ttl_minutes": 1440,
    "max_events_per_batch": 1,
    "dead_letter_enabled": True,
}
DELIVERY_SCHEMAS = ("EventGridSchema", "CloudEventSchemaV1_0")


def _or_default(name: str, parse: Callable[[Any, str], Any]) -> Callable[[Any, str], Any]:
    """A merge-patch null puts the field back to Event Grid's default."""

    def parse_or_default(value: Any, where: str) -> Any:
        return EVENT_SUBSCRIPTION_DEFAULTS[name] if value is None else parse(value, where)

    return parse_or_default


def _endpoint_url(value: Any, where: str) -> str:
    url = v.optional_string(value, where, max_length=limits.MAX_URI_LENGTH)
    if not url or not url.lower().startswith(("http://", "https://")):
        raise InvalidRequest(f"{where} must be an http(s) URL.", target=where)
    return url


def _schema(value: Any, where: str) -> str:
    if value not in DELIVERY_SCHEMAS:
        raise InvalidRequest(f"{where} must be one of {', '.join(DELIVERY_SCHEMAS)}.", target=where)
    return value


def _event_types(value: Any, where: str) -> list[str]:
    types = []
    for i, item in enumerate(v.require_list(value, where, max_items=len(ROUTER_EVENT_TYPES))):
        if item not in ROUTER_EVENT_TYPES:
            raise InvalidRequest(f"{where}[{i}] is not a Job Router event type.", target=f"{where}[{i}]")
        types.append(item)
    return types


def _subject_part(value: Any, where: str) -> str:
    return v.optional_string(value, where, max_length=limits.MAX_TEXT_LENGTH) or ""


def _bounded_int(minimum: int, maximum: int) -> Callable[[Any, str], int]:
    def parse(value: Any, where: str) -> int:
        return int(v.optional_int(value, where, minimum=minimum, maximum=maximum) or 0)

    return parse


def _bool(value: Any, where: str) -> bool:
    return bool(v.optional_bool(value, where))


@dataclass(frozen=True)
class EventSubscriptionPatch:
    """Event subscription merge patch, fields named as Event Grid names them: `endpointUrl`
    (http(s), required at creation), `eventDeliverySchema` (EventGridSchema | CloudEventSchemaV1_0),
    `includedEventTypes` (Job Router types; empty = all), `subjectBeginsWith`, `subjectEndsWith`,
    `maxDeliveryAttempts` (1–30), `eventTimeToLiveInMinutes` (1–1440), `maxEventsPerBatch`
    (1–5000), `deadLetterEnabled`. A null puts a field back to its default."""

    endpoint_url: str | Unset = UNSET
    delivery_schema: str | Unset = UNSET
    included_event_types: list[str] | Unset = UNSET
    subject_begins_with: str | Unset = UNSET
    subject_ends_with: str | Unset = UNSET
    max_delivery_attempts: int | Unset = UNSET
    event_ttl_minutes: int | Unset = UNSET
    max_events_per_batch: int | Unset = UNSET
    dead_letter_enabled: bool | Unset = UNSET

    @classmethod
    def from_wire(cls, body: dict[str, Any]) -> EventSubscriptionPatch:
        return cls(
            endpoint_url=_field(body, "endpointUrl", _endpoint_url),
            delivery_schema=_field(body, "eventDeliverySchema", _or_default("delivery_schema", _schema)),
            included_event_types=_field(body, "includedEventTypes", _or_default("included_event_types", _event_types)),
            subject_begins_with=_field(body, "subjectBeginsWith", _or_default("subject_begins_with", _subject_part)),
            subject_ends_with=_field(body, "subjectEndsWith", _or_default("subject_ends_with", _subject_part)),
            max_delivery_attempts=_field(
                body, "maxDeliveryAttempts", _or_default("max_delivery_attempts", _bounded_int(1, 30))
            ),
            event_ttl_minutes=_field(
                body, "eventTimeToLiveInMinutes", _or_default("event_ttl_minutes", _bounded_int(1, 1440))
            ),
            max_events_per_batch=_field(
                body, "maxEventsPerBatch", _or_default("max_events_per_batch", _bounded_int(1, 5000))
            ),
            dead_letter_enabled=_field(body, "deadLetterEnabled", _or_default("dead_letter_enabled", _bool)),
        )

    def check_complete(self, *, created: bool) -> None:
        """A new subscription needs its endpointUrl (InvalidRequest, 400)."""
        if created and self.endpoint_url is UNSET:
            raise InvalidRequest("endpointUrl is required.", target="endpointUrl")

    def fields(self) -> dict[str, Any]:
        """The model fields this patch sets (name → value)."""
        return {name: value for name, value in self.__dict__.items() if value is not UNSET}
