"""Every one of the 22 Job Router event types, each produced by a real flow against the live
server (official SDK), received by a real webhook and parsed with
`azure.eventgrid.EventGridEvent.from_json`; the same flows to a CloudEvents subscription parsed
with the `cloudevents` library. Event names: azure.eventgrid.SystemEventNames."""

from __future__ import annotations

import json
from datetime import timedelta

import pytest
from azure.communication.jobrouter.models import (
    CancelExceptionAction,
    ClassificationPolicy,
    DistributionPolicy,
    ExceptionPolicy,
    ExceptionRule,
    LabelOperator,
    LongestIdleMode,
    QueueLengthExceptionTrigger,
    RouterJob,
    RouterQueue,
    RouterWorker,
    RouterWorkerSelector,
    SuspendMode,
)
from azure.eventgrid import EventGridEvent, SystemEventNames
from cloudevents.core.formats.json import JSONFormat

from routing import clock
from routing.models import Job, JobStatus
from tests.conftest import eventually
from tests.event_receiver import EventReceiver, rest, subscribe
from tests.sdk import add_worker

pytestmark = pytest.mark.postgres

ROUTER_TYPES = {m.value for m in SystemEventNames if ".Router" in m.value}


def _offer_to(client, worker_id, job_id):
    worker = eventually(lambda: (w := client.get_worker(worker_id)).offers and w)
    return next(o for o in worker.offers if o.job_id == job_id)


def _all_flows(admin, client):
    """Flows that between them make every Job Router transition once at least."""
    admin.upsert_distribution_policy("dp", DistributionPolicy(
        offer_expires_after_seconds=3600, mode=LongestIdleMode(min_concurrent_offers=1, max_concurrent_offers=1)))
    admin.upsert_distribution_policy("dp-short", DistributionPolicy(
        offer_expires_after_seconds=1, mode=LongestIdleMode(min_concurrent_offers=1, max_concurrent_offers=1)))
    for queue_id, policy in [("q-1", "dp"), ("q-2", "dp"), ("q-3", "dp"), ("q-exp", "dp-short"), ("q-none", "dp")]:
        admin.upsert_queue(queue_id, RouterQueue(distribution_policy_id=policy))
    # Offered, accepted, unassigned, offered and accepted again, completed, closed, deleted.
    add_worker(client, "w-1", queues=["q-1"])
    client.upsert_job("j-1", RouterJob(channel_id="voice", queue_id="q-1"))
    first = client.accept_job_offer(worker_id="w-1", offer_id=_offer_to(client, "w-1", "j-1").offer_id)
    client.unassign_job("j-1", first.assignment_id)
    second = client.accept_job_offer(worker_id="w-1", offer_id=_offer_to(client, "w-1", "j-1").offer_id)
    client.complete_job("j-1", second.assignment_id)
    client.close_job("j-1", second.assignment_id)
    client.delete_job("j-1")
    # Worker updated, deregistered, deleted.
    client.upsert_worker("w-1", RouterWorker(labels={"Skill": 3}))
    client.upsert_worker("w-1", RouterWorker(available_for_offers=False))
    client.delete_worker("w-1")
    # Declined; revoked by a cancel.
    add_worker(client, "w-2", queues=["q-2"])
    client.upsert_job("j-2", RouterJob(channel_id="voice", queue_id="q-2"))
    client.decline_job_offer(worker_id="w-2", offer_id=_offer_to(client, "w-2", "j-2").offer_id)
    add_worker(client, "w-3", queues=["q-3"])
    client.upsert_job("j-3", RouterJob(channel_id="voice", queue_id="q-3"))
    _offer_to(client, "w-3", "j-3")
    client.cancel_job("j-3")
    # Expired after 1 s.
    add_worker(client, "w-4", queues=["q-exp"])
    client.upsert_job("j-4", RouterJob(channel_id="voice", queue_id="q-exp"))
    # Classified; classification failed.
    admin.upsert_classification_policy("cp-ok", ClassificationPolicy(fallback_queue_id="q-none"))
    admin.upsert_classification_policy("cp-fail", ClassificationPolicy(name="no queue"))
    client.upsert_job("j-5", RouterJob(channel_id="voice", classification_policy_id="cp-ok"))
    client.upsert_job("j-6", RouterJob(channel_id="voice", classification_policy_id="cp-fail"))
    # Exception rule fires at once (queue length > 0) and cancels.
    admin.upsert_exception_policy("ep", ExceptionPolicy(exception_rules=[ExceptionRule(
        id="too-long", trigger=QueueLengthExceptionTrigger(threshold=0), actions=[CancelExceptionAction(note="x")])]))
    admin.upsert_queue("q-x", RouterQueue(distribution_policy_id="dp", exception_policy_id="ep"))
    client.upsert_job("j-7", RouterJob(channel_id="voice", queue_id="q-x"))
    # A requested selector that expires after 1 s; a suspended job.
    client.upsert_job("j-8", RouterJob(channel_id="voice", queue_id="q-none", requested_worker_selectors=[
        RouterWorkerSelector(key="Skill", label_operator=LabelOperator.EQUAL, value=9, expires_after_seconds=1)]))
    client.upsert_job("j-9", RouterJob(channel_id="voice", queue_id="q-none", matching_mode=SuspendMode()))
    # Scheduling fails: a job left in pendingSchedule by an older version, without the scheduleAt
    # it needs, is found by the background worker's sweeper and fails to schedule.
    stale = clock.now() - timedelta(seconds=30)
    Job.objects.create(pk="j-10", channel_id="voice", status=JobStatus.PENDING_SCHEDULE,
                       matching_mode={"kind": "scheduleAndSuspend"}, created_at=stale, updated_at=stale)


def test_every_router_event_type_reaches_an_event_grid_webhook(live_admin_client, live_client, http_endpoint):
    receiver = EventReceiver(http_endpoint)
    subscribe(live_client, "all", receiver.url, maxEventsPerBatch=5)
    eventually(lambda: rest(live_client, "GET", "/routing/eventSubscriptions/all").json()["provisioningState"]
               == "Succeeded")
    _all_flows(live_admin_client, live_client)

    eventually(lambda: set(receiver.types()) >= ROUTER_TYPES, timeout=20)
    assert len(ROUTER_TYPES) == 22
    for raw in receiver.events():
        event = EventGridEvent.from_json(json.dumps(raw))
        assert event.event_type in ROUTER_TYPES
        assert event.data_version == "1.0" and event.topic.startswith("/subscriptions/")
    by_type = {}
    for raw in receiver.events():
        by_type.setdefault(raw["eventType"].rsplit(".", 1)[1], []).append(raw)
    assert by_type["RouterJobClassified"][0]["subject"] == "job/j-5/channel/voice/queue/q-none"
    assert by_type["RouterJobClassified"][0]["data"]["queueDetails"]["id"] == "q-none"
    assert by_type["RouterJobExceptionTriggered"][0]["data"]["ruleKey"] == "too-long"
    assert by_type["RouterJobExceptionTriggered"][0]["subject"].endswith("/exceptionrule/too-long")
    assert by_type["RouterJobCancelled"][0]["subject"] == "job/j-3/channel/voice/disposition/Cancelled"
    assert by_type["RouterWorkerOfferRevoked"][0]["subject"] == "worker/w-3/job/j-3"
    assert by_type["RouterWorkerOfferExpired"][0]["data"]["workerId"] == "w-4"
    assert by_type["RouterJobReceived"][0]["data"]["jobStatus"] == "Created"
    assert by_type["RouterJobWaitingForActivation"][0]["data"]["unavailableForMatching"] is True
    assert by_type["RouterJobSchedulingFailed"][0]["data"]["failureReason"]
    expired = by_type["RouterJobWorkerSelectorsExpired"][0]["data"]["expiredRequestedWorkerSelectors"]
    assert expired[0]["key"] == "Skill" and expired[0]["state"] == "expired"
    # The swagger's wire name is `value` (`labelValue` is only the SDK's property name).
    assert expired[0]["value"] == 9 and expired[0]["labelOperator"] == "Equal" and "labelValue" not in expired[0]
    updated = [e["data"]["updatedWorkerProperties"] for e in by_type["RouterWorkerUpdated"]]
    assert ["Labels"] in updated and ["AvailableForOffers"] in updated
    assert by_type["RouterJobClosed"][0]["data"]["dispositionCode"] == "Closed"
    # Each batch held at most 5 events.
    assert all(len(json.loads(r.body)) <= 5 for r in receiver.accepted)


def test_cloud_events_subscription_gets_the_same_events_parsed_by_the_cloudevents_sdk(
    live_admin_client, live_client, http_endpoint
):
    receiver = EventReceiver(http_endpoint)
    subscribe(live_client, "ce", receiver.url, eventDeliverySchema="CloudEventSchemaV1_0")
    eventually(lambda: rest(live_client, "GET", "/routing/eventSubscriptions/ce").json()["provisioningState"]
               == "Succeeded")
    handshake = [r for r in http_endpoint.requests if r.method == "OPTIONS"]
    assert handshake and handshake[0].headers["webhook-request-origin"] == "eventgrid.azure.net"
    _all_flows(live_admin_client, live_client)

    eventually(lambda: set(receiver.types()) >= ROUTER_TYPES, timeout=20)
    assert {r.headers["content-type"] for r in receiver.accepted} == {"application/cloudevents-batch+json"}
    for raw in receiver.events():
        event = JSONFormat().read(None, json.dumps(raw))
        assert event.get_type() in ROUTER_TYPES
        assert event.get_source().startswith("/subscriptions/")
        assert isinstance(event.get_data(), dict)
