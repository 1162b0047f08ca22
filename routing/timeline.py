"""The job and worker timeline of the admin: the router events kept in `PublishedEvent`
(retention JOBROUTER_EVENT_RETENTION_DAYS) read back as one short sentence each, so a
supervisor can answer "what happened to this call?" ("10:02:03 offered to ana (expires
10:02:33) · 10:02:09 declined by ana · …"). Reads only."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any, Callable

from routing.models import PublishedEvent

# Most recent events shown per job or worker.
TIMELINE_LIMIT = 200


def _time(value: str | None) -> str:
    if not value:
        return "never"
    return datetime.fromisoformat(value).strftime("%H:%M:%S")


_SENTENCES: dict[str, Callable[[dict[str, Any]], str]] = {
    "RouterJobReceived": lambda d: f"received ({d.get('jobStatus')}, priority {d.get('priority')})",
    "RouterJobClassified": lambda d: f"classified into {d.get('queueId')} (priority {d.get('priority')})",
    "RouterJobClassificationFailed": lambda d: "classification failed: "
    + "; ".join(e.get("message", "") for e in d.get("errors", [])),
    "RouterJobQueued": lambda d: f"queued in {d.get('queueId')}",
    "RouterJobCompleted": lambda d: f"completed by {d.get('workerId')}",
    "RouterJobClosed": lambda d: f"closed by {d.get('workerId')} ({d.get('dispositionCode')})",
    "RouterJobCancelled": lambda d: f"cancelled ({d.get('dispositionCode')})",
    "RouterJobExceptionTriggered": lambda d: f"exception rule {d.get('ruleKey')} fired",
    "RouterJobWorkerSelectorsExpired": lambda d: "worker selectors expired",
    "RouterJobUnassigned": lambda d: f"unassigned from {d.get('workerId')}",
    "RouterJobWaitingForActivation": lambda d: "waiting for activation",
    "RouterJobSchedulingFailed": lambda d: f"scheduling failed: {d.get('failureReason')}",
    "RouterJobDeleted": lambda d: "deleted",
    "RouterWorkerOfferIssued": lambda d: f"{d.get('jobId')} offered to {d.get('workerId')} "
    f"(expires {_time(d.get('expiresOn'))})",
    "RouterWorkerOfferAccepted": lambda d: f"{d.get('jobId')} accepted by {d.get('workerId')}",
    "RouterWorkerOfferDeclined": lambda d: f"{d.get('jobId')} declined by {d.get('workerId')}",
    "RouterWorkerOfferRevoked": lambda d: f"offer of {d.get('jobId')} to {d.get('workerId')} revoked",
    "RouterWorkerOfferExpired": lambda d: f"offer of {d.get('jobId')} to {d.get('workerId')} expired",
    "RouterWorkerRegistered": lambda d: f"{d.get('workerId')} registered",
    "RouterWorkerUpdated": lambda d: f"{d.get('workerId')} updated ({', '.join(d.get('updatedWorkerProperties', []))})",
    "RouterWorkerDeregistered": lambda d: f"{d.get('workerId')} deregistered",
    "RouterWorkerDeleted": lambda d: f"{d.get('workerId')} deleted",
}


@dataclass(frozen=True)
class TimelineEntry:
    at: datetime
    text: str


def describe(event_type: str, data: dict[str, Any]) -> str:
    """One event as a short sentence (the event type itself for a type without one)."""
    name = event_type.rsplit(".", 1)[-1]
    sentence = _SENTENCES.get(name)
    return sentence(data) if sentence else name


def timeline(*, job_id: str | None = None, worker_id: str | None = None) -> list[TimelineEntry]:
    """The kept events of one job or one worker, oldest first (at most TIMELINE_LIMIT, the
    latest ones)."""
    events = PublishedEvent.objects.all()
    events = events.filter(job_id=job_id) if job_id is not None else events.filter(worker_id=worker_id)
    rows = list(events.order_by("-seq").values_list("occurred_at", "event_type", "data")[:TIMELINE_LIMIT])
    return [TimelineEntry(at, describe(event_type, data)) for at, event_type, data in reversed(rows)]
