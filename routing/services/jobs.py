"""Jobs: upsert, queueing and the assignment lifecycle (ACS 2023-11-01 RouterJob, §4.1).

Status flow handled here: created → queued → assigned → completed → closed; cancel from any
waiting status; unassign back to queued (or waitingForActivation with suspendMatching); delete in
a terminal status. Entering queues and classification requests are in `.queueing`, offers in
`.offers`, matching in `.matching`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

from django.db import transaction
from django.db.models import Q

from routing import validation as v
from routing.clock import clock
from routing.engine.selectors import selector_is_active
from routing.errors import Conflict, InvalidRequest, NotFound
from routing.models import (
    CANCELLABLE_STATUSES,
    DELETABLE_JOB_STATUSES,
    Assignment,
    ClassificationPolicy,
    Job,
    JobStatus,
    Queue,
    RouterTimer,
    TimerKind,
    Worker,
    touched,
)
from routing.patches import UNSET, JobPatch, apply_labels, resolve_matching_mode
from routing.services import events
from routing.services.assignment import close_locked, worker_released
from routing.services.common import Precondition, locked_get, owe, parse_uuid, retry_on_deadlock, upsert
from routing.services.matching import revoke_offers
from routing.services.notify import notify_changed
from routing.services.queueing import (
    append_note,
    arm_selector_expiry,
    cancel_locked,
    enter_queue,
    refresh_expedite,
    request_classification,
    stamp_selectors,
)

MAX_UNASSIGNMENTS = 3

# Statuses in which routing-relevant fields can change the job's place or its offers.
WAITING_STATUSES = frozenset({JobStatus.CREATED, JobStatus.QUEUED, JobStatus.PENDING_CLASSIFICATION})
# Statuses from which a change of labels or policy sends a job back through classification.
RECLASSIFIABLE_STATUSES = frozenset(
    {JobStatus.CREATED, JobStatus.QUEUED, JobStatus.PENDING_CLASSIFICATION, JobStatus.CLASSIFICATION_FAILED}
)
# Statuses a PATCH to matchingMode queueAndMatch activates.
ACTIVATABLE_STATUSES = frozenset({JobStatus.WAITING_FOR_ACTIVATION, JobStatus.SCHEDULED, JobStatus.PENDING_SCHEDULE})
# Statuses from which matchingMode scheduleAndSuspend (re)schedules a job.
SCHEDULABLE_STATUSES = frozenset({*WAITING_STATUSES, JobStatus.WAITING_FOR_ACTIVATION, JobStatus.SCHEDULED})


@dataclass
class JobChange:
    """What a patch changed that decides the job's next step."""

    old_queue: str | None
    old_mode: str | None
    reroute: bool = False
    reclassify: bool = False
    new_selectors: list[dict] = field(default_factory=list)
    # The patch suspended the job (RouterJobWaitingForActivation is owed).
    suspended: bool = False


def _existing_queue(queue_id: str | None) -> str | None:
    if queue_id is not None and not Queue.objects.filter(pk=queue_id).exists():
        raise InvalidRequest(f"queueId: queue {queue_id!r} does not exist.", target="queueId")
    return queue_id


def _existing_policy(policy_id: str | None) -> str | None:
    if policy_id is not None and not ClassificationPolicy.objects.filter(pk=policy_id).exists():
        raise InvalidRequest(
            f"classificationPolicyId: classification policy {policy_id!r} does not exist.",
            target="classificationPolicyId",
        )
    return policy_id


def _apply_routing_fields(job: Job, patch: JobPatch, change: JobChange, now: datetime) -> None:
    """Channel, queue, classification policy, priority and requested selectors."""
    if patch.channel_id is not UNSET:
        change.reroute |= patch.channel_id != job.channel_id
        job.channel_id = patch.channel_id
    if patch.queue_id is not UNSET:
        change.reroute |= patch.queue_id != job.queue_id
        job.queue_id = _existing_queue(patch.queue_id)
    if patch.classification_policy_id is not UNSET:
        change.reclassify |= patch.classification_policy_id != job.classification_policy_id
        job.classification_policy_id = _existing_policy(patch.classification_policy_id)
    if patch.priority is not UNSET:
        job.priority = patch.priority
    if patch.requested_worker_selectors is not UNSET:
        change.new_selectors = stamp_selectors(patch.requested_worker_selectors, now)
        job.requested_worker_selectors = change.new_selectors
        change.reroute = True


def _apply_data_fields(job: Job, patch: JobPatch, change: JobChange) -> None:
    """Reference, labels, tags, notes, disposition code and matching mode."""
    if patch.channel_reference is not UNSET:
        job.channel_reference = patch.channel_reference
    if patch.labels is not UNSET:
        labels = apply_labels(job.labels, patch.labels)
        change.reclassify |= labels != job.labels
        job.labels = labels
    job.tags = apply_labels(job.tags, patch.tags)
    if patch.notes is not UNSET:
        job.notes = patch.notes
    if patch.disposition_code is not UNSET:
        job.disposition_code = patch.disposition_code
    job.matching_mode = resolve_matching_mode(job.matching_mode or None, patch.matching_mode)


def _start(job: Job, change: JobChange, now: datetime) -> None:
    """A new job's first status (ACS §4.1): `pendingSchedule` (scheduleAndSuspend),
    `waitingForActivation` (suspend), `pendingClassification` (with a classification policy) or
    `created` (queued right after commit)."""
    if not job.channel_id:
        raise InvalidRequest("channelId is required.", target="channelId")
    if not job.queue_id and not job.classification_policy_id:
        raise InvalidRequest("A job needs a queueId or a classificationPolicyId.", target="queueId")
    mode = job.matching_mode["kind"]
    if mode == "scheduleAndSuspend":
        job.status = JobStatus.PENDING_SCHEDULE
        owe(TimerKind.SCHEDULE, job.pk, now)
    elif mode == "suspend":
        job.status = JobStatus.WAITING_FOR_ACTIVATION
        change.suspended = True
    else:
        _release(job, now)


def _release(job: Job, now: datetime) -> None:
    """Send a job on to classification (with a policy) or to its queue (status created)."""
    if job.classification_policy_id:
        request_classification(job, now)
    else:
        job.status = JobStatus.CREATED
        owe(TimerKind.ENQUEUE, job.pk, now)


def _mode_transition(job: Job, change: JobChange, now: datetime) -> bool:
    """Apply a PATCHed matchingMode (ACS §4.9): queueAndMatch activates a waiting or scheduled
    job, suspend stops matching, scheduleAndSuspend (re)schedules. True when it moved the job."""
    mode = job.matching_mode["kind"]
    if mode == change.old_mode and job.status not in ACTIVATABLE_STATUSES:
        return False
    if mode == "queueAndMatch" and job.status in ACTIVATABLE_STATUSES:
        _release(job, now)
        return True
    if mode == "suspend" and job.status in WAITING_STATUSES:
        revoke_offers(Q(job_id=job.pk), now)
        job.status = JobStatus.WAITING_FOR_ACTIVATION
        change.suspended = True
        return True
    if mode == "scheduleAndSuspend" and job.status in SCHEDULABLE_STATUSES:
        revoke_offers(Q(job_id=job.pk), now)
        job.status = JobStatus.PENDING_SCHEDULE
        owe(TimerKind.SCHEDULE, job.pk, now)
        return True
    return False


# The step a job in each of these statuses is waiting for (also used by the sweeper).
STEP_OWED_IN_STATUS: dict[str, str] = {
    JobStatus.CREATED: TimerKind.ENQUEUE,
    JobStatus.PENDING_CLASSIFICATION: TimerKind.CLASSIFY,
    JobStatus.PENDING_SCHEDULE: TimerKind.SCHEDULE,
}


def _reroute(job: Job, patch: JobPatch, change: JobChange, now: datetime) -> None:
    """An existing job's next step after a patch that did not change its matching mode."""
    if change.reclassify and job.classification_policy_id and job.status in RECLASSIFIABLE_STATUSES:
        request_classification(job, now)
    elif job.status == JobStatus.QUEUED and change.reroute:
        revoke_offers(Q(job_id=job.pk), now)
        if job.queue_id != change.old_queue:
            owe(TimerKind.QUEUE_VISIT, job.pk, now)
        owe(TimerKind.MATCH_JOB, job.pk, now)
    elif job.status == JobStatus.QUEUED and patch.priority is not UNSET:
        owe(TimerKind.MATCH_JOB, job.pk, now)
    elif job.status in STEP_OWED_IN_STATUS:
        # A job still waiting for its next step (its owed row lost, say): a retried PATCH owes
        # the step again, so the job ends where the first request should have left it.
        owe(STEP_OWED_IN_STATUS[job.status], job.pk, now)


@retry_on_deadlock
def job_upsert(
    *, job_id: str, patch: JobPatch, precondition: Precondition | None = None, now: datetime | None = None
) -> tuple[Job, bool]:
    """Create or merge-patch a RouterJob; returns (job, created) as of the commit.

    A new job needs channelId and a queueId or classificationPolicyId and starts as `_start`
    says. On an existing job: new labels or policy send a classified job back to classification;
    a new matchingMode moves it (`_mode_transition`); a new queue, channel or selectors revoke
    open offers and match again. Raises InvalidRequest (400) for unknown queues or policies,
    PreconditionFailed (412).
    """
    now = clock(now)

    def apply(job: Job, created: bool):
        change = JobChange(old_queue=job.queue_id, old_mode=(job.matching_mode or {}).get("kind"))
        _apply_routing_fields(job, patch, change, now)
        _apply_data_fields(job, patch, change)
        refresh_expedite(job, now)
        if created:
            _start(job, change, now)
        elif patch.matching_mode is UNSET or not _mode_transition(job, change, now):
            _reroute(job, patch, change, now)

        def after_save() -> None:
            if change.new_selectors:
                arm_selector_expiry(job, change.new_selectors)
            moved_from = [change.old_queue] if change.old_queue and change.old_queue != job.queue_id else []
            notify_changed(jobs=[job.pk], queues=moved_from, now=now)
            if created:
                events.job_received(job, now)
            if change.suspended:
                events.job_waiting_for_activation(job, now)

        return after_save

    return upsert(Job, pk=job_id, now=now, precondition=precondition, apply=apply)


def job_queue_visit(*, job_id: str, now: datetime | None = None) -> None:
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
        if schedule_at is None:  # validation requires scheduleAt; a stored mode without one cannot run
            job.status = JobStatus.SCHEDULE_FAILED
            job.touch(now)
            job.save()
            events.job_scheduling_failed(job, "matchingMode.scheduleAt is missing.", now)
            return False
        job.status = JobStatus.SCHEDULED
        notify_changed(jobs=[job.pk], now=now)
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
        notify_changed(jobs=[job.pk], now=now)
        job.touch(now)
        job.save()
        events.job_waiting_for_activation(job, now)
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
        notify_changed(jobs=[job.pk], now=now)
        events.job_selectors_expired(job, now)
        if job.status == JobStatus.QUEUED:
            owe(TimerKind.MATCH_JOB, job.pk, now)
    return True


@retry_on_deadlock
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


@retry_on_deadlock
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
        notify_changed(jobs=[job.pk], workers=[assignment.worker_id], now=now)
        append_note(job, note, now)
        job.touch(now)
        job.save()
        Worker.objects.filter(pk=assignment.worker_id).update(**touched(now))
        events.job_assignment_event("RouterJobCompleted", job, assignment, now)
    return job


@retry_on_deadlock
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
        append_note(job, note, now)
        job.disposition_code = disposition_code or job.disposition_code or "Closed"
        if close_at is not None and close_at > now:
            assignment.close_at = close_at
            assignment.save(update_fields=["close_at"])
            RouterTimer.objects.create(kind=TimerKind.ASSIGNMENT_CLOSE, target_id=str(assignment.pk), due_at=close_at)
            job.touch(now)
            job.save()
            return job
        close_locked(job, assignment, now)
    return job


@retry_on_deadlock
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
        close_locked(job, assignment, now)
    return True


@retry_on_deadlock
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
        notify_changed(jobs=[job.pk], workers=[assignment.worker_id], now=now)
        job.status = JobStatus.WAITING_FOR_ACTIVATION if suspend_matching else JobStatus.QUEUED
        if suspend_matching:
            job.matching_mode = {"kind": "suspend"}
        job.touch(now)
        job.save()
        events.job_assignment_event("RouterJobUnassigned", job, assignment, now)
        if suspend_matching:
            events.job_waiting_for_activation(job, now)
        else:
            events.job_queued(job, now)
        worker_released(assignment.worker_id, now)
        if not suspend_matching:
            owe(TimerKind.MATCH_JOB, job.pk, now)
    return job


def job_delete(*, job_id: str, now: datetime | None = None) -> None:
    """Delete a job in a terminal status (closed, cancelled, classificationFailed,
    scheduleFailed). NotFound (404); Conflict (409) for any other status."""
    now = clock(now)
    with transaction.atomic():
        job = locked_get(Job, job_id, what="Job")
        if job.status not in DELETABLE_JOB_STATUSES:
            raise Conflict(f"Job {job_id!r} must be closed or cancelled before it is deleted (status {job.status}).")
        events.job_deleted(job, now)
        job.delete()


@retry_on_deadlock
def job_reclassify(*, job_id: str, now: datetime | None = None) -> Job:
    """Classify a job again with its current labels and policy (ACS `:reclassify`): status
    pendingClassification, then queued or classificationFailed. A job without a classification
    policy, or past the waiting stage, is left as it is. NotFound (404)."""
    now = clock(now)
    with transaction.atomic():
        job = locked_get(Job, job_id, what="Job")
        if job.classification_policy_id and job.status in RECLASSIFIABLE_STATUSES:
            request_classification(job, now)
            job.touch(now)
            job.save()
    return job
