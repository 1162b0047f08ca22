"""Snapshots pushed to live pages: the full current state, so a desk that reconnects or missed
a message is made whole by the next one (typed payloads, built in one place)."""

from __future__ import annotations

from datetime import datetime
from typing import Any, TypedDict

from routing.clock import clock
from routing.models import Job, JobStatus, Queue, Worker
from routing.queries import job_position, queue_statistics, worker_views
from routing.validation import format_datetime


class QueueStatus(TypedDict):
    id: str
    name: str
    priority: int
    length: int
    longestWaitSeconds: float | None
    servingWorkers: int
    availableWorkers: int
    assignedJobs: int


def _iso(value: datetime | None) -> str | None:
    return format_datetime(value) if value else None


def queue_status(queue: Queue, now: datetime) -> QueueStatus:
    stats = queue_statistics(queue.pk, now)
    longest = stats.longest_job_wait_time_minutes
    return {
        "id": queue.pk,
        "name": queue.name or queue.pk,
        "priority": queue.priority,
        "length": stats.length,
        "longestWaitSeconds": None if longest is None else round(longest * 60, 1),
        "servingWorkers": stats.serving_workers,
        "availableWorkers": stats.available_workers,
        "assignedJobs": stats.assigned_jobs,
    }


def _job_summary(job: Job, now: datetime) -> dict[str, Any]:
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


def desk_state(worker_id: str, now: datetime | None = None) -> dict[str, Any]:
    """Everything the agent desk shows for one worker (seed 002 Q8–Q10, Q13, Q14)."""
    now = clock(now)
    worker = Worker.objects.prefetch_related("channels", "queue_links").get(pk=worker_id)
    view = worker_views([worker], now)[0]
    links = list(worker.queue_links.all())
    queues = {q.pk: q for q in Queue.objects.filter(pk__in=[link.queue_id for link in links])}
    jobs = {
        j.pk: j
        for j in Job.objects.filter(pk__in=[o.job_id for o in view.offers] + [a.job_id for a in view.assignments])
    }
    offers = []
    for o in view.offers:
        job = jobs.get(o.job_id)
        if job is None:
            continue
        offers.append({**_job_summary(job, now), "offerId": str(o.pk), "offeredAt": _iso(o.offered_at),
                       "expiresAt": _iso(o.expires_at)})
    assignments = []
    for a in view.assignments:
        job = jobs.get(a.job_id)
        if job is None:
            continue
        waited = (a.assigned_at - job.enqueued_at).total_seconds() if job.enqueued_at else None
        assignments.append({**_job_summary(job, now), "assignmentId": str(a.pk), "assignedAt": _iso(a.assigned_at),
                            "completedAt": _iso(a.completed_at), "closeAt": _iso(a.close_at),
                            "waitedSeconds": waited})
    return {
        "type": "state",
        "serverTime": _iso(now),
        "worker": {
            "id": worker.pk,
            "state": view.state,
            "availableForOffers": worker.available_for_offers,
            "capacity": worker.capacity,
            "loadRatio": view.load_ratio,
            "channels": [{"channelId": c.channel_id, "capacityCostPerJob": c.capacity_cost_per_job}
                         for c in worker.channels.all()],
        },
        "queues": [
            {**queue_status(queues[link.queue_id], now), "myPriority": link.priority}
            for link in links if link.queue_id in queues
        ],
        "allQueues": [{"id": q.pk, "name": q.name or q.pk} for q in Queue.objects.order_by("pk")],
        "offers": offers,
        "assignments": assignments,
    }


def waiting_state(job_id: str, now: datetime | None = None) -> dict[str, Any]:
    """What a waiting customer sees (seed 002 Q12): position (1 = next) and seconds waited."""
    now = clock(now)
    job = Job.objects.select_related("queue").filter(pk=job_id).first()
    if job is None:
        return {"type": "waiting", "status": "gone", "serverTime": _iso(now)}
    data: dict[str, Any] = {
        "type": "waiting",
        "serverTime": _iso(now),
        "jobId": job.pk,
        "status": job.status,
        "queueId": job.queue_id,
        "queueName": (job.queue.name or job.queue.pk) if job.queue else None,
        "enqueuedAt": _iso(job.enqueued_at),
        "waitedSeconds": (now - job.enqueued_at).total_seconds() if job.enqueued_at else 0,
        "position": None,
        "queueLength": None,
    }
    if job.status == JobStatus.QUEUED:
        position = job_position(job.pk, now)
        data.update(position=position.position, queueLength=position.queue_length,
                    estimatedWaitMinutes=position.estimated_wait_time_minutes)
    return data


def supervisor_state(now: datetime | None = None) -> dict[str, Any]:
    """Every queue's status and every worker's state and load (the live supervisor view)."""
    now = clock(now)
    workers = list(Worker.objects.select_related("user").prefetch_related("queue_links").order_by("pk"))
    return {
        "type": "supervisor",
        "serverTime": _iso(now),
        "queues": [queue_status(q, now) for q in Queue.objects.order_by("-priority", "pk")],
        "workers": [
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
            for v in worker_views(workers, now)
        ],
    }
