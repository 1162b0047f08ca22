"""Read functions: build each queryset once, with the joins and prefetches its readers need.

Nothing here writes. Offers past `expiresAt` are filtered out of every read, so a client never
sees an offer as open after it expired, whether or not the timer loop has processed it yet.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.db.models import Count, Exists, Max, Min, OuterRef, Prefetch, Q, QuerySet

from routing.capacity import Load, fits, load_ratio, loads_for
from routing.clock import clock
from routing.errors import Conflict, InvalidRequest, NotFound
from routing.models import (
    ACTIVE_JOB_STATUSES,
    Assignment,
    Job,
    JobStatus,
    Offer,
    OfferStatus,
    Queue,
    Worker,
    WorkerChannel,
    WorkerQueue,
)


def jobs_queryset() -> QuerySet[Job]:
    """Jobs with their visible assignments (unassigned ones are dropped, as the service does)."""
    return Job.objects.prefetch_related(
        Prefetch(
            "assignments",
            queryset=Assignment.objects.visible(),
            to_attr="visible_assignments",
        )
    )


def job_get(job_id: str) -> Job:
    job = jobs_queryset().filter(pk=job_id).first()
    if job is None:
        raise NotFound(f"Job {job_id!r} was not found.")
    return job


def jobs_filtered(
    *,
    status: str = "all",
    queue_id: str | None = None,
    channel_id: str | None = None,
    classification_policy_id: str | None = None,
    scheduled_before: datetime | None = None,
    scheduled_after: datetime | None = None,
) -> QuerySet[Job]:
    """ACS list_jobs filters. `status` is a RouterJobStatusSelector: a status, `all`, or
    `active` (every status but closed and cancelled). Scheduled bounds are inclusive."""
    qs = jobs_queryset()
    if status == "active":
        qs = qs.filter(status__in=ACTIVE_JOB_STATUSES)
    elif status != "all":
        if status not in JobStatus.values:
            raise InvalidRequest(f"status {status!r} is not a valid job status selector.", target="status")
        qs = qs.filter(status=status)
    if queue_id:
        qs = qs.filter(queue_id=queue_id)
    if channel_id:
        qs = qs.filter(channel_id=channel_id)
    if classification_policy_id:
        qs = qs.filter(classification_policy_id=classification_policy_id)
    if scheduled_before is not None:
        qs = qs.filter(scheduled_at__lte=scheduled_before)
    if scheduled_after is not None:
        qs = qs.filter(scheduled_at__gte=scheduled_after)
    return qs


@dataclass
class WorkerView:
    """A worker as clients see it: derived state, load and the open offers / live assignments."""

    worker: Worker
    state: str
    load_ratio: float
    offers: list[Offer]
    assignments: list[Assignment]


def _worker_views(workers: list[Worker], now: datetime) -> list[WorkerView]:
    ids = [w.pk for w in workers]
    offers: dict[str, list[Offer]] = {i: [] for i in ids}
    for offer in Offer.objects.open_at(now).filter(worker_id__in=ids).order_by("offered_at"):
        offers[offer.worker_id].append(offer)
    assignments: dict[str, list[Assignment]] = {i: [] for i in ids}
    for assignment in Assignment.objects.live().filter(worker_id__in=ids).order_by("assigned_at"):
        assignments[assignment.worker_id].append(assignment)
    views = []
    for w in workers:
        used = sum(o.capacity_cost for o in offers[w.pk]) + sum(a.capacity_cost for a in assignments[w.pk])
        if w.available_for_offers:
            state = "active"
        elif assignments[w.pk]:
            state = "draining"
        else:
            state = "inactive"
        views.append(WorkerView(w, state, load_ratio(w.capacity, used), offers[w.pk], assignments[w.pk]))
    return views


def missed_offer_deregistrations(workers: list[Worker]) -> dict[str, datetime]:
    """Worker id → when it was switched to Do not disturb for letting an offer expire, for the
    workers whose latest change was that switch (`offer_expire` marks the offer expired and
    deregisters the worker at one `now`, so the offer's `ended_at` equals the worker's
    `updated_at`); any later change to the worker (the agent going back to Auto-assign, or
    choosing Do not disturb again) ends it. One read for all the workers, on the
    (worker, status) offer index."""
    dnd = {w.pk: w.updated_at for w in workers if not w.available_for_offers}
    if not dnd:
        return {}
    latest = (
        Offer.objects.filter(worker_id__in=list(dnd), status=OfferStatus.EXPIRED)
        .values("worker_id")
        .annotate(last=Max("ended_at"))
        .values_list("worker_id", "last")
    )
    return {worker_id: last for worker_id, last in latest if last is not None and last >= dnd[worker_id]}


def workers_queryset() -> QuerySet[Worker]:
    return Worker.objects.prefetch_related(
        Prefetch("channels", queryset=WorkerChannel.objects.order_by("position")),
        Prefetch("queue_links", queryset=WorkerQueue.objects.order_by("position")),
    )


def worker_get(worker_id: str, now: datetime | None = None) -> WorkerView:
    worker = workers_queryset().filter(pk=worker_id).first()
    if worker is None:
        raise NotFound(f"Worker {worker_id!r} was not found.")
    return _worker_views([worker], clock(now))[0]


def workers_filtered(
    *,
    now: datetime,
    state: str = "all",
    channel_id: str | None = None,
    queue_id: str | None = None,
    has_capacity: bool = False,
) -> QuerySet[Worker]:
    """ACS list_workers filters. `state`: active (available for offers), draining (not
    available, still holding assignments), inactive (neither), or all. `has_capacity`: only
    workers with room for one more job on `channel_id` (on any of their channels without it)."""
    qs = workers_queryset()
    live = Assignment.objects.live().filter(worker_id=OuterRef("pk"))
    if state == "active":
        qs = qs.filter(available_for_offers=True)
    elif state == "draining":
        qs = qs.filter(Exists(live), available_for_offers=False)
    elif state == "inactive":
        qs = qs.filter(~Exists(live), available_for_offers=False)
    elif state != "all":
        raise InvalidRequest(f"state {state!r} is not one of active, draining, inactive, all.", target="state")
    if queue_id:
        qs = qs.filter(queue_links__queue_id=queue_id)
    if channel_id:
        qs = qs.filter(channels__channel_id=channel_id)
    if has_capacity:
        # Capacity depends on offers and assignments across channels: compute it for the
        # filtered workers, then narrow the queryset to those with room.
        base = Q(worker__in=qs.values("pk"))
        loads = loads_for(base, now)
        room = []
        for worker in qs.prefetch_related(None).prefetch_related("channels"):
            load = loads.get(worker.pk, Load())
            channels = [c for c in worker.channels.all() if not channel_id or c.channel_id == channel_id]
            if any(
                fits(capacity=worker.capacity, load=load, channel_id=c.channel_id, cost=c.capacity_cost_per_job,
                     max_jobs=c.max_number_of_jobs)
                for c in channels
            ):
                room.append(worker.pk)
        qs = qs.filter(pk__in=room)
    return qs.distinct()


def worker_views(workers: list[Worker], now: datetime | None = None) -> list[WorkerView]:
    return _worker_views(workers, clock(now))


# --- queue statistics and position (ACS §4.7) ------------------------------------------------

THROUGHPUT_WINDOW = timedelta(hours=1)


def assignments_per_minute(queue_id: str, now: datetime) -> float:
    """How fast the queue has been served: jobs assigned from it per minute over the last hour."""
    count = Assignment.objects.filter(job__queue_id=queue_id, assigned_at__gte=now - THROUGHPUT_WINDOW).count()
    return count / (THROUGHPUT_WINDOW.total_seconds() / 60)


def estimated_wait_minutes(position: int, per_minute: float) -> float:
    """Estimated wait of the job at `position` (1-based): the jobs ahead of it, and itself,
    served at the queue's recent rate. With no recent assignments there is no basis: 0."""
    if per_minute <= 0:
        return 0.0
    return float(math.ceil(position / per_minute))


@dataclass
class QueueStatistics:
    queue_id: str
    length: int
    estimated_wait_time_minutes: dict[str, float]
    longest_job_wait_time_minutes: float | None
    # Seed 002 Q9 extension.
    serving_workers: int
    available_workers: int
    assigned_jobs: int
    # When the job waiting longest was enqueued (pages count the wait up from it); not on the wire.
    oldest_enqueued_at: datetime | None = None


def queue_statistics(queue_id: str, now: datetime | None = None) -> QueueStatistics:
    """RouterQueueStatistics: `length` (queued jobs), `longestJobWaitTimeMinutes` (oldest enqueue
    to now), `estimatedWaitTimeMinutes` per priority (for a job arriving now at that priority,
    rounded up), plus serving/available workers and assigned jobs. NotFound (404)."""
    now = clock(now)
    if not Queue.objects.filter(pk=queue_id).exists():
        raise NotFound(f"Queue {queue_id!r} was not found.")
    queued = Job.objects.queued_in(queue_id)
    summary = queued.aggregate(length=Count("pk"), oldest=Min("enqueued_at"))
    length = summary["length"]
    per_minute = assignments_per_minute(queue_id, now)
    by_priority = dict(queued.values_list("priority").annotate(n=Count("pk")).values_list("priority", "n"))
    estimates = {}
    for priority in sorted(by_priority, reverse=True):
        ahead = sum(n for p, n in by_priority.items() if p >= priority)
        estimates[str(priority)] = estimated_wait_minutes(ahead, per_minute)
    longest = (now - summary["oldest"]).total_seconds() / 60 if summary["oldest"] else None
    serving = WorkerQueue.objects.filter(queue_id=queue_id)
    return QueueStatistics(
        queue_id=queue_id,
        length=length,
        estimated_wait_time_minutes=estimates,
        longest_job_wait_time_minutes=longest,
        serving_workers=serving.count(),
        available_workers=serving.filter(worker__available_for_offers=True).count(),
        assigned_jobs=Job.objects.filter(queue_id=queue_id, status=JobStatus.ASSIGNED).count(),
        oldest_enqueued_at=summary["oldest"],
    )


@dataclass
class JobPosition:
    job_id: str
    position: int
    queue_id: str
    queue_length: int
    estimated_wait_time_minutes: float


def job_position(job_id: str, now: datetime | None = None) -> JobPosition:
    """RouterJobPositionDetails for a queued job: 1-based position in its queue's order
    (expedited first, then higher priority, then earlier enqueue). NotFound (404) for an unknown
    job; Conflict (409) when the job is not queued."""
    now = clock(now)
    job = Job.objects.filter(pk=job_id).first()
    if job is None:
        raise NotFound(f"Job {job_id!r} was not found.")
    if job.status != JobStatus.QUEUED:
        raise Conflict(f"Job {job_id!r} is not queued (status {job.status}).")
    queued = Job.objects.queued_in(job.queue_id)
    ahead = queued.ahead_of(job).count()
    position = ahead + 1
    return JobPosition(
        job_id=job.pk,
        position=position,
        queue_id=job.queue_id or "",
        queue_length=queued.count(),
        estimated_wait_time_minutes=estimated_wait_minutes(position, assignments_per_minute(job.queue_id or "", now)),
    )
