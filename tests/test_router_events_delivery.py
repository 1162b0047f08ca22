"""How router events are delivered, against the live server and a real webhook receiver:
Event Grid's validation handshake (success, refusal, validationUrl), retries on 5xx, no retry on
400, dead-lettering and redelivery, Standard Webhooks signatures, a receiver that is down for a
while, a slow receiver that does not hold up another, and per-job order."""

from __future__ import annotations

import time
from urllib.parse import urlparse

import pytest
import requests
from azure.communication.jobrouter.models import RouterJob
from standardwebhooks.webhooks import Webhook, WebhookVerificationError

from routing.models import DeliveryStatus, EventDelivery
from routing.services.subscriptions import deliveries_redeliver
from tests.conftest import eventually
from tests.event_receiver import EventReceiver, rest, subscribe
from tests.sdk import make_distribution_policy, make_queue

pytestmark = pytest.mark.postgres


def _state(client, subscription_id):
    return rest(client, "GET", f"/routing/eventSubscriptions/{subscription_id}").json()["provisioningState"]


def _subscribed(client, subscription_id, receiver, **fields):
    created = subscribe(client, subscription_id, receiver.url, **fields)
    eventually(lambda: _state(client, subscription_id) == "Succeeded")
    return created


def _jobs(admin, client, count, prefix="j"):
    make_distribution_policy(admin)
    make_queue(admin, "q-1")
    for i in range(count):
        client.upsert_job(f"{prefix}-{i}", RouterJob(channel_id="voice", queue_id="q-1"))


def test_an_endpoint_that_refuses_the_handshake_fails_and_gets_no_events(
    live_admin_client, live_client, http_endpoint
):
    receiver = EventReceiver(http_endpoint, validate=False)
    subscribe(live_client, "refused", receiver.url)
    eventually(lambda: _state(live_client, "refused") == "Failed")
    _jobs(live_admin_client, live_client, 1)
    time.sleep(0.5)  # what would have been delivered by now
    assert receiver.notifications == []
    # Fixed, the endpoint named again is validated again.
    receiver.validate = True
    subscribe(live_client, "refused", receiver.url)
    eventually(lambda: _state(live_client, "refused") == "Succeeded")


def test_an_endpoint_that_answers_without_the_code_is_validated_by_a_get_of_the_validation_url(
    router, live_admin_client, live_client, http_endpoint
):
    handshakes = []

    def manual(rec):
        if rec.headers.get("aeg-event-type") == "SubscriptionValidation":
            handshakes.append(rec.json()[0])
            return 200, {}
        return 200, b""

    http_endpoint.routes["/manual"] = manual
    subscribe(live_client, "manual", http_endpoint.url("/manual"))
    event = eventually(lambda: handshakes and handshakes[0])
    assert event["eventType"] == "Microsoft.EventGrid.SubscriptionValidationEvent"
    time.sleep(0.3)
    assert _state(live_client, "manual") == "AwaitingManualAction"

    url = urlparse(event["data"]["validationUrl"])
    wrong = requests.get(f"{router.endpoint}{url.path}?code=nope", timeout=5)
    assert wrong.status_code == 404
    assert requests.get(f"{router.endpoint}{url.path}?{url.query}", timeout=5).status_code == 200
    assert _state(live_client, "manual") == "Succeeded"


def test_a_receiver_answering_500_gets_the_event_again_about_10_seconds_later(
    live_admin_client, live_client, http_endpoint
):
    receiver = EventReceiver(http_endpoint, answers=[500])
    _subscribed(live_client, "retry", receiver, includedEventTypes=["Microsoft.Communication.RouterJobReceived"])
    _jobs(live_admin_client, live_client, 1)
    eventually(lambda: receiver.accepted, timeout=20)
    first, second = receiver.notifications[:2]
    assert second.body == first.body
    assert (first.headers["aeg-delivery-count"], second.headers["aeg-delivery-count"]) == ("0", "1")
    assert 10 * 0.8 - 0.5 <= second.at - first.at <= 10 * 1.2 + 1.5


def test_400_is_not_retried_the_event_is_dead_lettered_and_redelivered_on_request(
    live_admin_client, live_client, http_endpoint
):
    receiver = EventReceiver(http_endpoint, answers=[400])
    _subscribed(live_client, "dl", receiver, includedEventTypes=["Microsoft.Communication.RouterJobReceived"])
    _jobs(live_admin_client, live_client, 1)
    dead = eventually(lambda: EventDelivery.objects.filter(status=DeliveryStatus.DEAD_LETTERED).first())
    assert (dead.attempts, dead.dead_letter_reason, dead.last_outcome) == (1, "NoRetryStatus400", "HTTP 400")
    time.sleep(1)
    assert len(receiver.notifications) == 1

    assert deliveries_redeliver(delivery_ids=[dead.pk]) == 1
    eventually(lambda: receiver.accepted)
    assert receiver.accepted[0].body == receiver.notifications[0].body
    assert EventDelivery.objects.get(pk=dead.pk).status == DeliveryStatus.DELIVERED


def test_the_last_allowed_attempt_failing_dead_letters(live_admin_client, live_client, http_endpoint):
    receiver = EventReceiver(http_endpoint, answers=[503])
    _subscribed(live_client, "once", receiver, maxDeliveryAttempts=1,
                includedEventTypes=["Microsoft.Communication.RouterJobReceived"])
    _jobs(live_admin_client, live_client, 1)
    dead = eventually(lambda: EventDelivery.objects.filter(status=DeliveryStatus.DEAD_LETTERED).first())
    assert (dead.attempts, dead.dead_letter_reason) == (1, "MaxDeliveryAttemptsExceeded")


def test_every_delivery_is_signed_with_the_subscription_secret(live_admin_client, live_client, http_endpoint):
    receiver = EventReceiver(http_endpoint)
    secret = _subscribed(live_client, "signed", receiver)["signingSecret"]
    _jobs(live_admin_client, live_client, 2)
    eventually(lambda: len(receiver.accepted) >= 4)
    for rec in receiver.accepted:
        assert Webhook(secret).verify(rec.body, rec.headers)
    tampered = receiver.accepted[0].body.replace(b"j-0", b"j-9")
    with pytest.raises(WebhookVerificationError):
        Webhook(secret).verify(tampered, receiver.accepted[0].headers)


def test_a_receiver_down_for_a_while_gets_every_event_in_order_once_back(
    live_admin_client, live_client, http_endpoint
):
    receiver = EventReceiver(http_endpoint)
    _subscribed(live_client, "down", receiver)
    port = http_endpoint.port
    http_endpoint.stop()
    _jobs(live_admin_client, live_client, 3)
    eventually(lambda: EventDelivery.objects.filter(attempts__gte=1).exists())
    http_endpoint.start(port)
    expected = EventDelivery.objects.count()
    eventually(lambda: len(receiver.events()) >= expected, timeout=20)
    ids = [e["id"] for e in receiver.events()]
    assert len(set(ids)) == expected
    for job in ("j-0", "j-1", "j-2"):
        types = [e["eventType"].rsplit(".", 1)[1] for e in receiver.events() if e["data"].get("jobId") == job]
        assert types == ["RouterJobReceived", "RouterJobQueued"], types


def test_a_slow_receiver_does_not_hold_up_another_subscription(live_admin_client, live_client, http_endpoint):
    fast = EventReceiver(http_endpoint, path="/fast")
    slow = EventReceiver(http_endpoint, path="/slow")
    _subscribed(live_client, "fast", fast)
    _subscribed(live_client, "slow", slow)
    answer_slowly = slow.handle

    def sleepy(rec):
        if rec.method == "POST" and rec.headers.get("aeg-event-type") == "Notification":
            time.sleep(4)
        return answer_slowly(rec)

    http_endpoint.routes["/slow"] = sleepy
    started = time.monotonic()
    _jobs(live_admin_client, live_client, 1)
    eventually(lambda: len(fast.events()) >= 2, timeout=3)
    assert time.monotonic() - started < 3
    assert slow.accepted == []


def test_two_background_workers_send_each_event_once_and_in_order(
    router, live_admin_client, live_client, http_endpoint
):
    from tests.conftest import _stop

    second = router.start_worker()  # another `manage.py qcluster` on the same database
    try:
        receiver = EventReceiver(http_endpoint)
        _subscribed(live_client, "two", receiver)
        _jobs(live_admin_client, live_client, 6)
        expected = 12
        eventually(lambda: len(receiver.events()) >= expected, timeout=20)
        time.sleep(1.5)  # anything sent twice would have arrived by now
        ids = [e["id"] for e in receiver.events()]
        assert len(ids) == len(set(ids)) == expected
        for i in range(6):
            types = [e["eventType"].rsplit(".", 1)[1] for e in receiver.events() if e["data"].get("jobId") == f"j-{i}"]
            assert types == ["RouterJobReceived", "RouterJobQueued"]
    finally:
        _stop(second)
