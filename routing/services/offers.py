"""Offers: accept, decline and expiry (ACS 2023-11-01 §4.2). Lock order: job → offer → worker
(see `routing.services.assignment`)."""

from __future__ import annotations

from datetime import datetime

from django.db import transaction

from routing.clock import clock
from routing.errors import Conflict, NotFound
from routing.models import Job, JobDecline, JobStatus, Offer, OfferStatus, RouterTimer, TimerKind, Worker, touched
from routing.services import events
from routing.services.assignment import AcceptResult, assign_locked, deregister_locked
from routing.services.common import owe, parse_uuid, retry_on_deadlock
from routing.services.matching import match_job
from routing.services.notify import notify_changed


def _offer_not_found(worker_id: str, offer_id: str) -> NotFound:
    return NotFound(f"Offer not found. OfferId: {offer_id}, WorkerId: {worker_id}")


@retry_on_deadlock
def offer_accept(*, worker_id: str, offer_id: str, now: datetime | None = None) -> AcceptResult:
    """Accept an open offer: the job becomes `assigned` to the worker, its other offers are
    revoked (ACS `:accept`); returns the AcceptJobOfferResult.

    NotFound (404) when the worker has no such open offer (declined, revoked, or past its
    expiresAt: an expired offer is never accepted, even before the timer marks it); Conflict (409)
    when the job was meanwhile assigned to someone else or left the queue.
    """
    now = clock(now)
    oid = parse_uuid(offer_id)
    job_id = Offer.objects.filter(pk=oid, worker_id=worker_id).values_list("job_id", flat=True).first()
    if job_id is None:
        raise _offer_not_found(worker_id, offer_id)
    with transaction.atomic():
        # Lock order job → offer → worker: concurrent accepts of offers for one job queue up
        # here, and only the first finds the job still queued.
        job = Job.objects.select_for_update().filter(pk=job_id).first()
        if job is None:
            raise _offer_not_found(worker_id, offer_id)
        offer = Offer.objects.select_for_update().get(pk=oid)
        if not offer.is_open_at(now):
            if job.status == JobStatus.ASSIGNED:
                raise Conflict(f"Job {job_id!r} has already been accepted by another worker.")
            raise _offer_not_found(worker_id, offer_id)
        if job.status != JobStatus.QUEUED:
            raise Conflict(f"Job {job_id!r} is {job.status}; the offer can no longer be accepted.")
        # Compare-and-set guards against a revoke that does not take the job lock.
        if not Offer.objects.filter(pk=oid, status=OfferStatus.OPEN).update(status=OfferStatus.ACCEPTED, ended_at=now):
            raise _offer_not_found(worker_id, offer_id)
        result = assign_locked(job, worker_id=worker_id, channel_id=offer.channel_id, cost=offer.capacity_cost, now=now)
        events.offer_accepted(job, str(oid), worker_id, result.assignment_id, now)
        return result


@retry_on_deadlock
def offer_decline(
    *, worker_id: str, offer_id: str, retry_offer_at: datetime | None = None, now: datetime | None = None
) -> None:
    """Decline an open offer (ACS `:decline`). The job goes on to other workers and is not
    offered to this one again until `retry_offer_at` (never, without it, until the worker
    re-registers). NotFound (404) when there is no such open offer (e.g. already accepted)."""
    now = clock(now)
    oid = parse_uuid(offer_id)
    with transaction.atomic():
        offer = Offer.objects.select_for_update().filter(pk=oid, worker_id=worker_id).first()
        if offer is None or not offer.is_open_at(now):
            raise _offer_not_found(worker_id, offer_id)
        Offer.objects.filter(pk=oid, status=OfferStatus.OPEN).update(status=OfferStatus.DECLINED, ended_at=now)
        events.offer_ended("RouterWorkerOfferDeclined", offer.job_id, str(oid), worker_id, now)
        JobDecline.objects.update_or_create(job_id=offer.job_id, worker_id=worker_id, defaults={"retry_offer_at": retry_offer_at})
        if retry_offer_at is not None and retry_offer_at > now:
            RouterTimer.objects.create(kind=TimerKind.DECLINE_RETRY, target_id=offer.job_id, due_at=retry_offer_at)
        Worker.objects.filter(pk=worker_id).update(**touched(now))
        Job.objects.filter(pk=offer.job_id).update(**touched(now))
        notify_changed(workers=[worker_id], jobs=[offer.job_id], now=now)
        owe(TimerKind.MATCH_JOB, offer.job_id, now)
        owe(TimerKind.MATCH_WORKER, worker_id, now)


@retry_on_deadlock
def offer_expire(*, offer_id: str, now: datetime | None = None) -> bool:
    """Timer: an offer reached its expiresAt unanswered. It is marked expired and, as ACS
    documents, the worker is deregistered (availableForOffers false, other offers revoked) so an
    absent agent is not rung again and again; the job goes on to the next worker. Returns False
    when the offer was answered first (compare-and-set on its status)."""
    now = clock(now)
    oid = parse_uuid(offer_id)
    with transaction.atomic():
        offer = Offer.objects.filter(pk=oid).values("job_id", "worker_id").first()
        if offer is None:
            return False
        # Lock order job → offer → worker, as offer_accept takes them.
        Job.objects.select_for_update().filter(pk=offer["job_id"]).first()
        if not Offer.objects.filter(pk=oid, status=OfferStatus.OPEN, expires_at__lte=now).update(
            status=OfferStatus.EXPIRED, ended_at=now
        ):
            return False
        Job.objects.filter(pk=offer["job_id"]).update(**touched(now))
        events.offer_ended("RouterWorkerOfferExpired", offer["job_id"], str(oid), offer["worker_id"], now)
        worker = Worker.objects.select_for_update().filter(pk=offer["worker_id"]).first()
        if worker is not None:
            deregister_locked(worker, now)
        notify_changed(workers=[offer["worker_id"]], jobs=[offer["job_id"]], now=now)
        owe(TimerKind.MATCH_JOB, offer["job_id"], now)
    return True


def decline_retry_due(*, job_id: str, now: datetime | None = None) -> None:
    """Timer: a decline's retryOfferAt passed; the job may be offered to that worker again."""
    match_job(job_id=job_id, now=now)
