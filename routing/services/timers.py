"""The timer path: stored due times run within a fraction of a second of being due.

django-q2's scheduler looks at its Schedule rows only every 30 s, too coarse for offer expiry
and delayed closes. Instead the background worker (`manage.py qcluster`) runs `run_timer_loop`:
it reads the earliest pending due time (one index probe on RouterTimer(fired_at, due_at)), sleeps
until then but never longer than JOBROUTER_TIMER_POLL_SECONDS (so due times stored by other
processes are seen promptly), and claims each due row by compare-and-set
(`fired_at IS NULL → now`) in the same transaction as the handler. Any number of loops may run:
each row is claimed once, and a loop that dies mid-handler rolls back its claim, so the row is
picked up again. Nothing lives only in memory, so a restart loses nothing.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Callable

from django.conf import settings
from django.db import close_old_connections, transaction

from routing import clock
from routing.models import OWED_KINDS, Job, JobStatus, OfferStatus, RouterEvent, RouterTimer, TimerKind
from routing.services.classification import classify_owed
from routing.services.common import register_owed_work_runner
from routing.services.delivery import prune_events
from routing.services.exceptions import exception_rule_due
from routing.services.jobs import (
    STEP_OWED_IN_STATUS,
    assignment_close_due,
    job_enqueue,
    job_queue_visit,
    job_schedule,
    job_schedule_due,
    job_selectors_expire,
)
from routing.services.matching import match_job, match_queue, match_worker
from routing.services.offers import decline_retry_due, offer_expire

logger = logging.getLogger("routing.timers")

# Timer kind → handler(target id, now).
HANDLERS: dict[str, Callable[[str, datetime], object]] = {
    TimerKind.OFFER_EXPIRY: lambda target, now: offer_expire(offer_id=target, now=now),
    TimerKind.ASSIGNMENT_CLOSE: lambda target, now: assignment_close_due(assignment_id=target, now=now),
    TimerKind.DECLINE_RETRY: lambda target, now: decline_retry_due(job_id=target, now=now),
    TimerKind.JOB_SCHEDULE: lambda target, now: job_schedule_due(job_id=target, now=now),
    TimerKind.EXCEPTION_WAIT_TIME: lambda target, now: exception_rule_due(target=target, now=now),
    TimerKind.SELECTOR_EXPIRY: lambda target, now: job_selectors_expire(job_id=target, now=now),
    # Owed work (`common.owe`), due at once.
    TimerKind.EXCEPTION_QUEUE_LENGTH: lambda target, now: exception_rule_due(target=target, now=now),
    TimerKind.CLASSIFY: lambda target, now: classify_owed(job_id=target, now=now),
    TimerKind.CLASSIFY_LEASE: lambda target, now: classify_owed(job_id=target, now=now),
    TimerKind.ENQUEUE: lambda target, now: job_enqueue(job_id=target, now=now),
    TimerKind.SCHEDULE: lambda target, now: job_schedule(job_id=target, now=now),
    TimerKind.QUEUE_VISIT: lambda target, now: job_queue_visit(job_id=target, now=now),
    TimerKind.MATCH_JOB: lambda target, now: match_job(job_id=target, now=now),
    TimerKind.MATCH_WORKER: lambda target, now: match_worker(worker_id=target, now=now),
    TimerKind.MATCH_QUEUE: lambda target, now: match_queue(queue_id=target, now=now),
}

# Back-off of a timer whose handler raised: 1 s, 2 s, 4 s ... at most 5 minutes.
BACKOFF_FIRST_SECONDS = 1.0
BACKOFF_MAX_SECONDS = 300.0
ERROR_TEXT_LIMIT = 1000


@dataclass(frozen=True)
class DueTimer:
    """One pending RouterTimer row as the loop reads it."""

    id: int
    kind: str
    target_id: str
    due_at: datetime
    first_due_at: datetime | None = None

    def stamp(self, now: datetime) -> datetime:
        """The time the transition is stamped with: a scheduled transition (expiry, close,
        schedule, exception rule) carries its own due time, however late the loop runs it; owed
        work runs at the time it runs (a re-offer must get its full expiry)."""
        if self.kind in OWED_KINDS:
            return now
        return min(self.first_due_at or self.due_at, now)


def run_timer(timer: DueTimer, now: datetime) -> bool:
    """Claim one timer and run its handler in one transaction; False when another loop (or the
    after-commit run of owed work) claimed it first. A handler that raises rolls its claim back
    and the exception propagates (see `run_claimed_or_back_off`). Owed work is deleted when
    claimed; a scheduled timer is marked fired."""
    pending = RouterTimer.objects.filter(pk=timer.id, fired_at__isnull=True)
    with transaction.atomic():
        # Compare-and-set claim: of several loops, exactly one runs each timer.
        claimed = pending.delete()[0] if timer.kind in OWED_KINDS else pending.update(fired_at=now)
        if not claimed:
            return False
        HANDLERS[timer.kind](timer.target_id, timer.stamp(now))
    return True


def run_claimed_or_back_off(timer: DueTimer, now: datetime) -> bool:
    """`run_timer`, and when its handler raises: log it, count the attempt, keep the error
    (bounded) and move the row's due time out by the back-off, so one broken row neither fails
    its siblings nor is retried on every pass. Returns True when it ran."""
    try:
        return run_timer(timer, now)
    except Exception as exc:
        logger.exception("timer %s (%s %s) failed", timer.id, timer.kind, timer.target_id)
        row = RouterTimer.objects.filter(pk=timer.id, fired_at__isnull=True)
        attempts = (row.values_list("attempts", flat=True).first() or 0) + 1
        delay = min(BACKOFF_FIRST_SECONDS * 2 ** (attempts - 1), BACKOFF_MAX_SECONDS)
        row.update(
            attempts=attempts,
            last_error=f"{type(exc).__name__}: {exc}"[:ERROR_TEXT_LIMIT],
            first_due_at=timer.first_due_at or timer.due_at,
            due_at=now + timedelta(seconds=delay),
        )
        return False


def _due_timer(timer_id: int) -> DueTimer | None:
    row = (
        RouterTimer.objects.filter(pk=timer_id, fired_at__isnull=True)
        .values_list("id", "kind", "target_id", "due_at", "first_due_at")
        .first()
    )
    return DueTimer(*row) if row is not None else None


def run_owed_work(timer_id: int) -> None:
    """Run one owed-work row right after the commit that wrote it (`common.owe`)."""
    timer = _due_timer(timer_id)
    if timer is not None:
        run_claimed_or_back_off(timer, clock.now())


register_owed_work_runner(run_owed_work)


def run_due_timers(*, now: datetime | None = None, limit: int = 200) -> int:
    """Run up to `limit` timers due at `now`, earliest first; returns how many this call claimed
    and ran. The loop calls it again at once while a backlog remains."""
    now = clock.clock(now)
    due = [
        DueTimer(*row)
        for row in RouterTimer.objects.filter(fired_at__isnull=True, due_at__lte=now)
        .order_by("due_at")
        .values_list("id", "kind", "target_id", "due_at", "first_due_at")[:limit]
    ]
    return sum(run_claimed_or_back_off(timer, now) for timer in due)


# A job that has sat in a status that owes a step for this long, with no pending row to take
# it further, is stranded (the row was lost with a database restored from backup, or written by
# a version that ran the step only in memory): the sweeper owes the step again.
STRANDED_AFTER = timedelta(seconds=5)
SWEEP_EVERY_SECONDS = 5.0


def sweep_stranded(*, now: datetime | None = None) -> int:
    """Owe the next step of every stranded job (see STRANDED_AFTER), and a matching pass for
    every queue holding a queued job that has had no offer for that long. Returns how many
    rows it wrote."""
    now = clock.clock(now)
    quiet_since = now - STRANDED_AFTER
    pending = RouterTimer.objects.filter(fired_at__isnull=True)
    written = 0
    with transaction.atomic():
        stranded = (
            Job.objects.filter(status__in=list(STEP_OWED_IN_STATUS), updated_at__lt=quiet_since)
            .exclude(pk__in=pending.values("target_id"))
            .values_list("pk", "status")
        )
        for job_id, status in stranded:
            logger.warning("job %s stranded in %s; owing its next step again", job_id, status)
            RouterTimer.objects.create(kind=STEP_OWED_IN_STATUS[status], target_id=job_id, due_at=now)
            written += 1
        unmatched_queues = (
            Job.objects.filter(status=JobStatus.QUEUED, updated_at__lt=quiet_since)
            .exclude(offers__status=OfferStatus.OPEN)
            .exclude(queue_id__in=pending.filter(kind=TimerKind.MATCH_QUEUE).values("target_id"))
            .values_list("queue_id", flat=True)
            .distinct()
        )
        for queue_id in unmatched_queues:
            RouterTimer.objects.create(kind=TimerKind.MATCH_QUEUE, target_id=queue_id, due_at=now)
            written += 1
    return written


EVENT_RETENTION = timedelta(minutes=10)
FIRED_TIMER_RETENTION = timedelta(days=1)
HOUSEKEEPING_EVERY_SECONDS = 60.0


def housekeeping(*, now: datetime | None = None) -> tuple[int, int]:
    """Drop RouterEvent rows older than 10 minutes (the push hubs read them within a second),
    timers that fired over a day ago, and router events (Event Grid) past
    JOBROUTER_EVENT_RETENTION_DAYS. Returns (push events, timers) deleted."""
    now = clock.clock(now)
    events, _ = RouterEvent.objects.filter(created_at__lt=now - EVENT_RETENTION).delete()
    timers, _ = RouterTimer.objects.filter(fired_at__lt=now - FIRED_TIMER_RETENTION).delete()
    prune_events(now=now)
    return events, timers


def next_due_at() -> datetime | None:
    return (
        RouterTimer.objects.filter(fired_at__isnull=True).order_by("due_at").values_list("due_at", flat=True).first()
    )


def run_timer_loop(*, should_stop: Callable[[], bool], poll_seconds: float | None = None) -> None:
    """Run due timers until `should_stop()` is true. See the module docstring."""
    poll = poll_seconds if poll_seconds is not None else settings.JOBROUTER_TIMER_POLL_SECONDS
    logger.info("timer loop started (poll %.2fs)", poll)
    last_housekeeping = last_sweep = 0.0
    while not should_stop():
        try:
            close_old_connections()
            run_due_timers()
            upcoming = next_due_at()
            if time.monotonic() - last_sweep > SWEEP_EVERY_SECONDS:
                last_sweep = time.monotonic()
                sweep_stranded()
            if time.monotonic() - last_housekeeping > HOUSEKEEPING_EVERY_SECONDS:
                last_housekeeping = time.monotonic()
                housekeeping()
        except Exception:
            logger.exception("timer loop pass failed")
            upcoming = None
        delay = poll
        if upcoming is not None:
            delay = min(poll, max(0.0, (upcoming - clock.now()).total_seconds()))
        if delay:
            time.sleep(delay)
    logger.info("timer loop stopped")
