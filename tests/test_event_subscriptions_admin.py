"""Event subscriptions in the supervisor's admin and from `manage.py eventsubscription`, both
through `event_subscription_upsert`; the "send test event" action, delivery health, dead-letter
list and redelivery, and the job and worker timelines."""

from __future__ import annotations

import io

import pytest
from azure.communication.jobrouter.models import RouterJob
from django.core.management import CommandError, call_command

from routing.models import DeliveryStatus, EventDelivery, EventSubscription, PublishedEvent
from routing.services.subscriptions import TEST_EVENT_TYPE, event_subscription_validate
from tests.personas import logged_in
from tests.sdk import add_worker, make_distribution_policy, make_queue

URL = "https://hooks.example.com/events"


@pytest.fixture
def browser(supervisor):
    return logged_in(supervisor)


def _validate(sub_id):
    assert event_subscription_validate(subscription_id=sub_id, code=EventSubscription.objects.get(pk=sub_id).validation_code)


def test_command_creates_and_updates_through_the_domain(router_clock):
    out = io.StringIO()
    call_command("eventsubscription", "ops", "--url", URL, "--type", "RouterWorkerOfferIssued",
                 "--type", "Microsoft.Communication.RouterJobClosed", "--schema", "cloudevents", stdout=out)
    assert "whsec_" in out.getvalue() and "created" in out.getvalue()
    sub = EventSubscription.objects.get(pk="ops")
    assert sub.included_event_types == ["Microsoft.Communication.RouterWorkerOfferIssued",
                                        "Microsoft.Communication.RouterJobClosed"]
    assert sub.delivery_schema == "CloudEventSchemaV1_0"
    out = io.StringIO()
    call_command("eventsubscription", "ops", "--url", URL + "/2", stdout=out)
    assert "whsec_" not in out.getvalue() and "updated" in out.getvalue()
    with pytest.raises(CommandError, match="not a Job Router event type"):
        call_command("eventsubscription", "ops", "--url", URL, "--type", "Nope", stdout=io.StringIO())


def test_admin_creates_a_subscription_shows_the_secret_once_and_sends_a_test_event(router_clock, browser):
    response = browser.post("/admin/routing/eventsubscription/add/", {
        "id": "adm", "endpoint_url": URL, "delivery_schema": "EventGridSchema", "included_event_types": "[]",
        "subject_begins_with": "", "subject_ends_with": "", "max_delivery_attempts": "30",
        "event_ttl_minutes": "1440", "max_events_per_batch": "1", "dead_letter_enabled": "on",
    }, follow=True)
    assert response.status_code == 200
    sub = EventSubscription.objects.get(pk="adm")
    assert sub.signing_secret in response.content.decode()
    assert sub.signing_secret not in browser.get("/admin/routing/eventsubscription/adm/change/").content.decode()
    refused = browser.post("/admin/routing/eventsubscription/", {"action": "send_test_event",
                                                                 "_selected_action": ["adm"]}, follow=True)
    assert "validate it first" in refused.content.decode()
    _validate("adm")
    browser.post("/admin/routing/eventsubscription/", {"action": "send_test_event", "_selected_action": ["adm"]})
    assert EventDelivery.objects.get(subscription_id="adm").event.event_type == TEST_EVENT_TYPE
    assert "healthy: 1 pending (0 retrying), 0 dead-lettered" in browser.get(
        "/admin/routing/eventsubscription/").content.decode()


def test_admin_refuses_bad_input_with_the_api_message(router_clock, browser):
    response = browser.post("/admin/routing/eventsubscription/add/", {
        "id": "bad", "endpoint_url": URL, "delivery_schema": "EventGridSchema", "included_event_types": '["x"]',
        "max_delivery_attempts": "31", "event_ttl_minutes": "1440", "max_events_per_batch": "1",
    })
    assert response.status_code == 200 and "is not a Job Router event type" in response.content.decode()
    assert not EventSubscription.objects.filter(pk="bad").exists()


def test_dead_lettered_deliveries_are_listed_and_redelivered_from_the_admin(router_clock, browser, admin_client, client):
    call_command("eventsubscription", "dl", "--url", URL, stdout=io.StringIO())
    _validate("dl")
    make_distribution_policy(admin_client)
    make_queue(admin_client, "q-1")
    client.upsert_job("j-1", RouterJob(channel_id="voice", queue_id="q-1"))
    delivery = EventDelivery.objects.order_by("pk").first()
    # What the delivery loop stores when an endpoint answers 400 (tests/test_router_events_delivery.py).
    EventDelivery.objects.filter(pk=delivery.pk).update(
        status=DeliveryStatus.DEAD_LETTERED, attempts=1, dead_letter_reason="NoRetryStatus400", last_outcome="HTTP 400")
    listing = browser.get("/admin/routing/eventdelivery/", {"status__exact": "deadLettered"}).content.decode()
    assert "NoRetryStatus400" in listing and "RouterJobReceived" in listing
    browser.post("/admin/routing/eventdelivery/", {"action": "redeliver", "_selected_action": [str(delivery.pk)]})
    delivery.refresh_from_db()
    assert (delivery.status, delivery.attempts, delivery.dead_letter_reason) == (DeliveryStatus.PENDING, 0, "")


def test_job_and_worker_pages_show_a_readable_timeline(router_clock, browser, admin_client, client):
    make_distribution_policy(admin_client)
    make_queue(admin_client, "q-1")
    add_worker(client, "ana", queues=["q-1"])
    client.upsert_job("call-1", RouterJob(channel_id="voice", queue_id="q-1"))
    offer = client.get_worker("ana").offers[0]
    client.decline_job_offer(worker_id="ana", offer_id=offer.offer_id)
    page = browser.get("/admin/routing/job/call-1/change/").content.decode()
    start = page.index("field-timeline")
    timeline = page[start:page.index("</div>\n", page.index("readonly", start))]
    entries = [line.split("</div>")[0] for line in timeline.split('class="timeline-entry">')[1:]]
    texts = [e.split(" ", 1)[1] for e in entries]
    assert texts[:4] == ["received (Created, priority 1)", "queued in q-1", "call-1 offered to ana (expires "
                         + PublishedEvent.objects.get(event_type__endswith="OfferIssued").data["expiresOn"][11:19] + ")",
                         "call-1 declined by ana"]
    worker_page = browser.get("/admin/routing/worker/ana/change/").content.decode()
    assert "ana registered" in worker_page and "call-1 declined by ana" in worker_page
