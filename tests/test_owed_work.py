"""Work owed after a change is a row, not a callback (routing.services.common.owe): it runs right
after the commit, and should the process die in between, the timer loop runs it instead.
In-process, with a frozen clock."""

from __future__ import annotations

import logging
from datetime import timedelta

import pytest
import time_machine
from django.db import transaction

from routing import clock
from routing.models import Job, JobStatus, RouterTimer, TimerKind
from routing.patches import ClassificationPolicyPatch, ExceptionPolicyPatch, JobPatch, QueuePatch
from routing.services.common import after_commit
from routing.services.jobs import job_upsert
from routing.services.policies import classification_policy_upsert, exception_policy_upsert, queue_upsert
from routing.services.timers import run_due_timers
from tests import factories

pytestmark = pytest.mark.django_db

T0 = "2026-12-01T09:00:00+00:00"


@pytest.fixture
def frozen():
    with time_machine.travel(T0, tick=False) as traveller:
        yield traveller


def _classified_queue() -> None:
    factories.queue_with_policy("sales")
    classification_policy_upsert(
        policy_id="cp", patch=ClassificationPolicyPatch.from_wire({"fallbackQueueId": "sales"})
    )


def test_classification_owed_by_a_process_that_died_before_its_follow_up_is_run_by_the_timer_loop(frozen):
    _classified_queue()
    # The test transaction never commits, so on_commit follow-ups never run: exactly what a
    # process killed between commit and follow-up leaves behind.
    job, _ = job_upsert(job_id="j1", patch=JobPatch(channel_id="voice", classification_policy_id="cp"))
    assert job.status == JobStatus.PENDING_CLASSIFICATION
    owed = RouterTimer.objects.get(kind=TimerKind.CLASSIFY, target_id="j1")
    assert owed.fired_at is None and owed.due_at == clock.now()

    assert run_due_timers() == 1
    job.refresh_from_db()
    assert job.status == JobStatus.QUEUED and job.queue_id == "sales"
    assert not RouterTimer.objects.filter(pk=owed.pk).exists()  # owed work is deleted when done


def test_owed_work_runs_right_after_commit_and_only_once(frozen, django_capture_on_commit_callbacks):
    _classified_queue()
    with django_capture_on_commit_callbacks(execute=True):
        job_upsert(job_id="j1", patch=JobPatch(channel_id="voice", classification_policy_id="cp"))
    assert Job.objects.get(pk="j1").status == JobStatus.QUEUED
    assert not RouterTimer.objects.filter(kind=TimerKind.CLASSIFY, target_id="j1").exists()
    frozen.shift(timedelta(seconds=5))
    assert run_due_timers() == 0  # claimed by the after-commit run: never twice


def test_queue_length_rule_owed_at_enqueue_is_checked_by_the_timer_loop_if_the_process_died(frozen):
    exception_policy_upsert(policy_id="ep", patch=ExceptionPolicyPatch.from_wire({"exceptionRules": [{
        "id": "too-long", "trigger": {"kind": "queueLength", "threshold": 0},
        "actions": [{"kind": "cancel", "note": "queue full"}],
    }]}))
    factories.queue_with_policy("sales")
    queue_upsert(queue_id="sales", patch=QueuePatch(exception_policy_id="ep"))
    job = factories.queued_job("j1", queue="sales")
    assert job.status == JobStatus.QUEUED
    assert RouterTimer.objects.filter(kind=TimerKind.EXCEPTION_QUEUE_LENGTH, fired_at__isnull=True).count() == 1

    run_due_timers()
    job.refresh_from_db()
    assert job.status == JobStatus.CANCELLED and job.notes[-1]["message"] == "queue full"


@pytest.mark.django_db(transaction=True)
def test_a_failing_follow_up_is_logged_and_does_not_skip_the_ones_after_it(caplog):
    ran = []

    def fails() -> None:
        raise RuntimeError("matching hit a lock timeout")

    with caplog.at_level(logging.ERROR, logger="django.db.backends.base"):
        with transaction.atomic():
            after_commit(fails)
            after_commit(ran.append, "second")
    assert ran == ["second"]
    assert any("fails" in record.getMessage() for record in caplog.records)
