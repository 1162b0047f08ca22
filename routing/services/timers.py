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
from datetime import datetime, timedelta
from typing import Callable

from django.conf import settings
from django.db import close_old_connections, transaction

from routing import clock
from routing.models import RouterEvent, RouterTimer, TimerKind
from routing.services.classification import classify_owed
from routing.services.common import register_owed_work_runner
from routing.services.exceptions import exception_rule_due
from routing.services.jobs import assignment_close_due, job_schedule_due, job_selectors_expire
from routing.services.offers import decline_retry_due, offer_expire

logger = logging.getLogger("routing.timers")

# Timer kind → handler(target id, now). Owed work (classify, exceptionQueueLength) is due at once.
HANDLERS: dict[str, Callable[[str, datetime], object]] = {
    TimerKind.OFFER_EXPIRY: lambda target, now: offer_expire(offer_id=target, now=now),
    TimerKind.ASSIGNMENT_CLOSE: lambda target, now: assignment_close_due(assignment_id=target, now=now),
    TimerKind.DECLINE_RETRY: lambda target, now: decline_retry_due(job_id=target, now=now),
    TimerKind.JOB_SCHEDULE: lambda target, now: job_schedule_due(job_id=target, now=now),
    TimerKind.EXCEPTION_WAIT_TIME: lambda target, now: exception_rule_due(target=target, now=now),
    TimerKind.EXCEPTION_QUEUE_LENGTH: lambda target, now: exception_rule_due(target=target, now=now),
    TimerKind.SELECTOR_EXPIRY: lambda target, now: job_selectors_expire(job_id=target, now=now),
    TimerKind.CLASSIFY: lambda target, now: classify_owed(job_id=target, now=now),
}


def run_timer(timer_id: int, kind: str, target_id: str, now: datetime) -> bool:
    """Claim one timer and run its handler in one transaction; False when another loop (or the
    after-commit run of owed work) claimed it first. A handler that raises rolls its claim back."""
    with transaction.atomic():
        # Compare-and-set claim: of several loops, exactly one runs each timer.
        if not RouterTimer.objects.filter(pk=timer_id, fired_at__isnull=True).update(fired_at=now):
            return False
        HANDLERS[kind](target_id, now)
    return True


def run_owed_work(timer_id: int) -> None:
    """Run one owed-work row right after the commit that wrote it (`common.owe`)."""
    row = RouterTimer.objects.filter(pk=timer_id, fired_at__isnull=True).values_list("kind", "target_id").first()
    if row is not None:
        run_timer(timer_id, row[0], row[1], clock.now())


register_owed_work_runner(run_owed_work)


def run_due_timers(*, now: datetime | None = None, limit: int = 200) -> int:
    """Run every timer due at `now`; returns how many this call claimed and ran."""
    now = clock.clock(now)
    due = list(
        RouterTimer.objects.filter(fired_at__isnull=True, due_at__lte=now)
        .order_by("due_at")
        .values_list("id", "kind", "target_id")[:limit]
    )
    ran = 0
    for timer_id, kind, target_id in due:
        try:
            if run_timer(timer_id, kind, target_id, now):
                ran += 1
        except Exception:
            # One broken timer must not stall the others; it stays unclaimed (rolled back) and
            # is retried on the next pass.
            logger.exception("timer %s (%s %s) failed", timer_id, kind, target_id)
    return ran


EVENT_RETENTION = timedelta(minutes=10)
FIRED_TIMER_RETENTION = timedelta(days=1)
HOUSEKEEPING_EVERY_SECONDS = 60.0


def housekeeping(*, now: datetime | None = None) -> tuple[int, int]:
    """Drop RouterEvent rows older than 10 minutes (the push hubs read them within a second) and timers
    that fired over a day ago. Returns (events, timers) deleted."""
    now = clock.clock(now)
    events, _ = RouterEvent.objects.filter(created_at__lt=now - EVENT_RETENTION).delete()
    timers, _ = RouterTimer.objects.filter(fired_at__lt=now - FIRED_TIMER_RETENTION).delete()
    return events, timers


def next_due_at() -> datetime | None:
    return (
        RouterTimer.objects.filter(fired_at__isnull=True).order_by("due_at").values_list("due_at", flat=True).first()
    )


def run_timer_loop(*, should_stop: Callable[[], bool], poll_seconds: float | None = None) -> None:
    """Run due timers until `should_stop()` is true. See the module docstring."""
    poll = poll_seconds if poll_seconds is not None else settings.JOBROUTER_TIMER_POLL_SECONDS
    logger.info("timer loop started (poll %.2fs)", poll)
    last_housekeeping = 0.0
    while not should_stop():
        try:
            close_old_connections()
            run_due_timers()
            upcoming = next_due_at()
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
