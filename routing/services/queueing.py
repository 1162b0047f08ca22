"""Putting jobs in queues (ACS Job Router 2023-11-01 §4.1, §4.4–§4.6).

Entering a queue, stamping and arming worker-selector expiry, arming a queue's exception rules,
sending a job to classification, and cancelling: the steps that jobs, classification and
exception rules all take. Work this module owes to modules above it (classification, the
queueLength exception check) is written as an owed-work row (`common.owe`) in the same
transaction, not called, so modules import only downward; matching, below, is called after
commit.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from django.db.models import Q

from routing import validation as v
from routing.engine.selectors import selector_is_active
from routing.models import Job, JobStatus, Queue, RouterTimer, TimerKind
from routing.services import events
from routing.services.common import owe
from routing.services.matching import revoke_offers
from routing.services.notify import notify_changed


def stamp_selectors(selectors: list[dict], now: datetime) -> list[dict]:
    """Give each selector with `expiresAfterSeconds` (seconds) its `expiresAt` (attach time +
    seconds, ACS §4.6); selectors already stamped keep theirs."""
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


def arm_selector_expiry(job: Job, selectors: list[dict]) -> None:
    """A stored timer per distinct expiresAt, so the pool widens on time (ACS §4.6)."""
    for raw in {s["expiresAt"] for s in selectors if s.get("expiresAt")}:
        due = v.optional_datetime(raw, "expiresAt")
        if due is not None:
            RouterTimer.objects.create(kind=TimerKind.SELECTOR_EXPIRY, target_id=job.pk, due_at=due)


def exception_rules_of(queue_id: str | None) -> tuple[str | None, list[dict]]:
    """(exception policy id, its rules) of a queue; (None, []) without one."""
    queue = Queue.objects.select_related("exception_policy").filter(pk=queue_id).first() if queue_id else None
    if queue is None or queue.exception_policy is None:
        return None, []
    return queue.exception_policy.pk, queue.exception_policy.exception_rules or []


def rule_target(job_id: str, rule_id: str, visit: int) -> str:
    """Timer target of one exception rule for one queue visit of a job."""
    # Job ids may contain "|"; they go last so the split stays unambiguous.
    return f"{visit}|{rule_id}|{job_id}"


def parse_rule_target(target: str) -> tuple[str, str, int]:
    """(job id, rule id, visit) of a `rule_target`."""
    visit, rule_id, job_id = target.split("|", 2)
    return job_id, rule_id, int(visit)


def arm_exception_rules(job: Job, now: datetime) -> None:
    """Arm the rules of the job's queue for its current visit (job locked; saved by the caller):
    `queueLength` rules are checked right after commit, `waitTime` rules at enqueue time +
    `thresholdSeconds` (seconds); both as stored timers."""
    _policy_id, rules = exception_rules_of(job.queue_id)
    for rule in rules:
        trigger = rule["trigger"]
        target = rule_target(job.pk, rule["id"], job.queue_visit)
        if trigger["kind"] == "queueLength":
            owe(TimerKind.EXCEPTION_QUEUE_LENGTH, target, now)
        elif trigger["kind"] == "waitTime":
            due_at = (job.enqueued_at or now) + timedelta(seconds=trigger["thresholdSeconds"])
            RouterTimer.objects.create(kind=TimerKind.EXCEPTION_WAIT_TIME, target_id=target, due_at=due_at)


def enter_queue(job: Job, now: datetime, *, same_queue: bool = False) -> None:
    """Put a locked job in its queue: status queued and matching after commit. The caller saves.

    A job arriving in a queue starts a new visit: enqueuedAt = now and the queue's exception
    rules are armed. A job put back in the queue it was already visiting (`same_queue`:
    reclassified or manually reclassified without a queue change) continues that visit: it keeps
    its place and its rules are not armed again, so a rule whose action keeps the job in its
    queue fires once, not in a loop.
    """
    job.status = JobStatus.QUEUED
    if not (same_queue and job.enqueued_at and job.queue_visit):
        job.enqueued_at = now
        job.queue_visit += 1
        arm_exception_rules(job, now)
    notify_changed(jobs=[job.pk], now=now)
    events.job_queued(job, now)
    owe(TimerKind.MATCH_JOB, job.pk, now)


def request_classification(job: Job, now: datetime) -> None:
    """Send a locked job (saved by the caller) to classification: status pendingClassification,
    open offers revoked, and a classification owed (run after commit)."""
    if job.status == JobStatus.QUEUED:
        revoke_offers(Q(job_id=job.pk), now)
    job.status = JobStatus.PENDING_CLASSIFICATION
    job.classification_error = None
    owe(TimerKind.CLASSIFY, job.pk, now)


def append_note(job: Job, message: str | None, now: datetime) -> None:
    """Add a RouterJobNote stamped `now` (no-op for an empty message)."""
    if message:
        job.notes = [*job.notes, {"message": message, "addedAt": v.format_datetime(now)}]


def cancel_locked(job: Job, *, note: str | None, disposition_code: str | None, now: datetime) -> None:
    """Cancel a job whose row the caller holds locked (ACS `:cancel`, and the exception `cancel`
    action): open offers revoked, dispositionCode defaulting to "Cancelled", the note appended."""
    revoke_offers(Q(job_id=job.pk), now)
    notify_changed(jobs=[job.pk], now=now)
    job.status = JobStatus.CANCELLED
    job.disposition_code = disposition_code or "Cancelled"
    append_note(job, note, now)
    job.touch(now)
    job.save()
    events.job_cancelled(job, note, now)
