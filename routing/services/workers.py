"""Workers: registration, updates and deletion (ACS 2023-11-01 RouterWorker, §4.2), desk logins,
queue service (seed 002 Q10) and manual request-next (seed 002 Q14)."""

from __future__ import annotations

from datetime import datetime

from django.contrib.auth.models import User
from django.db import transaction
from django.db.models import Q

from routing.capacity import fits, load_of
from routing.clock import clock
from routing.errors import Conflict, NotFound
from routing.models import Assignment, Job, JobDecline, JobStatus, Queue, TimerKind, Worker, WorkerChannel, WorkerQueue
from routing.patches import UNSET, WorkerPatch, apply_labels
from routing.services import events
from routing.services.assignment import AcceptResult, assign_locked, deregister_locked, rematch_after_revoke
from routing.services.common import Precondition, locked_get, owe, retry_on_deadlock, upsert
from routing.services.matching import WorkerSeat
from routing.services.notify import notify_changed


def _apply_fields(worker: Worker, patch: WorkerPatch) -> None:
    if patch.capacity is not UNSET:
        worker.capacity = patch.capacity
    worker.labels = {**apply_labels(worker.labels, patch.labels), "Id": worker.id}
    if patch.tags is not UNSET:
        worker.tags = apply_labels(worker.tags, patch.tags)
    if patch.available_for_offers is not UNSET:
        worker.available_for_offers = patch.available_for_offers


def _write_memberships(worker: Worker, patch: WorkerPatch) -> set[str]:
    """Replace channels and queues as the patch says; queue priorities survive a queue list
    that keeps the queue, and `queue_priorities` merges per queue. Returns the queues whose
    membership or priority changed (left, joined or re-prioritised)."""
    touched: set[str] = set()
    if patch.channels is not UNSET:
        worker.channels.all().delete()
        WorkerChannel.objects.bulk_create(
            [
                WorkerChannel(worker=worker, position=i, channel_id=c.channel_id,
                              capacity_cost_per_job=c.capacity_cost_per_job, max_number_of_jobs=c.max_number_of_jobs)
                for i, c in enumerate(patch.channels)
            ]
        )
    if patch.queues is not UNSET:
        existing = dict(worker.queue_links.values_list("queue_id", "priority"))
        touched |= set(existing) ^ set(patch.queues)
        worker.queue_links.all().delete()
        WorkerQueue.objects.bulk_create(
            [WorkerQueue(worker=worker, queue_id=q, position=i, priority=existing.get(q, 0)) for i, q in enumerate(patch.queues)]
        )
    if patch.queue_priorities is not UNSET:
        for queue_id, priority in patch.queue_priorities.items():
            WorkerQueue.objects.filter(worker=worker, queue_id=queue_id).update(priority=priority)
        touched |= set(patch.queue_priorities)
    return touched


# RouterWorkerUpdated.updatedWorkerProperties: the snapshot key each property is read from.
_SNAPSHOT_PROPERTIES = {
    "TotalCapacity": "totalCapacity", "QueueAssignments": "queueAssignments", "Labels": "labels", "Tags": "tags",
    "ChannelConfigurations": "channelConfigurations",
}


def _publish_worker_change(worker: Worker, before: dict | None, was_available: bool, now: datetime) -> None:
    """RouterWorkerRegistered / Deregistered on a change of availableForOffers, and
    RouterWorkerUpdated naming what changed on an existing worker."""
    after = events.worker_snapshot(worker)
    if before is not None:
        changed = [name for name, key in _SNAPSHOT_PROPERTIES.items() if before[key] != after[key]]
        if worker.available_for_offers != was_available:
            changed.append("AvailableForOffers")
        if changed:
            events.worker_event("RouterWorkerUpdated", worker, now, snapshot=after, updated=changed)
    if worker.available_for_offers and not was_available:
        events.worker_event("RouterWorkerRegistered", worker, now, snapshot=after)
    elif was_available and not worker.available_for_offers:
        events.worker_event("RouterWorkerDeregistered", worker, now)


@retry_on_deadlock
def worker_upsert(
    *, worker_id: str, patch: WorkerPatch, precondition: Precondition | None = None, now: datetime | None = None
) -> tuple[Worker, bool]:
    """Create or merge-patch a RouterWorker; returns (worker, created).

    `labels`/`tags` merge per key (`Id` is always the worker id). Going unavailable revokes the
    worker's open offers (deregistration); becoming available again forgets its declines
    (re-registration), starts its idle time and looks for work after commit.
    Raises PreconditionFailed (412).
    """
    now = clock(now)

    def apply(worker: Worker, created: bool):
        was_available = False if created else worker.available_for_offers
        before = None if created else events.worker_snapshot(worker)
        _apply_fields(worker, patch)
        registering = worker.available_for_offers and not was_available
        if registering:
            worker.idle_since = now

        def after_save() -> None:
            # Queues the worker left are no longer found from the worker: name them.
            touched = _write_memberships(worker, patch)
            notify_changed(workers=[worker.pk], queues=touched, now=now)
            _publish_worker_change(worker, before, was_available, now)
            if not worker.available_for_offers:
                deregister_locked(worker, now)
                return
            if registering:
                JobDecline.objects.filter(worker=worker).delete()
            owe(TimerKind.MATCH_WORKER, worker.pk, now)

        return after_save

    return upsert(Worker, pk=worker_id, now=now, precondition=precondition, apply=apply)


@retry_on_deadlock
def worker_set_availability(*, worker_id: str, available: bool, now: datetime | None = None) -> Worker:
    """Register (True) or deregister (False) a worker: the desk's auto-assign / Do-Not-Disturb."""
    worker, _ = worker_upsert(worker_id=worker_id, patch=WorkerPatch(available_for_offers=available), now=now)
    return worker


@retry_on_deadlock
def worker_delete(*, worker_id: str, now: datetime | None = None) -> None:
    """Delete a worker. NotFound (404) if unknown; Conflict (409) while it holds a live
    assignment (complete and close its jobs first). Its open offers are revoked."""
    now = clock(now)
    with transaction.atomic():
        worker = locked_get(Worker, worker_id, what="Worker")
        if Assignment.objects.live().filter(worker_id=worker.pk).exists():
            raise Conflict(f"Worker {worker_id!r} still has assigned jobs; close them before deleting it.")
        rematch_after_revoke(Q(worker_id=worker.pk), now)
        notify_changed(workers=[worker.pk], now=now)
        events.worker_event("RouterWorkerDeleted", worker, now)
        worker.delete()


def worker_link_user(*, worker_id: str, user: User | None) -> None:
    """Link a desk login (Django user, or None) to a worker; a user drives at most one worker."""
    with transaction.atomic():
        worker = locked_get(Worker, worker_id, what="Worker")
        if user is not None:
            Worker.objects.filter(user=user).exclude(pk=worker_id).update(user=None)
        worker.user = user
        worker.save(update_fields=["user"])


def _lock_served_queues(worker_id: str) -> list[str]:
    """Lock the worker row and return the queues it serves, in order. The caller's transaction
    holds the lock until it has written the new list: two starts (or a start and a stop) of one
    worker's queues then run one after the other, and neither writes a list read before the
    other's change (a lost queue). NotFound (404) for an unknown worker."""
    locked_get(Worker, worker_id, what="Worker")
    return list(WorkerQueue.objects.filter(worker_id=worker_id).order_by("position").values_list("queue_id", flat=True))


@retry_on_deadlock
def worker_serve_queue(*, worker_id: str, queue_id: str, priority: int = 0, now: datetime | None = None) -> Worker:
    """Start serving a queue with a per-queue agent priority (seed 002 Q10, `startService2`),
    or change the priority of a queue already served. NotFound (404) for an unknown worker or
    queue. The worker row is locked while its queue list is read and rewritten."""
    now = clock(now)
    if not Queue.objects.filter(pk=queue_id).exists():
        raise NotFound(f"Queue {queue_id!r} was not found.")
    with transaction.atomic():
        current = _lock_served_queues(worker_id)
        queues = current if queue_id in current else [*current, queue_id]
        worker, _ = worker_upsert(
            worker_id=worker_id, patch=WorkerPatch(queues=queues, queue_priorities={queue_id: priority}), now=now
        )
    return worker


@retry_on_deadlock
def worker_stop_serving(*, worker_id: str, queue_id: str, now: datetime | None = None) -> Worker:
    """Stop serving a queue (seed 002 Q10, `stopService`); open offers from it are revoked.
    NotFound (404) for an unknown worker. The worker row is locked while its queue list is read
    and rewritten."""
    now = clock(now)
    with transaction.atomic():
        current = _lock_served_queues(worker_id)
        worker, _ = worker_upsert(
            worker_id=worker_id, patch=WorkerPatch(queues=[q for q in current if q != queue_id]), now=now
        )
        rematch_after_revoke(Q(worker_id=worker_id, job__in=Job.objects.filter(queue_id=queue_id).values("pk")), now)
    return worker


def _assign_if_room(job: Job, worker_id: str, cost: int, max_jobs: int | None, now: datetime) -> AcceptResult | None:
    """Assign `job` to the worker if it is still queued and the worker still has room: job lock,
    then worker lock (the one lock order)."""
    with transaction.atomic():
        locked = Job.objects.select_for_update().filter(pk=job.pk, status=JobStatus.QUEUED).first()
        if locked is None:
            return None  # taken meanwhile
        me = Worker.objects.select_for_update().get(pk=worker_id)
        # This worker's own open offer for the job (if any) holds capacity it is about to use.
        own = load_of(worker_id, now)
        own.used -= sum(o.capacity_cost for o in locked.offers.open_at(now).filter(worker_id=worker_id))
        if not fits(capacity=me.capacity, load=own, channel_id=job.channel_id or "", cost=cost, max_jobs=max_jobs):
            return None
        return assign_locked(locked, worker_id=worker_id, channel_id=job.channel_id or "", cost=cost, now=now)


@retry_on_deadlock
def worker_request_job(*, worker_id: str, now: datetime | None = None) -> AcceptResult:
    """Manual assign (seed 002 Q14, `reqAssignUser`): assign this worker the best waiting job it
    can take right now — even while it is not available for offers (Do-Not-Disturb) — within
    its capacity, channels and the job's selectors, in queue order (queue priority, expedited,
    job priority, enqueue time). Other workers' open offers for that job are revoked.

    Returns an AcceptResult. Refusals, each with its own code: `NotServing` (409) when the
    worker serves no queue or has no channel, `AtCapacity` (409) when it has no room for another
    job, `NoJobWaiting` (404) when no job it could take is waiting ("no customer waiting",
    seed 002 `QUE_NOUSER`); NotFound (404) for an unknown worker.
    """
    now = clock(now)
    worker = Worker.objects.filter(pk=worker_id).first()
    if worker is None:
        raise NotFound(f"Worker {worker_id!r} was not found.")
    seat = WorkerSeat.read(worker, now)
    if not seat.queue_ids or not seat.channels:
        raise Conflict("You serve no queue on any channel; start serving a queue first.", code="NotServing")
    if not seat.has_room():
        raise Conflict("You are at capacity; complete and close a customer first.", code="AtCapacity")
    for job in seat.candidate_jobs(now):
        cost, max_jobs = seat.channels[job.channel_id or ""]
        result = _assign_if_room(job, worker_id, cost, max_jobs, now)
        if result is not None:
            return result
    raise NotFound("No customer is waiting for this worker.", code="NoJobWaiting")
