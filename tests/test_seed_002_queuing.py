"""Seed 002 routing order (Q1–Q5, Q9): queue priority, FIFO, per-queue agent priority, and the
queue status figures, through the domain functions every entry point uses."""

from __future__ import annotations

import pytest
from django.test import Client

from routing.models import Offer, OfferStatus
from routing.queries import queue_statistics
from routing.services.offers import offer_accept
from routing.services.policies import queue_upsert
from routing.services.workers import worker_request_job, worker_upsert
from tests import factories
from tests.conftest import eventually
from routing.patches import QueuePatch, WorkerPatch

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.postgres]


def offered_job(worker_id: str) -> str | None:
    offer = Offer.objects.filter(worker_id=worker_id, status=OfferStatus.OPEN).first()
    return offer.job_id if offer else None


def test_q1_customer_waits_in_queue_until_an_idle_agent_is_offered_the_job():
    factories.queue_with_policy("q1")
    factories.worker("agent", available=False)
    factories.queued_job("customer")
    assert offered_job("agent") is None
    worker_upsert(worker_id="agent", patch=WorkerPatch.from_wire({"availableForOffers": True}))
    assert offered_job("agent") == "customer"


def test_q2_many_agents_serve_one_queue():
    factories.queue_with_policy("q1")
    for name in ("a1", "a2", "a3"):
        factories.worker(name)
    for i in range(3):
        factories.queued_job(f"c{i}")
    assert sorted(offered_job(w) for w in ("a1", "a2", "a3")) == ["c0", "c1", "c2"]


def test_q3_agent_serving_two_queues_gets_the_higher_priority_queue_first_then_earliest():
    factories.queue_with_policy("low")
    factories.queue_with_policy("high")
    queue_upsert(queue_id="high", patch=QueuePatch.from_wire({"priority": 10}))
    for job_id, queue in (("low-early", "low"), ("high-late", "high"), ("high-later", "high")):
        factories.queued_job(job_id, queue=queue)
    factories.worker("agent", queues=("low", "high"), available=False)
    assert worker_request_job(worker_id="agent").job_id == "high-late"


def test_q4_at_peak_the_earliest_customer_is_served_when_an_agent_frees_up():
    factories.queue_with_policy("q1")
    factories.worker("agent", available=False)
    # Queued in this order; ids sort differently, so only enqueue time can explain the result.
    for job_id in ("z-first", "a-second", "m-third"):
        factories.queued_job(job_id)
    worker_upsert(worker_id="agent", patch=WorkerPatch.from_wire({"availableForOffers": True}))
    assert offered_job("agent") == "z-first"


def test_q5_waiting_customer_goes_to_the_idle_agent_with_the_higher_queue_priority():
    factories.queue_with_policy("q1")
    factories.worker("junior", available=True)
    factories.worker("senior", available=True)
    worker_upsert(worker_id="senior", patch=WorkerPatch.from_wire({"queuePriorities": {"q1": 9}}))
    worker_upsert(worker_id="junior", patch=WorkerPatch.from_wire({"queuePriorities": {"q1": 1}}))
    factories.queued_job("customer")
    assert offered_job("senior") == "customer" and offered_job("junior") is None


def test_q6_customer_queuing_page_requires_login():
    response = Client().get("/queue/")
    assert response.status_code == 302 and response["Location"].startswith("/accounts/login/")


def test_q9_queue_status_counts_serving_available_waiting_and_served():
    factories.queue_with_policy("q1")
    factories.worker("busy")
    factories.worker("dnd", available=False)
    factories.queued_job("served")
    # The owed match may be run by the session's live background worker (same database).
    offer = eventually(lambda: Offer.objects.filter(job_id="served").first())
    offer_accept(worker_id=offer.worker_id, offer_id=str(offer.pk))
    factories.queued_job("waiting")
    stats = queue_statistics("q1")
    assert (stats.serving_workers, stats.available_workers, stats.length, stats.assigned_jobs) == (2, 1, 1, 1)
