"""Jobs: upsert, queueing and the assignment lifecycle (ACS 2023-11-01 RouterJob, §4.1).

Status flow handled here: created → queued → assigned → completed → closed; cancel from any
waiting status; unassign back to queued (or waitingForActivation with suspendMatching); delete in
a terminal status. Offers are in `routing.services.offers`, matching in `.matching`.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from django.db import transaction
from django.db.models import Q

from routing import validation as v
from routing.engine.selectors import selector_is_active
from routing.errors import Conflict, InvalidRequest, NotFound
from routing.models import (
    DELETABLE_JOB_STATUSES,
    Assignment,
    ClassificationPolicy,
    Job,
    JobStatus,
    Queue,
    RouterTimer,
    TimerKind,
    Worker,
)
from routing.services.common import Precondition, after_commit, clock, locked_get, parse_uuid, upsert
from routing.services.matching import match_job, match_worker, revoke_offers
from routing.services.notify import notify_changed

MAX_UNASSIGNMENTS = 3

# Statuses in which a job waits for a worker and can simply be cancelled.
CANCELLABLE_STATUSES = frozenset(
    {
        JobStatus.CREATED,
        JobStatus.PENDING_CLASSIFICATION,
        JobStatus.QUEUED,
        JobStatus.PENDING_SCHEDULE,
        JobStatus.SCHEDULED,
        JobStatus.WAITING_FOR_ACTIVATION,
        JobStatus.CLASSIFICATION_FAILED,
        JobStatus.SCHEDULE_FAILED,
    }
)
# Statuses in which routing-relevant fields can change the job's place or its offers.
WAITING_STATUSES = frozenset({JobStatus.CREATED, JobStatus.QUEUED, JobStatus.PENDING_CLASSIFICATION})


def stamp_selectors(selectors: list[dict], now: datetime) -> list[dict]:
    """Give each selector with `expiresAfterSeconds` its `expiresAt` (attach time + seconds)."""
    stamped = []
    for selector in selectors:
        selector = dict(selector)
        seconds = selector.get("expiresAfterSeconds")
        if seconds is not None and "expiresAt" not in selector:
            selector["expiresAt"] = v.format_datetime(now + timedelta(seconds=seconds))
        stamped.append(selector)
    return stamped


def refresh_expedite(job: Job, now: datetime) -> None:
    """A job is expedited while any of its active selectors asks for it (ACS §4.6)."""
    job.expedite = any(
        s.get("expedite") and selector_is_active(s, now)
        for s in (*job.requested_worker_selectors, *job.attached_worker_selectors)
    )


def _arm_selector_expiry(job: Job, selectors: list[dict]) -> None:
    """A stored timer per distinct expiresAt, so the pool widens on time (ACS §4.6)."""
    due_times = {s["expiresAt"] for s in selectors if s.get("expiresAt")}
    for due in due_times:
        RouterTimer.objects.create(kind=TimerKind.SELECTOR_EXPIRY, target_id=job.pk, due_at=v.optional_datetime(due, "expiresAt"))


# Statuses from which a change of labels or policy sends a job back through classification.
RECLASSIFIABLE_STATUSES = frozenset(
    {JobStatus.CREATED, JobStatus.QUEUED, JobStatus.PENDING_CLASSIFICATION, JobStatus.CLASSIFICATION_FAILED}
)
# Statuses a PATCH to matchingMode queueAndMatch activates.
ACTIVATABLE_STATUSES = frozenset({JobStatus.WAITING_FOR_ACTIVATION, JobStatus.SCHEDULED, JobStatus.PENDING_SCHEDULE})


def job_upsert(
    *, job_id: str, patch: dict[str, Any], precondition: Precondition | None = None, now: datetime | None = None
) -> tuple[Job, bool]:
    """Create or merge-patch a RouterJob; returns (job, created) as of the commit.

    `patch` is the 2023-11-01 wire shape: channelReference, channelId, queueId,
    classificationPolicyId, priority (int), requestedWorkerSelectors (replaces), labels and tags
    (merged per key), notes (replaces), matchingMode, dispositionCode. A new job needs channelId
    and a queueId or classificationPolicyId, and answers (ACS §4.1):
    `created` (queued right after commit), `pendingClassification` (classified after commit),
    `pendingSchedule` (scheduleAndSuspend) or `waitingForActivation` (suspend).
    On an existing job: new labels or policy send a classified job back to classification;
    matchingMode queueAndMatch activates a waiting or scheduled job, suspend stops matching;
    a new queue, channel or selectors revoke open offers and match again.
    Raises InvalidRequest (400), PreconditionFailed (412).
    """
    from routing.services.classification import request_classification

    now = clock(now)

    def apply(job: Job, created: bool) -> None:
        reroute = False
        reclassify = False
        old_queue = job.queue_id
        old_mode = (job.matching_mode or {}).get("kind")
        if "channelReference" in patch:
            job.channel_reference = v.optional_string(patch["channelReference"], "channelReference")
        if "channelId" in patch:
            channel_id = v.optional_string(patch["channelId"], "channelId")
            reroute |= channel_id != job.channel_id
            job.channel_id = channel_id
        if "queueId" in patch:
            queue_id = v.optional_string(patch["queueId"], "queueId")
            if queue_id is not None and not Queue.objects.filter(pk=queue_id).exists():
                raise InvalidRequest(f"queueId: queue {queue_id!r} does not exist.", target="queueId")
            reroute |= queue_id != job.queue_id
            job.queue_id = queue_id
        if "classificationPolicyId" in patch:
            policy_id = v.optional_string(patch["classificationPolicyId"], "classificationPolicyId")
            if policy_id is not None and not ClassificationPolicy.objects.filter(pk=policy_id).exists():
                raise InvalidRequest(
                    f"classificationPolicyId: classification policy {policy_id!r} does not exist.",
                    target="classificationPolicyId",
                )
            reclassify |= policy_id != job.classification_policy_id
            job.classification_policy_id = policy_id
        if "priority" in patch and patch["priority"] is not None:
            job.priority = v.optional_int(patch["priority"], "priority")
        new_selectors: list[dict] = []
        if "requestedWorkerSelectors" in patch:
            new_selectors = stamp_selectors(
                v.worker_selectors(patch["requestedWorkerSelectors"] or [], "requestedWorkerSelectors"), now
            )
            job.requested_worker_selectors = new_selectors
            reroute = True
        if "labels" in patch and patch["labels"] is not None:
            labels = v.merge_label_map(job.labels or {}, patch["labels"], "labels")
            reclassify |= labels != job.labels
            job.labels = labels
        if "tags" in patch and patch["tags"] is not None:
            job.tags = v.merge_label_map(job.tags or {}, patch["tags"], "tags")
        if "notes" in patch:
            job.notes = v.notes(patch["notes"] or [], "notes", now)
        if "dispositionCode" in patch:
            job.disposition_code = v.optional_string(patch["dispositionCode"], "dispositionCode")
        if "matchingMode" in patch and patch["matchingMode"] is not None:
            job.matching_mode = v.matching_mode(v.merge_polymorphic(job.matching_mode, patch["matchingMode"]))
        if not job.matching_mode:
            job.matching_mode = {"kind": "queueAndMatch"}
        mode = job.matching_mode["kind"]
        refresh_expedite(job, now)

        def after_save() -> None:
            if new_selectors:
                _arm_selector_expiry(job, new_selectors)
            notify_changed(jobs=[job.pk], queues=[old_queue] if old_queue and old_queue != job.queue_id else [])

        if created:
            if not job.channel_id:
                raise InvalidRequest("channelId is required.", target="channelId")
            if not job.queue_id and not job.classification_policy_id:
                raise InvalidRequest("A job needs a queueId or a classificationPolicyId.", target="queueId")
            if mode == "scheduleAndSuspend":
                job.status = JobStatus.PENDING_SCHEDULE
                after_commit(job_schedule, job_id=job.id)
            elif mode == "suspend":
                job.status = JobStatus.WAITING_FOR_ACTIVATION
            elif job.classification_policy_id:
                request_classification(job, now)
            else:
                job.status = JobStatus.CREATED
                after_commit(job_enqueue, job_id=job.id)
            return after_save

        if "matchingMode" in patch and (mode != old_mode or job.status in ACTIVATABLE_STATUSES):
            if mode == "queueAndMatch" and job.status in ACTIVATABLE_STATUSES:
                _activate(job, now, request_classification)
                return after_save
            if mode == "suspend" and job.status in WAITING_STATUSES:
                revoke_offers(Q(job_id=job.pk), now)
                job.status = JobStatus.WAITING_FOR_ACTIVATION
                return after_save
            if mode == "scheduleAndSuspend" and job.status in (*WAITING_STATUSES, JobStatus.WAITING_FOR_ACTIVATION, JobStatus.SCHEDULED):
                revoke_offers(Q(job_id=job.pk), now)
                job.status = JobStatus.PENDING_SCHEDULE
                after_commit(job_schedule, job_id=job.id)
                return after_save
        if reclassify and job.classification_policy_id and job.status in RECLASSIFIABLE_STATUSES:
            request_classification(job, now)
        elif job.status == JobStatus.QUEUED and reroute:
            revoke_offers(Q(job_id=job.pk), now)
            if job.queue_id != old_queue:
                after_commit(_new_queue_visit, job_id=job.id)
            after_commit(match_job, job_id=job.id)
        elif job.status == JobStatus.QUEUED and "priority" in patch:
            after_commit(match_job, job_id=job.id)
        return after_save

    return upsert(Job, pk=job_id, now=now, precondition=precondition, apply=apply)


def _activate(job: Job, now: datetime, request_classification) -> None:
    """A waiting or scheduled job is released for matching (PATCH matchingMode queueAndMatch)."""
    if job.classification_policy_id:
        request_classification(job, now)
    else:
        job.status = JobStatus.CREATED
        after_commit(job_enqueue, job_id=job.pk)


def enter_queue(job: Job, now: datetime, *, same_queue: bool = False) -> None:
    """Put a locked job in its queue: status queued and matching after commit. The caller saves.

    A job arriving in a queue starts a new visit: enqueuedAt = now and the queue's exception
    rules are armed (queueLength checked after commit, waitTime as stored timers). A job put back
    in the queue it was already visiting (`same_queue`: reclassified or manually reclassified
    without a queue change) continues that visit: it keeps its place and its rules are not armed
    again, so a rule whose action keeps the job in its queue fires once, not in a loop.
    """
    from routing.services.exceptions import arm_exception_rules

    job.status = JobStatus.QUEUED
    if not (same_queue and job.enqueued_at and job.queue_visit):
        job.enqueued_at = now
        job.queue_visit += 1
        arm_exception_rules(job, now)
    notify_changed(jobs=[job.pk])
    after_commit(match_job, job_id=job.pk)


def _new_queue_visit(*, job_id: str, now: datetime | None = None) -> None:
    """A queued job moved to another queue by PATCH: start a visit there."""
    now = clock(now)
    with transaction.atomic():
        job = Job.objects.select_for_update().filter(pk=job_id, status=JobStatus.QUEUED).first()
        if job is None:
            return
        enter_queue(job, now)
        job.touch(now)
        job.save()


def job_enqueue(*, job_id: str, now: datetime | None = None) -> bool:
    """Move a `created` job to `queued` (sets enqueuedAt) and match it; False if it was not
    `created` any more (compare-and-set: a cancel in between wins)."""
    now = clock(now)
    with transaction.atomic():
        job = Job.objects.select_for_update().filter(pk=job_id, status=JobStatus.CREATED).first()
        if job is None:
            return False
        enter_queue(job, now)
        job.touch(now)
        job.save()
    return True


def job_schedule(*, job_id: str, now: datetime | None = None) -> bool:
    """pendingSchedule → scheduled: store `scheduledAt` and a timer for it (ACS §4.9)."""
    now = clock(now)
    with transaction.atomic():
        job = Job.objects.select_for_update().filter(pk=job_id, status=JobStatus.PENDING_SCHEDULE).first()
        if job is None:
            return False
        schedule_at = v.optional_datetime((job.matching_mode or {}).get("scheduleAt"), "matchingMode.scheduleAt")
        job.status = JobStatus.SCHEDULED
        notify_changed(jobs=[job.pk])
        job.scheduled_at = schedule_at
        job.touch(now)
        job.save()
        RouterTimer.objects.create(kind=TimerKind.JOB_SCHEDULE, target_id=job.pk, due_at=schedule_at)
    return True


def job_schedule_due(*, job_id: str, now: datetime | None = None) -> bool:
    """Timer: a scheduled job reached scheduleAt and now waits for activation (ACS §4.9)."""
    now = clock(now)
    with transaction.atomic():
        job = Job.objects.select_for_update().filter(pk=job_id, status=JobStatus.SCHEDULED).first()
        if job is None or (job.scheduled_at and job.scheduled_at > now):
            return False
        job.status = JobStatus.WAITING_FOR_ACTIVATION
        notify_changed(jobs=[job.pk])
        job.touch(now)
        job.save()
    return True


def job_selectors_expire(*, job_id: str, now: datetime | None = None) -> bool:
    """Timer: worker selectors reached expiresAt. They are marked expired, stop constraining
    matching and expediting, and the job is matched again against the wider pool (ACS §4.6)."""
    now = clock(now)
    with transaction.atomic():
        job = Job.objects.select_for_update().filter(pk=job_id).first()
        if job is None:
            return False

        def expire(selectors: list[dict]) -> tuple[list[dict], bool]:
            changed = False
            out = []
            for s in selectors:
                if s.get("status", "active") == "active" and not selector_is_active(s, now):
                    s = {**s, "status": "expired"}
                    changed = True
                out.append(s)
            return out, changed

        job.requested_worker_selectors, changed_requested = expire(job.requested_worker_selectors)
        job.attached_worker_selectors, changed_attached = expire(job.attached_worker_selectors)
        if not (changed_requested or changed_attached):
            return False
        refresh_expedite(job, now)
        job.touch(now)
        job.save()
        notify_changed(jobs=[job.pk])
        if job.status == JobStatus.QUEUED:
            after_commit(match_job, job_id=job.pk)
    return True


def _append_note(job: Job, message: str | None, now: datetime) -> None:
    if message:
        job.notes = [*job.notes, {"message": message, "addedAt": v.format_datetime(now)}]


def job_cancel(
    *, job_id: str, note: str | None = None, disposition_code: str | None = None, now: datetime | None = None
) -> Job:
    """Cancel a job that is not yet assigned (ACS `:cancel`). dispositionCode defaults to
    "Cancelled"; the note is appended. Open offers are revoked. NotFound (404); Conflict (409)
    when the job is assigned, completed or already final."""
    now = clock(now)
    with transaction.atomic():
        job = locked_get(Job, job_id, what="Job")
        if job.status not in CANCELLABLE_STATUSES:
            raise Conflict(f"Job {job_id!r} cannot be cancelled in status {job.status}.")
        cancel_locked(job, note=note, disposition_code=disposition_code, now=now)
    return job


def cancel_locked(job: Job, *, note: str | None, disposition_code: str | None, now: datetime) -> None:
    """Cancel a job whose row the caller holds locked (also the exception `cancel` action)."""
    revoke_offers(Q(job_id=job.pk), now)
    notify_changed(jobs=[job.pk])
    job.status = JobStatus.CANCELLED
    job.disposition_code = disposition_code or "Cancelled"
    _append_note(job, note, now)
    job.touch(now)
    job.save()


def _assignment_for(job: Job, assignment_id: str, worker_id: str | None = None) -> Assignment:
    """The job's assignment, locked. With `worker_id` (the desk acting for an agent), an
    assignment of another worker is reported as not found, never acted on."""
    assignment = (
        Assignment.objects.select_for_update()
        .filter(pk=parse_uuid(assignment_id), job_id=job.pk, unassigned_at__isnull=True)
        .first()
    )
    if assignment is None or (worker_id is not None and assignment.worker_id != worker_id):
        raise NotFound(f"Assignment {assignment_id!r} of job {job.pk!r} was not found.")
    return assignment


def job_complete(
    *, job_id: str, assignment_id: str, note: str | None = None, worker_id: str | None = None,
    now: datetime | None = None,
) -> Job:
    """Complete an assigned job (ACS `:complete`): the worker starts wrap-up; capacity stays
    held until close. NotFound (404) for an unknown job or assignment; Conflict (409) unless the
    job is `assigned`."""
    now = clock(now)
    with transaction.atomic():
        job = locked_get(Job, job_id, what="Job")
        assignment = _assignment_for(job, assignment_id, worker_id)
        if job.status != JobStatus.ASSIGNED or assignment.completed_at is not None:
            raise Conflict(f"Job {job_id!r} cannot be completed in status {job.status}.")
        assignment.completed_at = now
        assignment.save(update_fields=["completed_at"])
        job.status = JobStatus.COMPLETED
        notify_changed(jobs=[job.pk], workers=[assignment.worker_id])
        _append_note(job, note, now)
        job.touch(now)
        job.save()
        Worker.objects.filter(pk=assignment.worker_id).update(etag=job.etag)
    return job


def job_close(
    *,
    job_id: str,
    assignment_id: str,
    disposition_code: str | None = None,
    close_at: datetime | None = None,
    note: str | None = None,
    worker_id: str | None = None,
    now: datetime | None = None,
) -> Job:
    """Close a completed job (ACS `:close`), releasing the worker's capacity.

    With `close_at` in the future the close is stored and carried out by the timer loop at that
    time (status, closedAt, capacity). dispositionCode defaults to "Closed". NotFound (404);
    Conflict (409) unless the job is `completed` and not already closing.
    """
    now = clock(now)
    with transaction.atomic():
        job = locked_get(Job, job_id, what="Job")
        assignment = _assignment_for(job, assignment_id, worker_id)
        if job.status != JobStatus.COMPLETED or assignment.closed_at is not None or assignment.close_at is not None:
            raise Conflict(f"Job {job_id!r} cannot be closed in status {job.status}.")
        _append_note(job, note, now)
        job.disposition_code = disposition_code or job.disposition_code or "Closed"
        if close_at is not None and close_at > now:
            assignment.close_at = close_at
            assignment.save(update_fields=["close_at"])
            RouterTimer.objects.create(kind=TimerKind.ASSIGNMENT_CLOSE, target_id=str(assignment.pk), due_at=close_at)
            job.touch(now)
            job.save()
            return job
        _close_now(job, assignment, now)
    return job


def _close_now(job: Job, assignment: Assignment, now: datetime) -> None:
    assignment.closed_at = now
    assignment.save(update_fields=["closed_at"])
    job.status = JobStatus.CLOSED
    job.touch(now)
    job.save()
    notify_changed(jobs=[job.pk], workers=[assignment.worker_id])
    _worker_released(assignment.worker_id, now)


def _worker_released(worker_id: str, now: datetime) -> None:
    """Capacity came back to a worker: mark it idle if nothing is left, then look for work."""
    from routing.services.matching import LIVE_ASSIGNMENT_Q

    if not Assignment.objects.filter(LIVE_ASSIGNMENT_Q, worker_id=worker_id).exists():
        Worker.objects.filter(pk=worker_id).update(idle_since=now)
    after_commit(match_worker, worker_id=worker_id)


def assignment_close_due(*, assignment_id: str, now: datetime | None = None) -> bool:
    """Timer: carry out a close requested for later (CloseJobOptions.closeAt). Returns False when
    there was nothing to do (already closed, or the job was deleted)."""
    now = clock(now)
    with transaction.atomic():
        assignment = (
            Assignment.objects.select_for_update()
            .filter(pk=assignment_id, closed_at__isnull=True, close_at__isnull=False)
            .first()
        )
        if assignment is None:
            return False
        job = locked_get(Job, assignment.job_id, what="Job")
        _close_now(job, assignment, now)
    return True


def job_unassign(
    *, job_id: str, assignment_id: str, suspend_matching: bool = False, now: datetime | None = None
) -> Job:
    """Take an assigned job back from its worker (ACS `:unassign`), at most 3 times per job.

    The job returns to `queued` with its original enqueue time and is matched again (the same
    worker may be offered it again), or waits in `waitingForActivation` with suspendMatching.
    Returns the job (its `unassignment_count` is the UnassignJobResult). NotFound (404);
    Conflict (409) unless `assigned`, or after 3 unassignments.
    """
    now = clock(now)
    with transaction.atomic():
        job = locked_get(Job, job_id, what="Job")
        assignment = _assignment_for(job, assignment_id)
        if job.status != JobStatus.ASSIGNED:
            raise Conflict(f"Job {job_id!r} cannot be unassigned in status {job.status}.")
        if job.unassignment_count >= MAX_UNASSIGNMENTS:
            raise Conflict(f"Job {job_id!r} was already unassigned {MAX_UNASSIGNMENTS} times.")
        assignment.unassigned_at = now
        assignment.save(update_fields=["unassigned_at"])
        job.unassignment_count += 1
        notify_changed(jobs=[job.pk], workers=[assignment.worker_id])
        job.status = JobStatus.WAITING_FOR_ACTIVATION if suspend_matching else JobStatus.QUEUED
        if suspend_matching:
            job.matching_mode = {"kind": "suspend"}
        job.touch(now)
        job.save()
        _worker_released(assignment.worker_id, now)
        if not suspend_matching:
            after_commit(match_job, job_id=job.pk)
    return job


def job_delete(*, job_id: str) -> None:
    """Delete a job in a terminal status (closed, cancelled, classificationFailed,
    scheduleFailed). NotFound (404); Conflict (409) for any other status."""
    with transaction.atomic():
        job = locked_get(Job, job_id, what="Job")
        if job.status not in DELETABLE_JOB_STATUSES:
            raise Conflict(f"Job {job_id!r} must be closed or cancelled before it is deleted (status {job.status}).")
        job.delete()


def job_reclassify(*, job_id: str, now: datetime | None = None) -> Job:
    """Classify a job again with its current labels and policy (ACS `:reclassify`): status
    pendingClassification, then queued or classificationFailed. A job without a classification
    policy, or past the waiting stage, is left as it is. NotFound (404)."""
    from routing.services.classification import request_classification

    now = clock(now)
    with transaction.atomic():
        job = locked_get(Job, job_id, what="Job")
        if job.classification_policy_id and job.status in RECLASSIFIABLE_STATUSES:
            request_classification(job, now)
            job.touch(now)
            job.save()
    return job
