"""The official SDK (azure-communication-jobrouter 1.0.0) against the live server: a real daphne
process and a real background worker (`manage.py qcluster`, timer loop and django-q cluster).

The behaviour tests run in-process (tests/inprocess.py); these are the ones whose subject is the
processes themselves: concurrent requests on the real socket, work that survives the background
worker being down, and classifications that overlap in separate cluster processes. They moved
here from test_api_workers, test_api_classification and test_api_exceptions, their assertions
unchanged (set-up helpers inlined where those modules' helpers are in-process)."""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timedelta, timezone

import pytest
from azure.communication.jobrouter.models import (
    CancelExceptionAction,
    DistributionPolicy,
    ExceptionPolicy,
    ExceptionRule,
    LongestIdleMode,
    RouterJob,
    RouterJobStatus,
    RouterQueue,
    RuleEngineQueueSelectorAttachment,
    WaitTimeExceptionTrigger,
)
from azure.core.exceptions import HttpResponseError

from tests.conftest import eventually
from tests.remote_endpoint import function_rule, oauth_routes
from tests.sdk import (
    add_worker,
    holds_for,
    job_in_policy,
    policy,
    region_queues,
)

CHANNEL = "voice"


@pytest.fixture
def client(live_client):
    return live_client


@pytest.fixture
def admin_client(live_admin_client):
    return live_admin_client


# --- helpers (the live-server counterparts of those in the in-process modules) -------------------




@pytest.fixture
def queues(admin_client):
    """dp-1 and three queues: q-eu (Region EU, Tier 1), q-us (Region US, Tier 2), q-fallback."""
    return region_queues(admin_client)






def queued(client, job_id, timeout=10.0):
    """The job once classification is over; it must have been queued."""
    job = eventually(
        lambda: (j := client.get_job(job_id)).status in (RouterJobStatus.QUEUED, RouterJobStatus.CLASSIFICATION_FAILED)
        and j,
        timeout=timeout,
    )
    assert job.status == RouterJobStatus.QUEUED, (job.status, job.get("classificationError"))
    return job


def offers_for(client, worker_id, job_id):
    return [o for o in client.get_worker(worker_id).offers if o.job_id == job_id]


def holders(client, job_id, worker_ids) -> set[str]:
    return {w for w in worker_ids if offers_for(client, w, job_id)}


def triggers(job) -> list[dict]:
    return list(job.get("exceptionTriggers") or [])


def parse(value: str) -> datetime:
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


# --- concurrent requests on the socket (from test_api_workers) -----------------------------------


def test_concurrent_accepts_of_one_job_have_exactly_one_winner(admin_client, client):
    admin_client.upsert_distribution_policy(
        "dp-1", DistributionPolicy(offer_expires_after_seconds=600, mode=LongestIdleMode(max_concurrent_offers=4))
    )
    admin_client.upsert_queue("q-1", RouterQueue(distribution_policy_id="dp-1"))
    workers = ["w-1", "w-2", "w-3", "w-4"]
    for wid in workers:
        add_worker(client, wid)
    client.upsert_job("j-1", RouterJob(channel_id=CHANNEL, queue_id="q-1", priority=1))
    eventually(lambda: len(holders(client, "j-1", workers)) == 4)
    offers = {w: offers_for(client, w, "j-1")[0].offer_id for w in workers}

    def accept(wid):
        try:
            return client.accept_job_offer(wid, offers[wid]).worker_id
        except HttpResponseError as exc:
            return exc.status_code

    with ThreadPoolExecutor(4) as pool:
        results = list(pool.map(accept, workers))
    winners = [r for r in results if isinstance(r, str)]
    assert len(winners) == 1, results
    assert all(r in (404, 409) for r in results if not isinstance(r, str)), results
    job = client.get_job("j-1")
    assert job.status == RouterJobStatus.ASSIGNED
    assert [a.worker_id for a in job.assignments.values()] == winners


# --- the background worker process (from test_api_classification) --------------------------------


def test_webhook_token_is_fetched_once_for_two_classifications(admin_client, client, queues, http_endpoint):
    # The first webhook call is slow, so the second classification overlaps it and is run by
    # another background process (Q_CLUSTER workers=2): the cache must be shared between
    # processes. The token was cached before the first webhook call began.
    rule = oauth_routes(http_endpoint, hook_delay=1.5)
    policy(admin_client, "cp", queue_selector_attachments=[RuleEngineQueueSelectorAttachment(rule=rule)])
    job_in_policy(client, "j1", "cp", {"Region": "US"})
    eventually(lambda: len(http_endpoint.calls("/hook")) == 1)
    job_in_policy(client, "j2", "cp", {"Region": "EU"})
    assert queued(client, "j1").queue_id == "q-us"
    assert queued(client, "j2").queue_id == "q-eu"
    assert all(h.headers["authorization"] == "Bearer tok-1" for h in http_endpoint.calls("/hook"))
    assert len(http_endpoint.calls("/oauth/token")) == 1, "the token must be cached between classifications"


def test_function_classification_requested_while_background_worker_is_down_runs_after_restart(
    admin_client, client, queues, http_endpoint, router
):
    http_endpoint.routes["/prio"] = lambda rec: (200, 6)
    policy(admin_client, "cp", fallback_queue_id="q-eu", prioritization_rule=function_rule(http_endpoint, "/prio"))
    router.stop_worker()
    try:
        assert job_in_policy(client, "j1", "cp").status == RouterJobStatus.PENDING_CLASSIFICATION
        assert client.get_job("j1").status == RouterJobStatus.PENDING_CLASSIFICATION
    finally:
        router.worker = router.start_worker()
    job = queued(client, "j1", timeout=20)
    assert (job.queue_id, job.priority) == ("q-eu", 6)
    assert len(http_endpoint.calls("/prio")) == 1


def test_label_change_during_a_slow_classification_wins_over_the_stale_outcome(admin_client, client, queues, http_endpoint):
    def slow_region(rec):
        time.sleep(1.0)
        return 200, [{"key": "Region", "labelOperator": "equal", "value": rec.json()["job"]["Region"]}]

    http_endpoint.routes["/region"] = slow_region
    policy(
        admin_client,
        "cp",
        queue_selector_attachments=[RuleEngineQueueSelectorAttachment(rule=function_rule(http_endpoint, "/region"))],
    )
    job_in_policy(client, "j1", "cp", {"Region": "EU"})
    eventually(lambda: len(http_endpoint.calls("/region")) == 1)  # the first classification is in flight
    assert client.upsert_job("j1", labels={"Region": "US"}).status == RouterJobStatus.PENDING_CLASSIFICATION
    eventually(lambda: len(http_endpoint.calls("/region")) == 2, timeout=10)
    job = queued(client, "j1")
    assert job.queue_id == "q-us"
    holds_for_seconds = 1.2  # the stale EU outcome, had it been applied late, would show by now
    deadline = time.monotonic() + holds_for_seconds
    while time.monotonic() < deadline:
        assert client.get_job("j1").queue_id == "q-us"
        time.sleep(0.1)
    assert [c.json()["job"]["Region"] for c in http_endpoint.calls("/region")] == ["EU", "US"]


# --- timers across a background worker restart (from test_api_exceptions) ------------------------


def test_wait_time_rule_due_while_the_background_worker_is_down_fires_promptly_after_restart(admin_client, client, router):
    admin_client.upsert_distribution_policy(
        "dp-1", DistributionPolicy(offer_expires_after_seconds=600, mode=LongestIdleMode())
    )
    admin_client.upsert_exception_policy("ep", ExceptionPolicy(exception_rules=[ExceptionRule(
        id="late", trigger=WaitTimeExceptionTrigger(threshold_seconds=2),
        actions=[CancelExceptionAction(disposition_code="WaitedTooLong")])]))
    admin_client.upsert_queue("q-1", RouterQueue(distribution_policy_id="dp-1", exception_policy_id="ep"))
    router.stop_worker()
    try:
        client.upsert_job("j1", RouterJob(channel_id=CHANNEL, queue_id="q-1"))
        job = eventually(lambda: (j := client.get_job("j1")).status != RouterJobStatus.CREATED and j)
        assert job.status == RouterJobStatus.QUEUED
        due = job.enqueued_at + timedelta(seconds=2)
        # Past the due time with no background worker: nothing fires.
        holds_for(lambda: client.get_job("j1").status == RouterJobStatus.QUEUED, 2.5)
        assert datetime.now(timezone.utc) > due
        assert triggers(client.get_job("j1")) == []
    finally:
        router.worker = router.start_worker()
    restarted = time.monotonic()
    job = eventually(lambda: (j := client.get_job("j1")).status == RouterJobStatus.CANCELLED and j, timeout=20)
    # Process start-up (Django, django-q) included.
    assert time.monotonic() - restarted < 10
    assert job.disposition_code == "WaitedTooLong"
    assert [t["ruleId"] for t in triggers(job)] == ["late"]
    assert parse(triggers(job)[0]["firedAt"]) >= due
