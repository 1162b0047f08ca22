"""What live pages are sent, rendered from the database: one function per frame kind, each
rendering every frame of its kind that a change needs in one pass (typed payloads, built in one
place). `agents.hub` calls them from its render thread and sends the same bytes to every socket
that shows the same thing.

Frame kinds (all carry `type` and `serverTime`; `agents.hub` adds `topic` and `seq`):
- `desk`: one worker's own state — availability (and `dndReason` "missedOffer" with
  `missedOfferAt` when the router switched it to Do not disturb because an offer expired
  unanswered), load, channels, open offers, live assignments, the queues it serves with its
  priority in each (`myQueues`);
- `queue`: one queue's status, shared by every desk serving it and every supervisor;
- `catalog`: every queue an agent may serve (id, name, description, priority);
- `workers`: supervisor rows of the workers that changed;
- `supervisor`: the supervisor's opening snapshot (every queue and worker);
- `waiting`: one customer's place in line.
"""

from __future__ import annotations

from collections import defaultdict
from datetime import datetime
from typing import Any, TypedDict

from routing.models import Job, JobStatus, Queue, Worker, WorkerQueue
from routing.queries import (
    assignments_per_minute,
    estimated_wait_minutes,
    missed_offer_deregistrations,
    queue_statistics,
    worker_views,
)
from routing.validation import format_datetime


class QueueStatus(TypedDict):
    """A queue as desks and supervisors show it. `oldestEnqueuedAt` lets pages count the
    longest wait up locally between frames; `longestWaitSeconds` is as of `serverTime`."""

    id: str
    name: str
    description: str
    priority: int
    length: int
    oldestEnqueuedAt: str | None
    longestWaitSeconds: float | None
    servingWorkers: int
    availableWorkers: int
    assignedJobs: int


class QueueInfo(TypedDict):
    id: str
    name: str
    description: str
    priority: int


def _iso(value: datetime | None) -> str | None:
    return format_datetime(value) if value else None


def queue_info(queue: Queue) -> QueueInfo:
    return {"id": queue.pk, "name": queue.name or queue.pk, "description": queue.description,
            "priority": queue.priority}


def queue_status(queue: Queue, now: datetime) -> QueueStatus:
    stats = queue_statistics(queue.pk, now)
    longest = stats.longest_job_wait_time_minutes
    return {
        **queue_info(queue),
        "length": stats.length,
        "oldestEnqueuedAt": _iso(stats.oldest_enqueued_at),
        "longestWaitSeconds": None if longest is None else round(longest * 60, 1),
        "servingWorkers": stats.serving_workers,
        "availableWorkers": stats.available_workers,
        "assignedJobs": stats.assigned_jobs,
    }


def queue_frames(queue_ids: set[str], now: datetime) -> dict[str, dict[str, Any]]:
    """Queue id → `queue` frame; a queue that no longer exists gets `{"id", "deleted": true}`."""
    queues = {q.pk: q for q in Queue.objects.filter(pk__in=queue_ids)}
    frames: dict[str, dict[str, Any]] = {}
    for queue_id in queue_ids:
        queue = queues.get(queue_id)
        body: dict[str, Any] = {"id": queue_id, "deleted": True} if queue is None else dict(queue_status(queue, now))
        frames[queue_id] = {"type": "queue", "serverTime": _iso(now), "queue": body}
    return frames


def catalog_frame(now: datetime) -> dict[str, Any]:
    """Every queue an agent may start serving, highest priority first."""
    return {"type": "catalog", "serverTime": _iso(now),
            "queues": [queue_info(q) for q in Queue.objects.order_by("-priority", "pk")]}


def _job_summary(job: Job) -> dict[str, Any]:
    return {
        "jobId": job.pk,
        "queueId": job.queue_id,
        "channelId": job.channel_id,
        "channelReference": job.channel_reference,
        "priority": job.priority,
        "labels": job.labels,
        "status": job.status,
        "enqueuedAt": _iso(job.enqueued_at),
    }


def desk_frames(worker_ids: set[str], now: datetime) -> dict[str, dict[str, Any]]:
    """Worker id → `desk` frame; a deleted worker gets `{"worker": null}`."""
    workers = list(Worker.objects.filter(pk__in=worker_ids).prefetch_related("channels", "queue_links"))
    views = {v.worker.pk: v for v in worker_views(workers, now)}
    job_ids = [o.job_id for v in views.values() for o in v.offers] + [
        a.job_id for v in views.values() for a in v.assignments
    ]
    jobs = {j.pk: j for j in Job.objects.filter(pk__in=job_ids)}
    missed = missed_offer_deregistrations(workers)
    frames: dict[str, dict[str, Any]] = {
        w: {"type": "desk", "serverTime": _iso(now), "worker": None, "offers": [], "assignments": [], "myQueues": []}
        for w in worker_ids
    }
    for worker in workers:
        view = views[worker.pk]
        offers = [
            {**_job_summary(jobs[o.job_id]), "offerId": str(o.pk), "offeredAt": _iso(o.offered_at),
             "expiresAt": _iso(o.expires_at)}
            for o in view.offers if o.job_id in jobs
        ]
        assignments = [
            {**_job_summary(jobs[a.job_id]), "assignmentId": str(a.pk), "assignedAt": _iso(a.assigned_at),
             "completedAt": _iso(a.completed_at), "closeAt": _iso(a.close_at),
             "waitedSeconds": _waited(jobs[a.job_id], a.assigned_at)}
            for a in view.assignments if a.job_id in jobs
        ]
        frames[worker.pk].update(
            worker={
                "id": worker.pk,
                "state": view.state,
                "availableForOffers": worker.available_for_offers,
                "dndReason": "missedOffer" if worker.pk in missed else None,
                "missedOfferAt": _iso(missed.get(worker.pk)),
                "capacity": worker.capacity,
                "loadRatio": view.load_ratio,
                "channels": [{"channelId": c.channel_id, "capacityCostPerJob": c.capacity_cost_per_job}
                             for c in worker.channels.all()],
            },
            offers=offers,
            assignments=assignments,
            myQueues=[{"id": link.queue_id, "myPriority": link.priority} for link in worker.queue_links.all()],
        )
    return frames


def _waited(job: Job, assigned_at: datetime) -> float | None:
    return (assigned_at - job.enqueued_at).total_seconds() if job.enqueued_at else None


def served_queues(worker_ids: set[str]) -> dict[str, set[str]]:
    """Worker id → the queues it serves (their frames count its availability)."""
    served: dict[str, set[str]] = defaultdict(set)
    for worker_id, queue_id in WorkerQueue.objects.filter(worker_id__in=worker_ids).values_list("worker_id", "queue_id"):
        served[worker_id].add(queue_id)
    return served


def job_queues(job_ids: set[str]) -> dict[str, str]:
    """Job id → its queue (jobs without one are left out)."""
    return {
        job_id: queue_id
        for job_id, queue_id in Job.objects.filter(pk__in=job_ids, queue__isnull=False).values_list("pk", "queue_id")
    }


class SupervisorWorkerRow(TypedDict):
    id: str
    user: str | None
    state: str
    availableForOffers: bool
    loadRatio: float
    offers: int
    assignments: int
    queues: list[str]


def supervisor_rows(worker_ids: set[str] | None, now: datetime) -> list[SupervisorWorkerRow]:
    """Supervisor rows of the given workers (all workers for None), in id order. Workers that no
    longer exist are given as `{"id", "deleted": true}` rows by `workers_frame`."""
    qs = Worker.objects.select_related("user").prefetch_related("queue_links").order_by("pk")
    if worker_ids is not None:
        qs = qs.filter(pk__in=worker_ids)
    return [
        {
            "id": v.worker.pk,
            "user": v.worker.user.get_username() if v.worker.user else None,
            "state": v.state,
            "availableForOffers": v.worker.available_for_offers,
            "loadRatio": v.load_ratio,
            "offers": len(v.offers),
            "assignments": len(v.assignments),
            "queues": [link.queue_id for link in v.worker.queue_links.all()],
        }
        for v in worker_views(list(qs), now)
    ]


def workers_frame(worker_ids: set[str], now: datetime) -> dict[str, Any]:
    """Supervisor delta: the rows of the workers that changed (deleted ones marked)."""
    rows: list[Any] = list(supervisor_rows(worker_ids, now))
    present = {row["id"] for row in rows}
    rows += [{"id": w, "deleted": True} for w in sorted(worker_ids - present)]
    return {"type": "workers", "serverTime": _iso(now), "workers": rows}


def supervisor_frame(now: datetime) -> dict[str, Any]:
    """The supervisor's opening snapshot: every queue's status and every worker's row."""
    return {
        "type": "supervisor",
        "serverTime": _iso(now),
        "queues": [queue_status(q, now) for q in Queue.objects.order_by("-priority", "pk")],
        "workers": supervisor_rows(None, now),
    }


def waiting_frames(job_ids: set[str], now: datetime) -> dict[str, dict[str, Any]]:
    """Job id → `waiting` frame: status, place in line (1 = next) and time waited, and the job
    instance shown (`createdAt`, which the hub matches against each socket's waiting-room link).
    Positions of every queued job come from one ordered read per queue."""
    jobs = {j.pk: j for j in Job.objects.select_related("queue").filter(pk__in=job_ids)}
    lines: dict[str, list[str]] = {}
    for queue_id in {j.queue_id for j in jobs.values() if j.status == JobStatus.QUEUED and j.queue_id}:
        lines[queue_id] = list(Job.objects.queued_in(queue_id).in_queue_order().values_list("pk", flat=True))
    frames: dict[str, dict[str, Any]] = {}
    for job_id in job_ids:
        job = jobs.get(job_id)
        if job is None:
            frames[job_id] = {"type": "waiting", "status": "gone", "serverTime": _iso(now)}
            continue
        frame: dict[str, Any] = {
            "type": "waiting",
            "serverTime": _iso(now),
            "jobId": job.pk,
            "createdAt": _iso(job.created_at),
            "status": job.status,
            "queueId": job.queue_id,
            "queueName": (job.queue.name or job.queue.pk) if job.queue else None,
            "enqueuedAt": _iso(job.enqueued_at),
            "waitedSeconds": (now - job.enqueued_at).total_seconds() if job.enqueued_at else 0,
            "position": None,
            "queueLength": None,
        }
        line = lines.get(job.queue_id or "")
        if job.status == JobStatus.QUEUED and line and job.pk in line:
            position = line.index(job.pk) + 1
            rate = assignments_per_minute(job.queue_id or "", now)
            frame.update(position=position, queueLength=len(line),
                         estimatedWaitMinutes=estimated_wait_minutes(position, rate))
        frames[job_id] = frame
    return frames
