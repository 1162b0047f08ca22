"""Domain → wire: the 2023-11-01 JSON shapes (ACS Job Router §3), with the service's response
defaults (§3.6): empty collections present, absent optional scalars omitted, automatic `Id`
labels, camelCase kinds, date-times in UTC with an explicit offset."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from routing.engine.selectors import selector_is_active
from routing.models import (
    Assignment,
    ClassificationPolicy,
    DistributionPolicy,
    EventSubscription,
    ExceptionPolicy,
    Job,
    Queue,
)
from routing.queries import JobPosition, QueueStatistics, WorkerView
from routing.validation import format_datetime


def _dt(value: datetime | None) -> str | None:
    return format_datetime(value) if value is not None else None


def _compact(data: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in data.items() if v is not None}


def _number(value: float | None) -> float | int | None:
    # The service echoes 600.0 as 600.
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value


def distribution_policy(p: DistributionPolicy) -> dict[str, Any]:
    return _compact(
        {
            "id": p.pk,
            "etag": p.etag,
            "name": p.name or None,
            "offerExpiresAfterSeconds": _number(p.offer_expires_after_seconds),
            "mode": p.mode or None,
        }
    )


def classification_policy(p: ClassificationPolicy) -> dict[str, Any]:
    return _compact(
        {
            "id": p.pk,
            "etag": p.etag,
            "name": p.name or None,
            "fallbackQueueId": p.fallback_queue_id,
            "queueSelectorAttachments": p.queue_selector_attachments or [],
            "prioritizationRule": p.prioritization_rule,
            "workerSelectorAttachments": p.worker_selector_attachments or [],
        }
    )


def exception_policy(p: ExceptionPolicy) -> dict[str, Any]:
    return _compact({"id": p.pk, "etag": p.etag, "name": p.name or None, "exceptionRules": p.exception_rules or []})


def queue(q: Queue) -> dict[str, Any]:
    return _compact(
        {
            "id": q.pk,
            "etag": q.etag,
            "name": q.name or None,
            "distributionPolicyId": q.distribution_policy_id,
            "labels": {**(q.labels or {}), "Id": q.pk},
            "exceptionPolicyId": q.exception_policy_id,
            "priority": q.priority,
            "description": q.description or None,
        }
    )


def worker_selector(selector: dict[str, Any], now: datetime) -> dict[str, Any]:
    out = dict(selector)
    if "status" in out:
        out["status"] = "active" if selector_is_active(selector, now) else "expired"
    return out


def _assignment(a: Assignment) -> dict[str, Any]:
    return _compact(
        {
            "assignmentId": str(a.pk),
            "workerId": a.worker_id,
            "assignedAt": _dt(a.assigned_at),
            "completedAt": _dt(a.completed_at),
            "closedAt": _dt(a.closed_at),
        }
    )


def job(j: Job, now: datetime) -> dict[str, Any]:
    assignments = getattr(j, "visible_assignments", None)
    if assignments is None:
        assignments = list(j.assignments.visible())
    return _compact(
        {
            "id": j.pk,
            "etag": j.etag,
            "channelReference": j.channel_reference,
            "status": j.status,
            "enqueuedAt": _dt(j.enqueued_at),
            "channelId": j.channel_id,
            "classificationPolicyId": j.classification_policy_id,
            "queueId": j.queue_id,
            "priority": j.priority,
            "dispositionCode": j.disposition_code,
            "requestedWorkerSelectors": [worker_selector(s, now) for s in j.requested_worker_selectors],
            "attachedWorkerSelectors": [worker_selector(s, now) for s in j.attached_worker_selectors],
            "labels": j.labels or {},
            "assignments": {str(a.pk): _assignment(a) for a in assignments},
            "tags": j.tags or {},
            "notes": j.notes or [],
            "scheduledAt": _dt(j.scheduled_at),
            "matchingMode": j.matching_mode or {"kind": "queueAndMatch"},
            # Extensions: why classification failed, and which exception rules fired.
            "classificationError": j.classification_error,
            "exceptionTriggers": j.exception_triggers or None,
        }
    )


def worker(view: WorkerView) -> dict[str, Any]:
    w = view.worker
    channels = []
    for c in w.channels.all():
        channel: dict[str, Any] = {"channelId": c.channel_id, "capacityCostPerJob": c.capacity_cost_per_job}
        if c.max_number_of_jobs is not None:
            channel["maxNumberOfJobs"] = c.max_number_of_jobs
        channels.append(channel)
    links = list(w.queue_links.all())
    return _compact(
        {
            "id": w.pk,
            "etag": w.etag,
            "state": view.state,
            "queues": [link.queue_id for link in links],
            "capacity": w.capacity,
            "labels": {**(w.labels or {}), "Id": w.pk},
            "tags": w.tags or {},
            "channels": channels,
            "offers": [
                _compact(
                    {
                        "offerId": str(o.pk),
                        "jobId": o.job_id,
                        "capacityCost": o.capacity_cost,
                        "offeredAt": _dt(o.offered_at),
                        "expiresAt": _dt(o.expires_at),
                    }
                )
                for o in view.offers
            ],
            "assignedJobs": [
                {
                    "assignmentId": str(a.pk),
                    "jobId": a.job_id,
                    "capacityCost": a.capacity_cost,
                    "assignedAt": _dt(a.assigned_at),
                }
                for a in view.assignments
            ],
            "loadRatio": _number(view.load_ratio),
            "availableForOffers": w.available_for_offers,
            # Seed 002 extension: the worker's priority in each of its queues.
            "queuePriorities": {link.queue_id: link.priority for link in links},
        }
    )


def queue_statistics(s: QueueStatistics) -> dict[str, Any]:
    return _compact(
        {
            "queueId": s.queue_id,
            "length": s.length,
            "estimatedWaitTimeMinutes": s.estimated_wait_time_minutes,
            "longestJobWaitTimeMinutes": s.longest_job_wait_time_minutes,
            # Seed 002 (Q9) extension fields.
            "servingWorkers": s.serving_workers,
            "availableWorkers": s.available_workers,
            "assignedJobs": s.assigned_jobs,
        }
    )


def job_position(p: JobPosition) -> dict[str, Any]:
    return {
        "jobId": p.job_id,
        "position": p.position,
        "queueId": p.queue_id,
        "queueLength": p.queue_length,
        "estimatedWaitTimeMinutes": p.estimated_wait_time_minutes,
    }


def event_subscription(s: EventSubscription, *, with_secret: bool = False) -> dict[str, Any]:
    """An event subscription, fields named as Event Grid names them; `signingSecret` only in the
    answer that created it."""
    data = {
        "id": s.pk,
        "etag": s.etag,
        "endpointUrl": s.endpoint_url,
        "eventDeliverySchema": s.delivery_schema,
        "includedEventTypes": list(s.included_event_types or []),
        "subjectBeginsWith": s.subject_begins_with,
        "subjectEndsWith": s.subject_ends_with,
        "maxDeliveryAttempts": s.max_delivery_attempts,
        "eventTimeToLiveInMinutes": s.event_ttl_minutes,
        "maxEventsPerBatch": s.max_events_per_batch,
        "deadLetterEnabled": s.dead_letter_enabled,
        "provisioningState": s.provisioning_state,
    }
    if with_secret:
        data["signingSecret"] = s.signing_secret
    return data
