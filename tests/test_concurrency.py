"""Races between domain operations, run from real threads with their own database connections
(SQLite: IMMEDIATE transactions serialise writers; PostgreSQL: row locks). Each test states the
invariant that must hold whatever the interleaving."""

from __future__ import annotations

import threading
from datetime import timedelta
from typing import Callable

import pytest
from django.db import connection, transaction
from django.utils import timezone

from routing.errors import RouterError
from routing.models import Assignment, Job, JobStatus, Offer, OfferStatus, Worker, WorkerQueue
from routing.services.common import retry_on_deadlock
from routing.services.jobs import job_close, job_complete
from routing.services.matching import match_job
from routing.services.offers import offer_accept, offer_expire
from routing.services.workers import worker_serve_queue, worker_stop_serving, worker_upsert
from tests import factories
from tests.conftest import eventually
from routing.patches import WorkerPatch

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.postgres]


def run_together(*calls: Callable[[], object]) -> list[object]:
    """Start all calls at once (behind a barrier); returns each result or the exception raised."""
    barrier = threading.Barrier(len(calls))
    results: list[object] = [None] * len(calls)

    def run(i: int, call: Callable[[], object]) -> None:
        try:
            barrier.wait()
            results[i] = call()
        except Exception as exc:  # the race's loser: kept for the assertions
            results[i] = exc
        finally:
            connection.close()

    threads = [threading.Thread(target=run, args=(i, c)) for i, c in enumerate(calls)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    return results


def open_offers(**filters) -> list[Offer]:
    now = timezone.now()
    return [o for o in Offer.objects.filter(status=OfferStatus.OPEN, **filters) if o.expires_at is None or o.expires_at > now]


def test_eight_threads_accepting_one_offer_give_exactly_one_assignment():
    factories.queue_with_policy()
    factories.worker("w1")
    factories.queued_job("j1")
    offer = Offer.objects.get(job_id="j1")

    results = run_together(*[lambda: offer_accept(worker_id="w1", offer_id=str(offer.pk))] * 8)

    successes = [r for r in results if not isinstance(r, Exception)]
    assert len(successes) == 1
    assert all(isinstance(r, RouterError) for r in results if isinstance(r, Exception))
    assert Assignment.objects.filter(job_id="j1").count() == 1
    assert Job.objects.get(pk="j1").status == JobStatus.ASSIGNED


def test_eight_workers_accepting_their_offers_for_one_job_give_one_assignment():
    factories.queue_with_policy(max_offers=8)
    for i in range(8):
        factories.worker(f"w{i}")
    factories.queued_job("j1")
    offers = list(Offer.objects.filter(job_id="j1", status=OfferStatus.OPEN))
    assert len(offers) == 8

    results = run_together(*[
        (lambda o=o: offer_accept(worker_id=o.worker_id, offer_id=str(o.pk))) for o in offers
    ])

    assert sum(1 for r in results if not isinstance(r, Exception)) == 1
    assert Assignment.objects.filter(job_id="j1").count() == 1
    assert open_offers(job_id="j1") == []  # the others were revoked


def test_accept_racing_expiry_never_both_succeed_and_never_fail_unexpectedly():
    # 100 races: on PostgreSQL a lock-order mismatch between the two showed as deadlocks (12 in
    # 100) that surfaced as 500s; the loser must only ever get a RouterError (404 to the agent).
    factories.queue_with_policy(expires=30)
    for round_ in range(100):
        job_id = f"j{round_}"
        factories.worker(f"w{round_}", available=True)
        factories.queued_job(job_id)
        # The owed matchJob row may be claimed by the session's live background worker (same
        # database) rather than this process: the offer then commits a moment later.
        offer = eventually(lambda: Offer.objects.filter(job_id=job_id).first())
        # Accept a hair before expiry, expiry run exactly at it.
        accept_at = offer.expires_at - timedelta(microseconds=1)

        accepted, expired = run_together(
            lambda: offer_accept(worker_id=offer.worker_id, offer_id=str(offer.pk), now=accept_at),
            lambda: offer_expire(offer_id=str(offer.pk), now=offer.expires_at),
        )

        offer.refresh_from_db()
        accept_won = not isinstance(accepted, Exception)
        assert accept_won or isinstance(accepted, RouterError), accepted
        assert not isinstance(expired, Exception), expired
        assert accept_won != (expired is True), (accepted, expired)
        assert offer.status == (OfferStatus.ACCEPTED if accept_won else OfferStatus.EXPIRED)
        assert Assignment.objects.filter(job_id=job_id).count() == (1 if accept_won else 0)
        Job.objects.filter(pk=job_id).update(status=JobStatus.CANCELLED)
        Worker.objects.filter(pk=f"w{round_}").update(available_for_offers=False)


def test_a_deadlock_victim_is_run_again():
    # Two transactions lock two workers in opposite orders: on PostgreSQL one is chosen as the
    # deadlock victim and rolled back; `retry_on_deadlock` runs it again and both succeed.
    # (SQLite's IMMEDIATE transactions serialise writers, so there the calls simply queue.)
    factories.worker("a")
    factories.worker("b")
    barrier = threading.Barrier(2)
    attempts: list[str] = []

    @retry_on_deadlock
    def lock_both(first: str, second: str) -> str:
        attempts.append(first)
        with transaction.atomic():
            Worker.objects.select_for_update().get(pk=first)
            if attempts.count(first) == 1 and connection.vendor == "postgresql":
                barrier.wait(timeout=10)  # both hold their first lock
            Worker.objects.select_for_update().get(pk=second)
        return first

    results = run_together(lambda: lock_both("a", "b"), lambda: lock_both("b", "a"))
    assert sorted(results) == ["a", "b"]
    if connection.vendor == "postgresql":
        assert len(attempts) == 3  # one victim, run twice


def test_accept_after_expires_at_is_refused_even_before_the_timer_runs():
    factories.queue_with_policy(expires=30)
    factories.worker("w1")
    factories.queued_job("j1")
    offer = Offer.objects.get(job_id="j1")
    with pytest.raises(RouterError) as err:
        offer_accept(worker_id="w1", offer_id=str(offer.pk), now=offer.expires_at)
    assert err.value.status == 404
    assert Offer.objects.get(pk=offer.pk).status == OfferStatus.OPEN  # the timer will expire it


def test_worker_deregistering_while_an_offer_is_issued_leaves_no_open_offer_on_an_unavailable_worker():
    for round_ in range(6):
        job_id, worker_id = f"j{round_}", f"w{round_}"
        factories.queue_with_policy()
        factories.worker(worker_id, available=False)
        # The job is queued while nobody is available, so the only offer comes from match_job below.
        factories.queued_job(job_id)
        Worker.objects.filter(pk=worker_id).update(available_for_offers=True)

        run_together(
            lambda: match_job(job_id=job_id),
            lambda: worker_upsert(worker_id=worker_id, patch=WorkerPatch.from_wire({"availableForOffers": False})),
        )

        assert not Worker.objects.get(pk=worker_id).available_for_offers
        assert open_offers(worker_id=worker_id) == []
        Job.objects.filter(pk=job_id).update(status=JobStatus.CANCELLED)


def test_two_workers_freed_at_once_never_get_the_same_job():
    factories.queue_with_policy()
    factories.worker("w1")
    factories.worker("w2")
    assignments = {}
    for job_id in ("busy1", "busy2"):
        factories.queued_job(job_id)
        offer = Offer.objects.get(job_id=job_id, status=OfferStatus.OPEN)
        result = offer_accept(worker_id=offer.worker_id, offer_id=str(offer.pk))
        job_complete(job_id=job_id, assignment_id=result.assignment_id)
        assignments[job_id] = result.assignment_id
    factories.queued_job("waiting1")
    factories.queued_job("waiting2")
    assert open_offers() == []  # both workers are full

    run_together(*[
        (lambda j=j, a=a: job_close(job_id=j, assignment_id=a)) for j, a in assignments.items()
    ])

    offers = open_offers()
    assert sorted(o.job_id for o in offers) == ["waiting1", "waiting2"]
    assert sorted(o.worker_id for o in offers) == ["w1", "w2"]


def test_an_agent_starting_and_stopping_queues_at_once_loses_no_queue():
    """Start and stop read the worker's queue list and write it back: without the worker row
    lock, two starts read the same list and the second write drops the first's queue."""
    for q in ("q1", "q2", "q3", "q4"):
        factories.queue_with_policy(q)
    factories.worker("w1", queues=["q1"])
    for _round in range(10):
        worker_upsert(worker_id="w1", patch=WorkerPatch(queues=["q1"]))
        results = run_together(
            lambda: worker_serve_queue(worker_id="w1", queue_id="q2", priority=2),
            lambda: worker_serve_queue(worker_id="w1", queue_id="q3", priority=3),
            lambda: worker_serve_queue(worker_id="w1", queue_id="q4"),
            lambda: worker_stop_serving(worker_id="w1", queue_id="q1"),
        )
        assert not [r for r in results if isinstance(r, Exception)], results
        served = dict(WorkerQueue.objects.filter(worker_id="w1").values_list("queue_id", "priority"))
        assert served == {"q2": 2, "q3": 3, "q4": 0}


def test_accepts_through_two_server_processes_give_exactly_one_assignment(django_db_setup, request):
    """The same race over HTTP: 8 workers' offers for one job accepted at once through the
    official SDK, split across two daphne processes."""
    from azure.core.exceptions import HttpResponseError
    from django.conf import settings

    from tests.conftest import RouterProcesses, make_clients, server_env

    request.getfixturevalue("router").stop_worker()  # the shared worker would also run timers here
    processes = RouterProcesses(server_env(), servers=2)
    try:
        factories.queue_with_policy(max_offers=8)
        for i in range(8):
            factories.worker(f"w{i}")
        factories.queued_job("j1")
        offers = list(Offer.objects.filter(job_id="j1", status=OfferStatus.OPEN))
        assert len(offers) == 8
        clients = [make_clients(processes.endpoints()[i % 2], settings.JOBROUTER_ACCESS_KEY)[1] for i in range(8)]

        def accept(i: int, offer: Offer):
            try:
                return clients[i].accept_job_offer(worker_id=offer.worker_id, offer_id=str(offer.pk))
            except HttpResponseError as exc:
                return exc

        results = run_together(*[(lambda i=i, o=o: accept(i, o)) for i, o in enumerate(offers)])
        winners = [r for r in results if not isinstance(r, Exception)]
        assert len(winners) == 1, results
        # Each loser finds its offer revoked by the winner's accept: the job is taken (409).
        assert [r.status_code for r in results if isinstance(r, HttpResponseError)] == [409] * 7
        assert Assignment.objects.filter(job_id="j1").count() == 1
        assert Job.objects.get(pk="j1").status == JobStatus.ASSIGNED
    finally:
        processes.stop()
        router = request.getfixturevalue("router")
        router.worker = router.start_worker()
