"""Test data built through the domain functions (the same code the API calls)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from routing import clock
from routing.models import Job, JobStatus
from routing.patches import DistributionPolicyPatch, JobPatch, QueuePatch, WorkerPatch
from routing.services.jobs import job_enqueue, job_upsert
from routing.services.policies import distribution_policy_upsert, queue_upsert
from routing.services.workers import worker_upsert


def queue_with_policy(
    queue_id: str = "q1", *, mode: str = "longestIdle", max_offers: int = 1, expires: float | None = 60,
    now: datetime | None = None,
) -> None:
    distribution_policy_upsert(
        policy_id=f"{queue_id}-policy",
        patch=DistributionPolicyPatch.from_wire(
            {"offerExpiresAfterSeconds": expires, "mode": {"kind": mode, "maxConcurrentOffers": max_offers}}
        ),
        now=now,
    )
    queue_upsert(queue_id=queue_id, patch=QueuePatch(distribution_policy_id=f"{queue_id}-policy"), now=now)


def worker(worker_id: str, *, queues=("q1",), capacity: int = 1, channel: str = "voice", available: bool = True,
           labels: dict[str, Any] | None = None, now: datetime | None = None):
    return worker_upsert(
        worker_id=worker_id,
        patch=WorkerPatch.from_wire({
            "capacity": capacity,
            "queues": list(queues),
            "channels": [{"channelId": channel, "capacityCostPerJob": 1}],
            "availableForOffers": available,
            "labels": labels or {},
        }),
        now=now,
    )[0]


def queued_job(job_id: str, *, queue: str = "q1", channel: str = "voice", priority: int = 1, **extra: Any) -> Job:
    """A job queued now (job_upsert queues it after commit, reading the clock itself)."""
    job, _ = job_upsert(job_id=job_id, patch=JobPatch.from_wire(
        {"queueId": queue, "channelId": channel, "priority": priority, **extra}, now=clock.now()
    ))
    # Outside a committing transaction the after-commit step has not run: queue it here.
    job_enqueue(job_id=job_id)
    job.refresh_from_db()
    assert job.status in (JobStatus.QUEUED, JobStatus.ASSIGNED)
    return job
