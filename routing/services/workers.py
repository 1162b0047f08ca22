"""Workers: registration, updates and deletion (ACS 2023-11-01 RouterWorker, §4.2)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from django.db import transaction
from django.db.models import Q

from routing import validation as v
from routing.errors import Conflict, InvalidRequest
from routing.models import Assignment, JobDecline, Worker, WorkerChannel, WorkerQueue
from routing.services.common import Precondition, after_commit, clock, locked_get, upsert
from routing.services.matching import LIVE_ASSIGNMENT_Q, match_job, match_worker, revoke_offers
from routing.services.notify import notify_changed


def _parse_channels(value: Any) -> list[dict]:
    channels = []
    seen = set()
    for i, item in enumerate(v.require_list(value, "channels")):
        where = f"channels[{i}]"
        obj = v.require_object(item, where)
        channel_id = v.required_string(obj, "channelId", where)
        if channel_id in seen:
            raise InvalidRequest(f"{where}.channelId {channel_id!r} is listed twice.", target=where)
        seen.add(channel_id)
        cost = v.optional_int(obj.get("capacityCostPerJob"), f"{where}.capacityCostPerJob", minimum=0)
        if cost is None:
            raise InvalidRequest(f"{where}.capacityCostPerJob is required.", target=f"{where}.capacityCostPerJob")
        max_jobs = v.optional_int(obj.get("maxNumberOfJobs"), f"{where}.maxNumberOfJobs", minimum=1)
        channels.append({"channel_id": channel_id, "capacity_cost_per_job": cost, "max_number_of_jobs": max_jobs})
    return channels


def _parse_queues(value: Any) -> list[str]:
    queues = []
    for i, item in enumerate(v.require_list(value, "queues")):
        queue_id = v.optional_string(item, f"queues[{i}]")
        if not queue_id:
            raise InvalidRequest(f"queues[{i}] must be a queue id.", target="queues")
        if queue_id not in queues:
            queues.append(queue_id)
    return queues


def worker_upsert(
    *, worker_id: str, patch: dict[str, Any], precondition: Precondition | None = None, now: datetime | None = None
) -> tuple[Worker, bool]:
    """Create or merge-patch a RouterWorker; returns (worker, created).

    `patch` (2023-11-01 wire shape): `capacity` (int ≥ 0), `queues` (list of queue ids, replaces),
    `channels` (list of RouterChannel, replaces), `labels`/`tags` (merged per key; `Id` is always
    the worker id), `availableForOffers`, and the seed 002 extension `queuePriorities`
    ({queueId: int}, merged). Going unavailable revokes the worker's open offers (deregistration);
    becoming available again forgets its declines (re-registration) and looks for work.
    Raises InvalidRequest (400), PreconditionFailed (412).
    """
    now = clock(now)

    def apply(worker: Worker, created: bool):
        was_available = False if created else worker.available_for_offers
        if "capacity" in patch:
            worker.capacity = v.optional_int(patch["capacity"], "capacity", minimum=0) or 0
        if "labels" in patch and patch["labels"] is not None:
            worker.labels = v.merge_label_map(worker.labels or {}, patch["labels"], "labels")
        worker.labels = {**(worker.labels or {}), "Id": worker.id}
        if "tags" in patch and patch["tags"] is not None:
            worker.tags = v.merge_label_map(worker.tags or {}, patch["tags"], "tags")
        if "availableForOffers" in patch:
            worker.available_for_offers = bool(v.optional_bool(patch["availableForOffers"], "availableForOffers"))
        channels = _parse_channels(patch["channels"] or []) if "channels" in patch else None
        queues = _parse_queues(patch["queues"] or []) if "queues" in patch else None
        priorities = None
        if patch.get("queuePriorities") is not None:
            raw = v.require_object(patch["queuePriorities"], "queuePriorities")
            priorities = {
                k: (v.optional_int(val, f"queuePriorities.{k}") or 0) for k, val in raw.items() if val is not None
            }
        registering = worker.available_for_offers and not was_available
        if registering:
            worker.idle_since = now

        def after_save() -> None:
            if channels is not None:
                worker.channels.all().delete()
                WorkerChannel.objects.bulk_create(
                    [WorkerChannel(worker=worker, position=i, **c) for i, c in enumerate(channels)]
                )
            if queues is not None:
                existing = dict(worker.queue_links.values_list("queue_id", "priority"))
                worker.queue_links.all().delete()
                WorkerQueue.objects.bulk_create(
                    [
                        WorkerQueue(worker=worker, queue_id=q, position=i, priority=existing.get(q, 0))
                        for i, q in enumerate(queues)
                    ]
                )
            if priorities:
                for queue_id, priority in priorities.items():
                    WorkerQueue.objects.filter(worker=worker, queue_id=queue_id).update(priority=priority)
            notify_changed(workers=[worker.pk], queues=[*(queues or []), *(priorities or {})])
            if not worker.available_for_offers:
                _deregister(worker, now)
            else:
                if registering:
                    JobDecline.objects.filter(worker=worker).delete()
                after_commit(match_worker, worker_id=worker.id)

        return after_save

    return upsert(Worker, pk=worker_id, now=now, precondition=precondition, apply=apply)


def _deregister(worker: Worker, now: datetime) -> None:
    """Revoke a worker's open offers; the jobs go on to other workers after commit."""
    for _offer_id, job_id in revoke_offers(Q(worker_id=worker.pk), now):
        after_commit(match_job, job_id=job_id)


def worker_set_availability(*, worker_id: str, available: bool, now: datetime | None = None) -> Worker:
    """Register (True) or deregister (False) a worker: the desk's auto-assign / Do-Not-Disturb."""
    worker, _ = worker_upsert(worker_id=worker_id, patch={"availableForOffers": available}, now=now)
    return worker


def worker_deregister_locked(worker: Worker, now: datetime) -> None:
    """Deregister a worker whose row the caller holds locked (offer expiry)."""
    if worker.available_for_offers:
        worker.available_for_offers = False
        worker.touch(now)
        worker.save(update_fields=["available_for_offers", "etag", "updated_at"])
    _deregister(worker, now)


def worker_delete(*, worker_id: str, now: datetime | None = None) -> None:
    """Delete a worker. NotFound (404) if unknown; Conflict (409) while it holds a live
    assignment (complete and close its jobs first). Its open offers are revoked."""
    now = clock(now)
    with transaction.atomic():
        worker = locked_get(Worker, worker_id, what="Worker")
        if Assignment.objects.filter(LIVE_ASSIGNMENT_Q, worker_id=worker.pk).exists():
            raise Conflict(f"Worker {worker_id!r} still has assigned jobs; close them before deleting it.")
        _deregister(worker, now)
        notify_changed(workers=[worker.pk])
        worker.delete()


def worker_link_user(*, worker_id: str, user) -> None:
    """Link a desk login (Django user, or None) to a worker; a user drives at most one worker."""
    with transaction.atomic():
        worker = locked_get(Worker, worker_id, what="Worker")
        if user is not None:
            Worker.objects.filter(user=user).exclude(pk=worker_id).update(user=None)
        worker.user = user
        worker.save(update_fields=["user"])


def worker_serve_queue(*, worker_id: str, queue_id: str, priority: int = 0, now: datetime | None = None) -> Worker:
    """Start serving a queue with a per-queue agent priority (seed 002 Q10, `startService2`),
    or change the priority of a queue already served. NotFound (404) for an unknown queue."""
    from routing.errors import NotFound
    from routing.models import Queue

    if not Queue.objects.filter(pk=queue_id).exists():
        raise NotFound(f"Queue {queue_id!r} was not found.")
    current = list(WorkerQueue.objects.filter(worker_id=worker_id).order_by("position").values_list("queue_id", flat=True))
    queues = current if queue_id in current else [*current, queue_id]
    worker, _ = worker_upsert(
        worker_id=worker_id, patch={"queues": queues, "queuePriorities": {queue_id: priority}}, now=now
    )
    return worker


def worker_stop_serving(*, worker_id: str, queue_id: str, now: datetime | None = None) -> Worker:
    """Stop serving a queue (seed 002 Q10, `stopService`); open offers from it are revoked."""
    from routing.models import Job

    now = clock(now)
    current = list(WorkerQueue.objects.filter(worker_id=worker_id).order_by("position").values_list("queue_id", flat=True))
    with transaction.atomic():
        worker, _ = worker_upsert(
            worker_id=worker_id, patch={"queues": [q for q in current if q != queue_id]}, now=now
        )
        jobs = Job.objects.filter(queue_id=queue_id).values("pk")
        for _offer_id, job_id in revoke_offers(Q(worker_id=worker_id, job__in=jobs), now):
            after_commit(match_job, job_id=job_id)
    return worker


def worker_request_job(*, worker_id: str, now: datetime | None = None):
    """Manual assign (seed 002 Q14, `reqAssignUser`): assign this worker the best waiting job it
    can take right now — even while it is not available for offers (Do-Not-Disturb) — within
    its capacity, channels and the job's selectors, in queue order (queue priority, expedited,
    job priority, enqueue time). Other workers' open offers for that job are revoked.

    Returns an AcceptResult; NotFound with code `NoJobWaiting` (404) when nothing matches;
    NotFound (404) for an unknown worker.
    """
    from routing.errors import NotFound
    from routing.models import Job, JobStatus
    from routing.engine.selectors import all_match
    from routing.services.matching import fits, job_selectors, load_of, queue_modes, queued_jobs_for
    from routing.services.offers import AcceptResult, assign_locked

    now = clock(now)
    worker = Worker.objects.filter(pk=worker_id).first()
    if worker is None:
        raise NotFound(f"Worker {worker_id!r} was not found.")
    channels = {c.channel_id: (c.capacity_cost_per_job, c.max_number_of_jobs) for c in worker.channels.all()}
    queue_ids = list(worker.queue_links.values_list("queue_id", flat=True))
    declined = set(
        JobDecline.objects.filter(worker_id=worker_id)
        .filter(Q(retry_offer_at__isnull=True) | Q(retry_offer_at__gt=now))
        .values_list("job_id", flat=True)
    )
    modes = queue_modes(queue_ids)
    load = load_of(worker_id, now)
    for job in queued_jobs_for(queue_ids, list(channels)):
        cost, max_jobs = channels[job.channel_id]
        if job.pk in declined or not fits(
            capacity=worker.capacity, load=load, channel_id=job.channel_id, cost=cost, max_jobs=max_jobs
        ):
            continue
        if not modes.get(job.queue_id, {}).get("bypassSelectors") and not all_match(job_selectors(job, now), worker.labels):
            continue
        with transaction.atomic():
            locked = Job.objects.select_for_update().filter(pk=job.pk, status=JobStatus.QUEUED).first()
            if locked is None:
                continue  # taken meanwhile: try the next one
            me = Worker.objects.select_for_update().get(pk=worker_id)
            # This worker's own open offer for the job (if any) holds capacity it is about to use.
            own = load_of(worker_id, now)
            own_offer_cost = sum(
                o.capacity_cost for o in locked.offers.filter(worker_id=worker_id, status="open")
            )
            own.used -= own_offer_cost
            if not fits(capacity=me.capacity, load=own, channel_id=job.channel_id, cost=cost, max_jobs=max_jobs):
                continue
            assignment = assign_locked(locked, worker_id=worker_id, channel_id=job.channel_id, cost=cost, now=now)
            return AcceptResult(assignment_id=str(assignment.pk), job_id=locked.pk, worker_id=worker_id)
    raise NotFound("No customer is waiting for this worker.", code="NoJobWaiting")
