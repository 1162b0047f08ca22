"""Router events as ACS Job Router publishes them to Event Grid (the outbox of webhook delivery).

The domain operation that makes a transition calls one of the `job_*` / `offer_*` / `worker_*`
functions below inside its transaction. Each writes one `PublishedEvent` (the event as Event Grid
carries it: `eventType` `Microsoft.Communication.<Name>`, `subject`, `data` in the shape of the
swagger's `AcsRouter*EventData`, Azure/azure-rest-api-specs `specification/eventgrid/data-plane/
Microsoft.Communication/stable/2018-01-01/AzureCommunicationServices.json`) and one
`EventDelivery` row per validated subscription whose filters select it. Event, deliveries and
change commit or roll back together, so an event exists if and only if its transition committed,
and a process dying after the commit loses nothing: the delivery loop
(`routing.services.delivery`) finds the rows. After the commit, listeners registered in this
process (a delivery loop running here) are nudged to send at once.

Sits at the bottom of the services, beside `notify`: it imports no other service.
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any, Callable, Iterable, Mapping

from django.db import transaction

from routing import validation as v
from routing.models import (
    ROUTER_EVENT_TYPES,
    Assignment,
    DeliveryStatus,
    EventDelivery,
    EventSubscription,
    Job,
    Offer,
    ProvisioningState,
    PublishedEvent,
    Queue,
    Worker,
)

PREFIX = "Microsoft.Communication."
EVENT_TYPES = ROUTER_EVENT_TYPES

_commit_listeners: set[Callable[[], None]] = set()


def add_commit_listener(listener: Callable[[], None]) -> None:
    """Call `listener()` (no arguments, must not block) after each commit that published."""
    _commit_listeners.add(listener)


def _nudge() -> None:
    for listener in list(_commit_listeners):
        listener()


# --- filters ---------------------------------------------------------------------------------


def selects(
    *, event_type: str, subject: str, included_event_types: Iterable[str], begins_with: str, ends_with: str
) -> bool:
    """Event Grid's subscription filter: `includedEventTypes` (empty = all), then
    `subjectBeginsWith` / `subjectEndsWith` (case-insensitive, as Event Grid compares)."""
    included = list(included_event_types)
    if included and event_type not in included:
        return False
    lowered = subject.lower()
    return lowered.startswith(begins_with.lower()) and lowered.endswith(ends_with.lower())


def publish(
    *, event_type: str, subject: str, data: Mapping[str, Any], now: datetime,
    job_id: str | None = None, worker_id: str | None = None,
) -> PublishedEvent:
    """Write one event and its deliveries in the current transaction (see the module doc)."""
    event = PublishedEvent.objects.create(
        event_type=PREFIX + event_type, subject=subject, data=dict(data), job_id=job_id, worker_id=worker_id,
        occurred_at=now,
    )
    subscriptions = EventSubscription.objects.filter(provisioning_state=ProvisioningState.SUCCEEDED).values_list(
        "pk", "included_event_types", "subject_begins_with", "subject_ends_with"
    )
    owed = [
        EventDelivery(subscription_id=pk, event=event, status=DeliveryStatus.PENDING, created_at=now, due_at=now)
        for pk, included, begins, ends in subscriptions
        if selects(event_type=event.event_type, subject=subject, included_event_types=included or [],
                   begins_with=begins, ends_with=ends)
    ]
    if owed:
        EventDelivery.objects.bulk_create(owed)
        if _commit_listeners:
            transaction.on_commit(_nudge, robust=True)
    return event


# --- data shapes (AcsRouter*EventData) ---------------------------------------------------------


def _string_map(values: Mapping[str, Any] | None) -> dict[str, str]:
    """Labels and tags as the event schema has them: a map of strings."""
    out = {}
    for key, value in (values or {}).items():
        out[key] = value if isinstance(value, str) else json.dumps(value)
    return out


def _pascal(value: str | None) -> str | None:
    return value[:1].upper() + value[1:] if value else value


def worker_selector(selector: Mapping[str, Any]) -> dict[str, Any]:
    """AcsRouterWorkerSelector: {key, labelOperator (PascalCase), value (the SDK names it labelValue), ttlSeconds,
    state (active|expired), expirationTime}."""
    return {
        "key": selector.get("key"),
        "labelOperator": _pascal(selector.get("labelOperator")),
        "value": selector.get("value"),
        "ttlSeconds": selector.get("expiresAfterSeconds"),
        "state": selector.get("status", "active"),
        "expirationTime": selector.get("expiresAt"),
    }


def _selectors(selectors: Iterable[Mapping[str, Any]], state: str | None = None) -> list[dict[str, Any]]:
    return [worker_selector(s) for s in selectors if state is None or s.get("status", "active") == state]


def _job_base(job: Job) -> dict[str, Any]:
    """AcsRouterJobEventData: jobId, channelReference, channelId, queueId, labels, tags."""
    return {
        "jobId": job.pk,
        "channelReference": job.channel_reference,
        "channelId": job.channel_id,
        "queueId": job.queue_id,
        "labels": _string_map(job.labels),
        "tags": _string_map(job.tags),
    }


def _job_subject(job: Job, *parts: object) -> str:
    return "/".join([f"job/{job.pk}/channel/{job.channel_id}", *(str(p) for p in parts)])


def _job_event(name: str, job: Job, now: datetime, extra: Mapping[str, Any], *subject: object) -> None:
    publish(event_type=name, subject=_job_subject(job, *subject), data={**_job_base(job), **extra}, now=now,
            job_id=job.pk)


def _scheduled_on(job: Job) -> str | None:
    return v.format_datetime(job.scheduled_at) if job.scheduled_at else None


def _unavailable(job: Job) -> bool:
    return (job.matching_mode or {}).get("kind") in ("suspend", "scheduleAndSuspend")


def job_received(job: Job, now: datetime) -> None:
    """RouterJobReceived: a job was created (its first status already set)."""
    _job_event("RouterJobReceived", job, now, {
        "jobStatus": _pascal(job.status),
        "classificationPolicyId": job.classification_policy_id,
        "priority": job.priority,
        "requestedWorkerSelectors": _selectors(job.requested_worker_selectors),
        "scheduledOn": _scheduled_on(job),
        "unavailableForMatching": _unavailable(job),
    })


def job_classified(job: Job, now: datetime) -> None:
    """RouterJobClassified: classification chose the job's queue, priority and selectors."""
    queue = Queue.objects.filter(pk=job.queue_id).first()
    _job_event("RouterJobClassified", job, now, {
        "queueDetails": {"id": job.queue_id, "name": queue.name if queue else "",
                         "labels": _string_map({**(queue.labels if queue else {}), "Id": job.queue_id})},
        "classificationPolicyId": job.classification_policy_id,
        "priority": job.priority,
        "attachedWorkerSelectors": _selectors(job.attached_worker_selectors),
    }, "queue", job.queue_id)


def job_classification_failed(job: Job, error: str, now: datetime) -> None:
    """RouterJobClassificationFailed, with the reason as one ACS error."""
    _job_event("RouterJobClassificationFailed", job, now, {
        "classificationPolicyId": job.classification_policy_id,
        "errors": [{"code": "ClassificationFailed", "message": error, "target": None, "innererror": None,
                    "details": []}],
    }, "classificationpolicy", job.classification_policy_id)


def job_queued(job: Job, now: datetime) -> None:
    """RouterJobQueued: a job entered (or went back to) its queue."""
    _job_event("RouterJobQueued", job, now, {
        "priority": job.priority,
        "attachedWorkerSelectors": _selectors(job.attached_worker_selectors),
        "requestedWorkerSelectors": _selectors(job.requested_worker_selectors),
    }, "queue", job.queue_id)


def job_assignment_event(name: str, job: Job, assignment: Assignment, now: datetime) -> None:
    """RouterJobCompleted, RouterJobClosed (with dispositionCode) and RouterJobUnassigned."""
    extra: dict[str, Any] = {"assignmentId": str(assignment.pk), "workerId": assignment.worker_id}
    if name == "RouterJobClosed":
        extra["dispositionCode"] = job.disposition_code
    _job_event(name, job, now, extra, "assignment", assignment.pk)


def job_cancelled(job: Job, note: str | None, now: datetime) -> None:
    """RouterJobCancelled: note and dispositionCode."""
    _job_event("RouterJobCancelled", job, now, {"note": note, "dispositionCode": job.disposition_code},
               "disposition", job.disposition_code)


def job_exception_triggered(job: Job, rule_key: str, exception_policy_id: str | None, now: datetime) -> None:
    """RouterJobExceptionTriggered: `ruleKey` is the rule's id, `exceptionRuleId` the policy's."""
    _job_event("RouterJobExceptionTriggered", job, now, {"ruleKey": rule_key, "exceptionRuleId": exception_policy_id},
               "exceptionrule", rule_key)


def job_selectors_expired(job: Job, now: datetime) -> None:
    """RouterJobWorkerSelectorsExpired: the selectors now expired."""
    _job_event("RouterJobWorkerSelectorsExpired", job, now, {
        "expiredRequestedWorkerSelectors": _selectors(job.requested_worker_selectors, "expired"),
        "expiredAttachedWorkerSelectors": _selectors(job.attached_worker_selectors, "expired"),
    }, "queue", job.queue_id)


def job_waiting_for_activation(job: Job, now: datetime) -> None:
    """RouterJobWaitingForActivation: suspended, unassigned with suspendMatching, or scheduled
    time reached."""
    _job_event("RouterJobWaitingForActivation", job, now, {
        "priority": job.priority,
        "expiredAttachedWorkerSelectors": _selectors(job.attached_worker_selectors, "expired"),
        "expiredRequestedWorkerSelectors": _selectors(job.requested_worker_selectors, "expired"),
        "scheduledOn": _scheduled_on(job),
        "unavailableForMatching": _unavailable(job),
    })


def job_scheduling_failed(job: Job, reason: str, now: datetime) -> None:
    """RouterJobSchedulingFailed, with `failureReason`."""
    _job_event("RouterJobSchedulingFailed", job, now, {
        "priority": job.priority,
        "expiredAttachedWorkerSelectors": _selectors(job.attached_worker_selectors, "expired"),
        "expiredRequestedWorkerSelectors": _selectors(job.requested_worker_selectors, "expired"),
        "scheduledOn": _scheduled_on(job),
        "failureReason": reason,
    })


def job_deleted(job: Job, now: datetime) -> None:
    """RouterJobDeleted."""
    _job_event("RouterJobDeleted", job, now, {})


# --- offers ------------------------------------------------------------------------------------


def _offer_base(job: Job, worker_id: str) -> dict[str, Any]:
    """AcsRouterWorkerEventData: jobId, channelReference, channelId, workerId."""
    return {"jobId": job.pk, "channelReference": job.channel_reference, "channelId": job.channel_id,
            "workerId": worker_id}


def _offer_publish(name: str, job: Job, worker_id: str, extra: Mapping[str, Any], now: datetime) -> None:
    publish(event_type=name, subject=f"worker/{worker_id}/job/{job.pk}",
            data={**_offer_base(job, worker_id), "queueId": job.queue_id, **extra}, now=now,
            job_id=job.pk, worker_id=worker_id)


def _worker_and_job_labels(job: Job, worker: Worker | None) -> dict[str, Any]:
    return {
        "jobPriority": job.priority,
        "workerLabels": _string_map(worker.labels if worker else {}),
        "workerTags": _string_map(worker.tags if worker else {}),
        "jobLabels": _string_map(job.labels),
        "jobTags": _string_map(job.tags),
    }


def offer_issued(job: Job, offer: Offer, worker: Worker, now: datetime) -> None:
    """RouterWorkerOfferIssued: offerId, offeredOn, expiresOn and both label sets."""
    _offer_publish("RouterWorkerOfferIssued", job, offer.worker_id, {
        "offerId": str(offer.pk),
        **_worker_and_job_labels(job, worker),
        "offeredOn": v.format_datetime(offer.offered_at),
        "expiresOn": v.format_datetime(offer.expires_at) if offer.expires_at else None,
    }, now)


def offer_accepted(job: Job, offer_id: str, worker_id: str, assignment_id: str, now: datetime) -> None:
    """RouterWorkerOfferAccepted: offerId and the new assignmentId."""
    worker = Worker.objects.filter(pk=worker_id).first()
    _offer_publish("RouterWorkerOfferAccepted", job, worker_id, {
        "offerId": offer_id, "assignmentId": assignment_id, **_worker_and_job_labels(job, worker),
    }, now)


def offer_ended(name: str, job_id: str, offer_id: str, worker_id: str, now: datetime) -> None:
    """RouterWorkerOfferDeclined / Revoked / Expired: queueId and offerId."""
    job = Job.objects.filter(pk=job_id).first()
    if job is not None:
        _offer_publish(name, job, worker_id, {"offerId": offer_id}, now)


# --- workers -----------------------------------------------------------------------------------

# RouterWorkerUpdated.updatedWorkerProperties values, by the worker field they name.
WORKER_PROPERTIES = ("AvailableForOffers", "TotalCapacity", "QueueAssignments", "Labels", "Tags",
                     "ChannelConfigurations")


def worker_snapshot(worker: Worker) -> dict[str, Any]:
    """What RouterWorkerRegistered / Updated / Deleted carry about a worker: queueAssignments
    (AcsRouterQueueDetails), channelConfigurations, totalCapacity, labels, tags."""
    queue_ids = list(worker.queue_links.order_by("position").values_list("queue_id", flat=True))
    queues = dict(Queue.objects.filter(pk__in=queue_ids).values_list("pk", "name"))
    return {
        "workerId": worker.pk,
        "queueAssignments": [{"id": q, "name": queues.get(q) or "", "labels": {"Id": q}} for q in queue_ids],
        "channelConfigurations": [
            {"channelId": c.channel_id, "capacityCostPerJob": c.capacity_cost_per_job,
             "maxNumberOfJobs": c.max_number_of_jobs}
            for c in worker.channels.order_by("position")
        ],
        "totalCapacity": worker.capacity,
        "labels": _string_map(worker.labels),
        "tags": _string_map(worker.tags),
    }


def worker_event(name: str, worker: Worker, now: datetime, *, snapshot: Mapping[str, Any] | None = None,
                 updated: Iterable[str] = ()) -> None:
    """RouterWorkerRegistered / Updated (with updatedWorkerProperties) / Deregistered (workerId
    only) / Deleted (the last configuration)."""
    if name == "RouterWorkerDeregistered":
        data: dict[str, Any] = {"workerId": worker.pk}
    else:
        data = dict(snapshot if snapshot is not None else worker_snapshot(worker))
    if name == "RouterWorkerUpdated":
        data["updatedWorkerProperties"] = [p for p in WORKER_PROPERTIES if p in set(updated)]
    publish(event_type=name, subject=f"worker/{worker.pk}", data=data, now=now, worker_id=worker.pk)
