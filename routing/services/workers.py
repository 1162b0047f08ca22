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
        worker.delete()


def worker_link_user(*, worker_id: str, user) -> None:
    """Link a desk login (Django user, or None) to a worker; a user drives at most one worker."""
    with transaction.atomic():
        worker = locked_get(Worker, worker_id, what="Worker")
        if user is not None:
            Worker.objects.filter(user=user).exclude(pk=worker_id).update(user=None)
        worker.user = user
        worker.save(update_fields=["user"])
