"""Customers waiting in line (seed 002 Q11, Q12): waiting-room links, joining and leaving.

A waiting-room link is a signed, expiring token (django.core.signing) naming one job *instance*:
the job id and the job's creation time. Whoever holds it may watch that job's position and
cancel it, and nothing else; a job deleted and created again under the same id is another
instance, which the old link does not open.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.contrib.auth.models import User
from django.core import signing
from django.db import transaction

from routing.clock import clock
from routing.errors import Conflict, NotFound, RouterError
from routing.models import CANCELLABLE_STATUSES, Job, JobStatus
from routing.patches import JobPatch, label_patch
from routing.services.jobs import job_cancel, job_upsert
from routing.validation import format_datetime

WAITING_ROOM_SALT = "routing.waiting-room"
# Tag that marks a job as created by a logged-in customer through the self-service page.
CUSTOMER_TAG = "customerUserId"


class InvalidLink(RouterError):
    status = 403
    code = "InvalidLink"


@dataclass(frozen=True)
class WaitingRoomLink:
    path: str
    token: str
    expires_at: datetime


@dataclass(frozen=True)
class WaitingRoomTicket:
    """What a valid waiting-room link grants: one job id and the instance of that job (its
    `created_at`, RFC 3339 as `routing.validation.format_datetime` writes it)."""

    job_id: str
    instance: str


def job_instance(job: Job) -> str:
    """The instance stamp of a job row: its creation time, which a re-created job does not share."""
    return format_datetime(job.created_at)


def waiting_room_link(*, job_id: str, now: datetime | None = None) -> WaitingRoomLink:
    """A signed link to the waiting room of a job (extension `POST /routing/jobs/{id}:waitingRoomLink`),
    valid for JOBROUTER_WAITING_ROOM_TTL_SECONDS and only for this instance of the job.
    NotFound (404) for an unknown job."""
    now = clock(now)
    job = Job.objects.filter(pk=job_id).first()
    if job is None:
        raise NotFound(f"Job {job_id!r} was not found.")
    token = signing.dumps({"job": job_id, "at": job_instance(job)}, salt=WAITING_ROOM_SALT, compress=True)
    ttl = timedelta(seconds=settings.JOBROUTER_WAITING_ROOM_TTL_SECONDS)
    return WaitingRoomLink(path=f"/wait/{token}/", token=token, expires_at=now + ttl)


def job_for_link(token: str) -> WaitingRoomTicket:
    """The job instance a waiting-room token names. InvalidLink (403) when the token is forged
    or expired, or its job no longer exists in that instance (deleted, or deleted and created
    again under the same id). Reads the job row."""
    try:
        data = signing.loads(token, salt=WAITING_ROOM_SALT, max_age=int(settings.JOBROUTER_WAITING_ROOM_TTL_SECONDS))
    except signing.BadSignature as exc:
        raise InvalidLink("This waiting-room link is not valid or has expired.") from exc
    if not isinstance(data, dict) or not isinstance(data.get("job"), str) or not isinstance(data.get("at"), str):
        raise InvalidLink("This waiting-room link is not valid or has expired.")
    ticket = WaitingRoomTicket(job_id=data["job"], instance=data["at"])
    if not _is_current(ticket):
        raise InvalidLink("The place in line this link was made for no longer exists.")
    return ticket


def _is_current(ticket: WaitingRoomTicket, *, lock: bool = False) -> bool:
    rows = Job.objects.select_for_update() if lock else Job.objects
    job = rows.filter(pk=ticket.job_id).only("created_at").first()
    return job is not None and job_instance(job) == ticket.instance


# A customer still in line: a job that can be cancelled and has not failed.
CUSTOMER_WAITING_STATUSES = CANCELLABLE_STATUSES - {JobStatus.CLASSIFICATION_FAILED, JobStatus.SCHEDULE_FAILED}


def customer_waiting_job(user: User) -> Job | None:
    return (
        Job.objects.filter(**{f"tags__{CUSTOMER_TAG}": str(user.pk)}, status__in=CUSTOMER_WAITING_STATUSES)
        .order_by("-created_at")
        .first()
    )


def customer_join_queue(
    *, user: User, queue_id: str, channel_id: str, data: dict[str, Any] | None = None, now: datetime | None = None
) -> Job:
    """A logged-in customer joins a queue (seed 002 Q11, `startQueuing2`): a job in that queue
    with the extra data as labels. One queue at a time: Conflict (409) while the customer already
    waits somewhere. InvalidRequest (400) for bad data; the job answers as any new job."""
    now = clock(now)
    labels = {k: val for k, val in label_patch(data or {}, "data").items() if val is not None}
    with transaction.atomic():
        # The user row lock serialises two joins by the same customer (two tabs, a double click).
        User.objects.select_for_update().filter(pk=user.pk).first()
        if customer_waiting_job(user) is not None:
            raise Conflict("You are already waiting in a queue; leave it before joining another.")
        job, _ = job_upsert(
            job_id=f"customer-{user.pk}-{uuid.uuid4().hex[:12]}",
            patch=JobPatch(
                queue_id=queue_id, channel_id=channel_id, labels=labels,
                channel_reference=user.get_username(), tags={CUSTOMER_TAG: str(user.pk)},
            ),
            now=now,
        )
    return job


def customer_leave_queue(*, ticket: WaitingRoomTicket, now: datetime | None = None) -> Job:
    """The customer leaves the line (seed 002 Q11, `stopQueuing`): the job the ticket names is
    cancelled. NotFound (404) when that job instance is gone (a job re-created under its id is
    not touched); Conflict (409) once an agent has it."""
    with transaction.atomic():
        # The job lock keeps the instance checked here the one that is cancelled.
        if not _is_current(ticket, lock=True):
            raise NotFound("Your place in line no longer exists.")
        job = Job.objects.get(pk=ticket.job_id)
        if job.status not in CANCELLABLE_STATUSES:
            raise Conflict("An agent is already serving you.")
        return job_cancel(job_id=job.pk, note="The customer left the queue.", disposition_code="CustomerLeft", now=now)
