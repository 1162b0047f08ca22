"""Router events end to end: a live server (daphne + background worker), the official SDK, and a
real webhook receiver in the test process (tests/event_receiver.py). Each event is parsed with
azure.eventgrid (Event Grid schema) or the `cloudevents` library (CloudEvents 1.0)."""

from __future__ import annotations

import json

import pytest
from azure.eventgrid import EventGridEvent, SystemEventNames
from standardwebhooks.webhooks import Webhook

from tests.conftest import eventually
from tests.event_receiver import EventReceiver, rest, subscribe
from tests.test_seed_000_flow import _seed_setup

pytestmark = pytest.mark.postgres

OFFER_ISSUED = SystemEventNames.AcsRouterWorkerOfferIssuedEventName.value if hasattr(
    SystemEventNames, "AcsRouterWorkerOfferIssuedEventName") else "Microsoft.Communication.RouterWorkerOfferIssued"


def _succeeded(client, subscription_id):
    return rest(client, "GET", f"/routing/eventSubscriptions/{subscription_id}").json()["provisioningState"] == "Succeeded"


def test_seed_000_flow_takes_the_offer_id_from_the_received_offer_issued_event(
    live_admin_client, live_client, http_endpoint
):
    receiver = EventReceiver(http_endpoint)
    created = subscribe(live_client, "sub-1", receiver.url)
    assert created["provisioningState"] == "AwaitingManualAction"
    assert created["signingSecret"].startswith("whsec_")
    eventually(lambda: _succeeded(live_client, "sub-1"))
    assert "signingSecret" not in rest(live_client, "GET", "/routing/eventSubscriptions/sub-1").json()

    _seed_setup(live_admin_client, live_client)
    issued = eventually(lambda: [e for e in receiver.events() if e["eventType"].endswith("RouterWorkerOfferIssued")])
    event = EventGridEvent.from_json(json.dumps(issued[0]))
    assert event.event_type == OFFER_ISSUED
    assert event.subject == "worker/worker-1/job/jobId-1"
    offer_id = event.data["offerId"]

    accepted = live_client.accept_job_offer(worker_id="worker-1", offer_id=offer_id)
    live_client.complete_job("jobId-1", accepted.assignment_id)
    live_client.close_job("jobId-1", accepted.assignment_id)
    eventually(lambda: "Microsoft.Communication.RouterJobClosed" in receiver.types())
    job_types = [e["eventType"].rsplit(".", 1)[1] for e in receiver.events() if e["data"].get("jobId") == "jobId-1"]
    assert job_types == [
        "RouterJobReceived", "RouterJobQueued", "RouterWorkerOfferIssued", "RouterWorkerOfferAccepted",
        "RouterJobCompleted", "RouterJobClosed",
    ]
    first = receiver.accepted[0]
    assert first.headers["aeg-event-type"] == "Notification"
    assert first.headers["aeg-delivery-count"] == "0"
    assert first.headers["aeg-subscription-name"] == "SUB-1"
    assert Webhook(created["signingSecret"]).verify(first.body, first.headers)
