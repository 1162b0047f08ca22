"""Event subscriptions over REST (PATCH upsert 201/200, GET, paged list, DELETE 204; Event Grid
field names, bounds and defaults), the outbox (an event per committed transition, none for a
refused one), subscription filters, Event Grid's retry schedule and event retention. In-process,
on the router clock."""

from __future__ import annotations

import random
from datetime import timedelta

import pytest
from azure.communication.jobrouter.models import RouterJob

from routing.models import DeliveryStatus, EventDelivery, ProvisioningState, PublishedEvent
from routing.services.delivery import prune_events, retry_delay
from routing.services.events import selects
from routing.services.subscriptions import event_subscription_validate
from tests.inprocess import signed_request
from tests.sdk import add_worker, make_distribution_policy, make_queue

API = "?api-version=2023-11-01"
URL = "https://hooks.example.com/events"


def _patch(access_key, sub_id, body):
    return signed_request("PATCH", f"/routing/eventSubscriptions/{sub_id}{API}", access_key, body)


def test_patch_creates_with_event_grid_defaults_and_shows_the_secret_once(router_clock, access_key):
    created = _patch(access_key, "s-1", {"endpointUrl": URL})
    assert created.status_code == 201
    body = created.json()
    assert body["signingSecret"].startswith("whsec_")
    assert {k: body[k] for k in body if k not in ("etag", "signingSecret")} == {
        "id": "s-1", "endpointUrl": URL, "eventDeliverySchema": "EventGridSchema", "includedEventTypes": [],
        "subjectBeginsWith": "", "subjectEndsWith": "", "maxDeliveryAttempts": 30, "eventTimeToLiveInMinutes": 1440,
        "maxEventsPerBatch": 1, "deadLetterEnabled": True, "provisioningState": "AwaitingManualAction",
    }
    updated = _patch(access_key, "s-1", {"maxEventsPerBatch": 10, "includedEventTypes": [
        "Microsoft.Communication.RouterJobQueued"]})
    assert updated.status_code == 200
    assert "signingSecret" not in updated.json()
    assert updated.json()["maxEventsPerBatch"] == 10
    got = signed_request("GET", f"/routing/eventSubscriptions/s-1{API}", access_key)
    assert got.status_code == 200 and got.json()["includedEventTypes"] == ["Microsoft.Communication.RouterJobQueued"]
    assert "signingSecret" not in got.json()
    assert _patch(access_key, "s-1", {"maxEventsPerBatch": None}).json()["maxEventsPerBatch"] == 1


def test_list_is_paged_and_delete_answers_204(router_clock, access_key):
    for i in range(3):
        _patch(access_key, f"s-{i}", {"endpointUrl": URL})
    page = signed_request("GET", f"/routing/eventSubscriptions{API}&maxpagesize=2", access_key).json()
    assert [s["id"] for s in page["value"]] == ["s-0", "s-1"]
    rest = signed_request("GET", page["nextLink"] + "&" + API[1:], access_key).json()
    assert [s["id"] for s in rest["value"]] == ["s-2"] and "nextLink" not in rest
    assert signed_request("DELETE", f"/routing/eventSubscriptions/s-0{API}", access_key).status_code == 204
    assert signed_request("GET", f"/routing/eventSubscriptions/s-0{API}", access_key).status_code == 404
    assert signed_request("DELETE", f"/routing/eventSubscriptions/s-0{API}", access_key).status_code == 404


@pytest.mark.parametrize("body, target", [
    ({}, "endpointUrl"),
    ({"endpointUrl": "ftp://x"}, "endpointUrl"),
    ({"endpointUrl": URL, "maxDeliveryAttempts": 0}, "maxDeliveryAttempts"),
    ({"endpointUrl": URL, "maxDeliveryAttempts": 31}, "maxDeliveryAttempts"),
    ({"endpointUrl": URL, "eventTimeToLiveInMinutes": 1441}, "eventTimeToLiveInMinutes"),
    ({"endpointUrl": URL, "maxEventsPerBatch": 5001}, "maxEventsPerBatch"),
    ({"endpointUrl": URL, "eventDeliverySchema": "CustomInputSchema"}, "eventDeliverySchema"),
    ({"endpointUrl": URL, "includedEventTypes": ["Microsoft.Storage.BlobCreated"]}, "includedEventTypes[0]"),
    ({"endpointUrl": URL, "deadLetterEnabled": "yes"}, "deadLetterEnabled"),
])
def test_bad_input_is_a_400_naming_the_field(router_clock, access_key, body, target):
    response = _patch(access_key, "bad", body)
    assert response.status_code == 400
    assert response.json()["error"]["target"] == target


def test_plain_http_endpoints_are_refused_unless_allowed(router_clock, access_key, settings):
    settings.JOBROUTER_ALLOW_HTTP_WEBHOOKS = False
    refused = _patch(access_key, "h", {"endpointUrl": "http://hooks.example.com/"})
    assert refused.status_code == 400 and "JOBROUTER_ALLOW_HTTP_WEBHOOKS" in refused.json()["error"]["message"]
    settings.JOBROUTER_ALLOW_HTTP_WEBHOOKS = True
    assert _patch(access_key, "h", {"endpointUrl": "http://hooks.example.com/"}).status_code == 201


def test_a_new_endpoint_must_be_validated_again(router_clock, access_key):
    _patch(access_key, "v", {"endpointUrl": URL})
    from routing.models import EventSubscription

    code = EventSubscription.objects.get(pk="v").validation_code
    assert event_subscription_validate(subscription_id="v", code=code)
    assert _patch(access_key, "v", {"maxEventsPerBatch": 2}).json()["provisioningState"] == "Succeeded"
    again = _patch(access_key, "v", {"endpointUrl": URL + "/new"}).json()
    assert again["provisioningState"] == "AwaitingManualAction"
    assert EventSubscription.objects.get(pk="v").validation_code != code


def _validated(access_key, sub_id, **fields):
    from routing.models import EventSubscription

    _patch(access_key, sub_id, {"endpointUrl": URL, **fields})
    assert event_subscription_validate(
        subscription_id=sub_id, code=EventSubscription.objects.get(pk=sub_id).validation_code)


def test_filters_select_by_type_and_subject(router_clock, access_key, admin_client, client):
    _validated(access_key, "all")
    _validated(access_key, "queued", includedEventTypes=["Microsoft.Communication.RouterJobQueued"])
    _validated(access_key, "worker-w1", subjectBeginsWith="worker/w-1")
    _validated(access_key, "j2-channel", subjectEndsWith="/channel/voice", subjectBeginsWith="job/j-2/")
    make_distribution_policy(admin_client)
    make_queue(admin_client, "q-1")
    add_worker(client, "w-1", queues=["q-1"])
    client.upsert_job("j-2", RouterJob(channel_id="voice", queue_id="q-1"))

    def types(sub_id):
        return [d.event.event_type.rsplit(".", 1)[1] for d in
                EventDelivery.objects.filter(subscription_id=sub_id).select_related("event").order_by("pk")]

    assert types("all") == ["RouterWorkerRegistered", "RouterJobReceived", "RouterJobQueued", "RouterWorkerOfferIssued"]
    assert types("queued") == ["RouterJobQueued"]
    assert types("worker-w1") == ["RouterWorkerRegistered", "RouterWorkerOfferIssued"]
    assert types("j2-channel") == ["RouterJobReceived"]
    assert selects(event_type="X", subject="Job/A", included_event_types=[], begins_with="job/a", ends_with="A")


def test_an_event_exists_only_for_a_committed_transition_and_once(router_clock, access_key, admin_client, client):
    make_distribution_policy(admin_client)
    make_queue(admin_client, "q-1")
    client.upsert_job("j-1", RouterJob(channel_id="voice", queue_id="q-1"))
    client.upsert_job("j-1", RouterJob(priority=5))  # no transition, no event
    refused = signed_request("POST", f"/routing/jobs/j-1/assignments/nope:complete{API}", access_key, {})
    assert refused.status_code == 404
    assert signed_request("POST", f"/routing/jobs/j-1:cancel{API}", access_key, {}).status_code == 200
    assert signed_request("POST", f"/routing/jobs/j-1:cancel{API}", access_key, {}).status_code == 409
    assert list(PublishedEvent.objects.filter(job_id="j-1").order_by("seq").values_list("event_type", flat=True)) == [
        "Microsoft.Communication.RouterJobReceived", "Microsoft.Communication.RouterJobQueued",
        "Microsoft.Communication.RouterJobCancelled",
    ]


def test_retry_schedule_is_event_grids_with_jitter():
    middle = [retry_delay(n, lambda: 0.5).total_seconds() for n in range(1, 13)]
    assert middle == [10, 30, 60, 300, 600, 1800, 3600, 10800, 21600, 43200, 43200, 43200]
    rng = random.Random(1).random
    assert all(8 <= retry_delay(1, rng).total_seconds() <= 12 for _ in range(100))


def test_events_older_than_the_retention_are_pruned(router_clock, access_key, admin_client, client, settings):
    settings.JOBROUTER_EVENT_RETENTION_DAYS = 30
    _validated(access_key, "all")
    make_distribution_policy(admin_client)
    make_queue(admin_client, "q-1")
    client.upsert_job("j-1", RouterJob(channel_id="voice", queue_id="q-1"))
    kept = PublishedEvent.objects.count()
    assert kept and prune_events(now=router_clock.now() + timedelta(days=29)) == 0
    assert prune_events(now=router_clock.now() + timedelta(days=31)) == kept
    assert not PublishedEvent.objects.exists() and not EventDelivery.objects.exists()
    assert ProvisioningState.SUCCEEDED and DeliveryStatus.PENDING


@pytest.mark.parametrize("dead_letter, status", [(True, DeliveryStatus.DEAD_LETTERED), (False, DeliveryStatus.DROPPED)])
def test_events_past_their_time_to_live_give_up_without_a_post(
    router_clock, access_key, admin_client, client, http_endpoint, dead_letter, status
):
    from tests.event_receiver import EventReceiver

    receiver = EventReceiver(http_endpoint)
    _patch(access_key, "ttl", {"endpointUrl": receiver.url, "eventTimeToLiveInMinutes": 1,
                               "deadLetterEnabled": dead_letter})
    from routing.models import EventSubscription
    from routing.services.delivery import serve_subscription

    assert event_subscription_validate(subscription_id="ttl", code=EventSubscription.objects.get(pk="ttl").validation_code)
    make_distribution_policy(admin_client)
    make_queue(admin_client, "q-1")
    client.upsert_job("j-1", RouterJob(channel_id="voice", queue_id="q-1"))
    router_clock.advance(61)
    serve_subscription("ttl")
    assert receiver.notifications == []
    assert set(EventDelivery.objects.values_list("status", "dead_letter_reason")) == {(status, "TimeToLiveExceeded")}
