"""The in-process harness itself (tests/inprocess.py): requests really pass the HMAC check over
what the SDK signed, odd ids survive the trip, and the simulated clock runs each timer at its
due time without sleeping."""

from __future__ import annotations

import time
from datetime import timedelta

import pytest
from azure.communication.jobrouter import JobRouterClient
from azure.communication.jobrouter.models import DistributionPolicy, LongestIdleMode, RouterJob, RouterJobStatus, RouterQueue
from azure.core.credentials import AzureKeyCredential
from azure.core.exceptions import ClientAuthenticationError

from routing.models import Offer, OfferStatus
from tests.inprocess import ENDPOINT, DjangoTestClientTransport, eventually, holds_for
from tests.sdk import add_worker, offered_jobs


def setup_queue(admin_client, expires: float) -> None:
    admin_client.upsert_distribution_policy("dp", DistributionPolicy(offer_expires_after_seconds=expires, mode=LongestIdleMode()))
    admin_client.upsert_queue("q-1", RouterQueue(distribution_policy_id="dp"))


def test_a_client_with_another_key_is_refused_by_the_hmac_middleware(router_clock):
    stranger = JobRouterClient(
        ENDPOINT, AzureKeyCredential("c29tZSBvdGhlciBrZXk="), retry_total=0, transport=DjangoTestClientTransport()
    )
    with pytest.raises(ClientAuthenticationError) as err:
        stranger.get_queue_statistics("q-1")
    assert err.value.status_code == 401


def test_ids_with_colons_and_spaces_round_trip(admin_client, client):
    admin_client.upsert_distribution_policy("dp:1", DistributionPolicy(offer_expires_after_seconds=60, mode=LongestIdleMode()))
    admin_client.upsert_queue("q 1", RouterQueue(distribution_policy_id="dp:1"))
    job = client.upsert_job("j:1 x", RouterJob(channel_id="voice", queue_id="q 1"))
    assert (job.id, job.queue_id) == ("j:1 x", "q 1")
    assert client.get_job("j:1 x").status == RouterJobStatus.QUEUED  # after-commit queueing ran
    client.cancel_job("j:1 x")
    assert client.get_job("j:1 x").status == RouterJobStatus.CANCELLED


def test_advancing_the_clock_runs_a_timer_at_its_due_time_and_not_before(admin_client, client, router_clock):
    setup_queue(admin_client, expires=30)
    add_worker(client, "w-1")
    client.upsert_job("j-1", RouterJob(channel_id="voice", queue_id="q-1"))
    offer = Offer.objects.get(job_id="j-1")
    router_clock.advance_to(offer.expires_at - timedelta(milliseconds=5))
    assert Offer.objects.get(pk=offer.pk).status == OfferStatus.OPEN
    router_clock.advance(0.005)
    assert Offer.objects.get(pk=offer.pk).status == OfferStatus.EXPIRED
    assert Offer.objects.get(pk=offer.pk).expires_at <= router_clock.now()


def test_eventually_gives_up_after_its_simulated_timeout_without_sleeping(router_clock):
    started, simulated = time.monotonic(), router_clock.now()
    with pytest.raises(AssertionError, match="within 30"):
        eventually(lambda: False, timeout=30)
    assert router_clock.now() - simulated >= timedelta(seconds=30)
    assert time.monotonic() - started < 5


def test_holds_for_notices_a_timer_that_changes_the_state(admin_client, client):
    setup_queue(admin_client, expires=1)
    add_worker(client, "w-1")
    client.upsert_job("j-1", RouterJob(channel_id="voice", queue_id="q-1"))
    assert offered_jobs(client, "w-1") == ["j-1"]
    with pytest.raises(AssertionError, match="stopped holding"):
        holds_for(lambda: offered_jobs(client, "w-1") == ["j-1"], 2)


def test_a_timer_that_keeps_failing_does_not_stall_the_clock(router_clock):
    # As in the loop, a broken timer stays pending and is retried; moving the clock must still
    # reach its target and `eventually` still give up at its deadline.
    from routing.models import RouterTimer

    RouterTimer.objects.create(kind="noSuchKind", target_id="x", due_at=router_clock.now())
    target = router_clock.now() + timedelta(seconds=5)
    router_clock.advance_to(target)
    assert router_clock.now() >= target
    with pytest.raises(AssertionError, match="within 5"):
        eventually(lambda: False, timeout=5)
    assert RouterTimer.objects.get(kind="noSuchKind").fired_at is None
