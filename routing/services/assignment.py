"""Assignment and the offers around it: assigning a locked job, deregistering a worker,
releasing capacity (ACS Job Router 2023-11-01 §4.2).

Shared by offer acceptance, manual request-next, offer expiry, worker updates and closes; it
sits below all of them and above `matching` (offer issue and revoke).

**Lock order.** Every path that locks several rows takes them in one order:
job → assignment → offer → worker (several workers in id order). `offer_accept` and
`offer_expire` lock the job, then the offer, then the worker; `match_job` locks the job, then
each worker it offers to; `job_close` locks the job, then its assignment. Paths that start from
a worker (registration changes, deletion, stop serving) lock the worker, then its offers, and
never a job afterwards: the jobs they free are matched again after commit, in their own
transactions.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from django.db.models import Q

from routing.models import Assignment, Job, JobStatus, TimerKind, Worker, touched
from routing.services import events
from routing.services.common import owe
from routing.services.matching import revoke_offers
from routing.services.notify import notify_changed


@dataclass(frozen=True)
class AcceptResult:
    """ACS AcceptJobOfferResult: `assignmentId`, `jobId`, `workerId`."""

    assignment_id: str
    job_id: str
    worker_id: str


def assign_locked(job: Job, *, worker_id: str, channel_id: str, cost: int, now: datetime) -> AcceptResult:
    """Assign a locked, queued job to a worker: the assignment row, status `assigned`, the job's
    remaining open offers revoked. Used by offer acceptance and by manual request-next."""
    assignment = Assignment.objects.create(
        job=job, worker_id=worker_id, channel_id=channel_id, capacity_cost=cost, assigned_at=now
    )
    job.status = JobStatus.ASSIGNED
    job.touch(now)
    job.save(update_fields=["status", "etag", "updated_at"])
    revoke_offers(Q(job_id=job.pk), now)
    Worker.objects.filter(pk=worker_id).update(**touched(now), idle_since=None)
    notify_changed(workers=[worker_id], jobs=[job.pk], now=now)
    return AcceptResult(assignment_id=str(assignment.pk), job_id=job.pk, worker_id=worker_id)


def rematch_after_revoke(offers: Q, now: datetime) -> None:
    """Revoke the open offers selected by `offers`; their jobs go on to other workers after commit."""
    for _offer_id, job_id in revoke_offers(offers, now):
        owe(TimerKind.MATCH_JOB, job_id, now)


def deregister_locked(worker: Worker, now: datetime) -> None:
    """Deregister a worker whose row the caller holds locked: availableForOffers false (saved
    when it changes) and its open offers revoked."""
    if worker.available_for_offers:
        worker.available_for_offers = False
        worker.touch(now)
        worker.save(update_fields=["available_for_offers", "etag", "updated_at"])
        events.worker_event("RouterWorkerDeregistered", worker, now)
    rematch_after_revoke(Q(worker_id=worker.pk), now)


def worker_released(worker_id: str, now: datetime) -> None:
    """Capacity came back to a worker: mark it idle if nothing is left, then look for work."""
    if not Assignment.objects.live().filter(worker_id=worker_id).exists():
        Worker.objects.filter(pk=worker_id).update(idle_since=now)
    owe(TimerKind.MATCH_WORKER, worker_id, now)


def close_locked(job: Job, assignment: Assignment, now: datetime) -> None:
    """Close a locked, completed job's assignment now: status `closed`, capacity released."""
    assignment.closed_at = now
    assignment.save(update_fields=["closed_at"])
    job.status = JobStatus.CLOSED
    job.touch(now)
    job.save()
    notify_changed(jobs=[job.pk], workers=[assignment.worker_id], now=now)
    events.job_assignment_event("RouterJobClosed", job, assignment, now)
    worker_released(assignment.worker_id, now)
