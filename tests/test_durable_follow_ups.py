"""Nothing stranded (hardening issue, items 1 and 3): every follow-up of a change is a row written
in the changing transaction; rows that fail back off without holding up their siblings; a
sweeper finds jobs whose step was lost; scheduled transitions carry their own due time.

In-process with a frozen clock. The test transaction never commits, so after-commit runs never
happen unless a test asks for them: exactly what a process killed right after its commit leaves
behind."""

from __future__ import annotations

from datetime import timedelta

import pytest
import time_machine
from django.db import transaction

from routing import clock
from routing.models import Job, JobStatus, Offer, OfferStatus, RouterTimer, TimerKind
from routing.patches import JobPatch
from routing.services.common import owe
from routing.services.jobs import job_upsert
from routing.services.timers import run_due_timers, sweep_stranded
from tests import factories

pytestmark = pytest.mark.django_db

T0 = "2026-12-01T09:00:00+00:00"


@pytest.fixture
def frozen():
    with time_machine.travel(T0, tick=False) as traveller:
        yield traveller


def _drain(now=None) -> int:
    """Run the loop's passes until nothing more is due; returns how many rows ran."""
    total = 0
    while ran := run_due_timers(now=now):
        total += ran
    return total


def _new_job(job_id: str = "j1") -> Job:
    return job_upsert(job_id=job_id, patch=JobPatch(channel_id="voice", queue_id="q1"))[0]


def test_a_job_whose_process_died_after_commit_is_queued_and_offered_by_the_timer_loop(frozen):
    factories.queue_with_policy("q1")
    factories.worker("w1")
    assert _new_job().status == JobStatus.CREATED
    assert RouterTimer.objects.filter(kind=TimerKind.ENQUEUE, target_id="j1", fired_at__isnull=True).exists()

    _drain()  # enqueue, then the matching it owes
    assert Job.objects.get(pk="j1").status == JobStatus.QUEUED
    assert Offer.objects.get(job_id="j1").worker_id == "w1"
    assert not RouterTimer.objects.filter(fired_at__isnull=True, due_at__lte=clock.now()).exists()


def test_a_follow_up_that_raises_backs_off_and_its_siblings_still_run(frozen, django_capture_on_commit_callbacks):
    factories.queue_with_policy("q1")
    factories.worker("w1")
    _drain()
    with django_capture_on_commit_callbacks(execute=True):
        with transaction.atomic():
            owe("noSuchKind", "poison", clock.now())  # a row no handler can run
            _new_job()
    assert Job.objects.get(pk="j1").status == JobStatus.QUEUED  # the sibling ran
    assert Offer.objects.filter(job_id="j1", status=OfferStatus.OPEN).exists()

    poison = RouterTimer.objects.get(kind="noSuchKind")
    assert (poison.attempts, poison.fired_at) == (1, None)
    assert poison.last_error.startswith("KeyError")
    assert poison.due_at == clock.now() + timedelta(seconds=1)
    assert run_due_timers() == 0  # not retried on every pass
    frozen.shift(timedelta(seconds=1))
    run_due_timers()
    poison.refresh_from_db()
    assert poison.attempts == 2 and poison.due_at == clock.now() + timedelta(seconds=2)
    assert poison.first_due_at == clock.now() - timedelta(seconds=1)


def test_200_poison_timers_do_not_starve_offer_expiry(frozen):
    factories.queue_with_policy("q1", expires=30)
    factories.worker("w1")
    factories.queued_job("j1")
    _drain()
    offer = Offer.objects.get(job_id="j1")
    for i in range(200):
        RouterTimer.objects.create(kind="noSuchKind", target_id=f"p{i}", due_at=clock.now())

    frozen.move_to(offer.expires_at)
    run_due_timers()  # the 200 poison rows fail once each and step aside
    run_due_timers()
    assert Offer.objects.get(pk=offer.pk).status == OfferStatus.EXPIRED
    assert RouterTimer.objects.filter(kind="noSuchKind", attempts=1, due_at__gt=clock.now()).count() == 200


def test_the_sweeper_owes_the_step_of_a_job_whose_row_was_lost(frozen):
    factories.queue_with_policy("q1")
    _new_job()
    RouterTimer.objects.all().delete()  # the owed row is gone (say, a restore from backup)
    assert sweep_stranded() == 0  # not yet: the job changed less than 5 s ago
    frozen.shift(timedelta(seconds=6))
    assert sweep_stranded() == 1
    assert sweep_stranded() == 0  # owed once, not on every sweep
    _drain()
    assert Job.objects.get(pk="j1").status == JobStatus.QUEUED


def test_the_sweeper_matches_a_queue_whose_queued_job_was_never_offered(frozen):
    factories.queue_with_policy("q1")
    factories.worker("w1")
    factories.queued_job("j1")
    RouterTimer.objects.all().delete()  # the matching owed by the enqueue was lost
    frozen.shift(timedelta(seconds=6))
    assert sweep_stranded() == 1
    _drain()
    assert Offer.objects.get(job_id="j1").status == OfferStatus.OPEN
    frozen.shift(timedelta(seconds=6))
    assert sweep_stranded() == 0  # a job with an open offer is not stranded


def test_a_retried_patch_leaves_the_job_where_the_first_should_have(frozen):
    factories.queue_with_policy("q1")
    _new_job()
    RouterTimer.objects.all().delete()
    job, created = job_upsert(job_id="j1", patch=JobPatch(channel_id="voice", queue_id="q1"))
    assert not created
    _drain()
    assert Job.objects.get(pk="j1").status == JobStatus.QUEUED


def test_an_expiry_run_late_carries_its_due_time_and_the_re_offer_gets_its_full_expiry(frozen):
    factories.queue_with_policy("q1", expires=30)
    factories.worker("w1")
    factories.queued_job("j1")
    _drain()
    first = Offer.objects.get(job_id="j1")
    factories.worker("w2")
    _drain()  # w2 registered while j1 was already offered to w1 (one offer at a time)

    frozen.move_to(first.expires_at + timedelta(seconds=10))  # the loop was down for 10 s
    _drain()
    first.refresh_from_db()
    assert first.status == OfferStatus.EXPIRED
    assert first.ended_at == first.expires_at  # stamped with its due time
    second = Offer.objects.get(job_id="j1", status=OfferStatus.OPEN)
    assert second.worker_id == "w2"
    assert second.expires_at == clock.now() + timedelta(seconds=30)  # offered now, for the full 30 s
