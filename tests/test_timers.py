"""The timer path, in-process with a fixed clock: due timers run once, are claimed by
compare-and-set, survive a failed handler, and old rows are cleaned up."""

from datetime import timedelta

import pytest
from django.utils import timezone

from routing.models import Offer, OfferStatus, RouterEvent, RouterTimer, TimerKind, Worker
from routing.services.timers import housekeeping, next_due_at, run_due_timers
from tests import factories

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.postgres]


def test_offer_expiry_timer_runs_once_at_its_due_time_and_deregisters_the_worker():
    factories.queue_with_policy("q1", expires=30)
    factories.worker("w1")
    factories.queued_job("j1")
    offer = Offer.objects.get(job_id="j1")
    assert next_due_at() == offer.expires_at
    assert run_due_timers(now=offer.expires_at - timedelta(milliseconds=1)) == 0
    assert run_due_timers(now=offer.expires_at) == 1
    assert run_due_timers(now=offer.expires_at) == 0  # claimed: never twice
    assert Offer.objects.get(pk=offer.pk).status == OfferStatus.EXPIRED
    assert not Worker.objects.get(pk="w1").available_for_offers


def test_a_failing_timer_is_left_pending_and_does_not_stop_the_others():
    now = timezone.now()
    RouterTimer.objects.create(kind="noSuchKind", target_id="x", due_at=now)
    RouterTimer.objects.create(kind=TimerKind.JOB_SCHEDULE, target_id="missing-job", due_at=now)
    assert run_due_timers(now=now) == 1
    assert RouterTimer.objects.get(kind="noSuchKind").fired_at is None


def test_housekeeping_drops_old_events_and_fired_timers():
    now = timezone.now()
    RouterEvent.objects.create(topic="supervisor", origin="t", created_at=now - timedelta(hours=1))
    RouterEvent.objects.create(topic="supervisor", origin="t", created_at=now)
    RouterTimer.objects.create(kind=TimerKind.JOB_SCHEDULE, target_id="a", due_at=now, fired_at=now - timedelta(days=2))
    RouterTimer.objects.create(kind=TimerKind.JOB_SCHEDULE, target_id="b", due_at=now + timedelta(hours=1))
    assert housekeeping(now=now) == (1, 1)
    assert RouterEvent.objects.count() == 1 and RouterTimer.objects.count() == 1
