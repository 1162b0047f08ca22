"""Scheduled and suspended jobs, worker selector expiry and expedite, through the official SDK
(azure-communication-jobrouter 1.0.0) against the in-process app (ACS 2023-11-01 §4.1, §4.6,
§4.7, §4.9). Schedules and expiries fall due on the simulated clock (tests/inprocess.py)."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

from azure.communication.jobrouter.models import (
    ClassificationPolicy,
    DistributionPolicy,
    LabelOperator,
    LongestIdleMode,
    QueueAndMatchMode,
    RouterJob,
    RouterJobStatus,
    RouterQueue,
    RouterWorkerSelector,
    RouterWorkerSelectorStatus,
    ScheduleAndSuspendMode,
    StaticQueueSelectorAttachment,
    StaticRouterRule,
    RouterQueueSelector,
    SuspendMode,
)

from tests.inprocess import eventually, holds_for
from tests.sdk import add_worker, offered_jobs

CHANNEL = "voice"


# --- helpers -------------------------------------------------------------------------------------


def setup_queue(admin_client, queue_id="q-1", max_offers=1):
    admin_client.upsert_distribution_policy(
        "dp-1",
        DistributionPolicy(
            offer_expires_after_seconds=600,
            mode=LongestIdleMode(min_concurrent_offers=1, max_concurrent_offers=max_offers),
        ),
    )
    admin_client.upsert_queue(queue_id, RouterQueue(distribution_policy_id="dp-1"))








def status_of(client, job_id):
    return client.get_job(job_id).status


def scheduled_job(client, job_id, schedule_at, queue_id="q-1", **kwargs):
    return client.upsert_job(
        job_id,
        RouterJob(channel_id=CHANNEL, queue_id=queue_id, matching_mode=ScheduleAndSuspendMode(schedule_at=schedule_at), **kwargs),
    )


# --- scheduleAndSuspend --------------------------------------------------------------------------


def test_scheduled_job_goes_pending_schedule_scheduled_then_waiting_for_activation_at_schedule_at(admin_client, client):
    setup_queue(admin_client)
    add_worker(client, "w1")
    schedule_at = datetime.now(timezone.utc).replace(microsecond=0) + timedelta(seconds=3)

    job = scheduled_job(client, "j1", schedule_at, priority=1)
    assert job.status == RouterJobStatus.PENDING_SCHEDULE
    assert isinstance(job.matching_mode, ScheduleAndSuspendMode)
    assert job.matching_mode.schedule_at == schedule_at

    job = eventually(lambda: (j := client.get_job("j1")).status == RouterJobStatus.SCHEDULED and j)
    assert job.scheduled_at == schedule_at
    assert datetime.now(timezone.utc) < schedule_at, "machine too slow to observe the scheduled status"

    waiting = eventually(lambda: status_of(client, "j1") == RouterJobStatus.WAITING_FOR_ACTIVATION, timeout=10)
    seen_at = datetime.now(timezone.utc)
    assert waiting
    assert schedule_at <= seen_at <= schedule_at + timedelta(seconds=2)  # 1 s + 1 s slack
    # Waiting for activation: no automatic matching.
    holds_for(lambda: offered_jobs(client, "w1") == [], 0.5)
    assert client.get_job("j1").scheduled_at == schedule_at

    activated = client.upsert_job("j1", matching_mode=QueueAndMatchMode(), priority=100)
    assert activated.status in (RouterJobStatus.CREATED, RouterJobStatus.QUEUED)
    assert activated.priority == 100
    job = eventually(lambda: (j := client.get_job("j1")).status == RouterJobStatus.QUEUED and j)
    assert isinstance(job.matching_mode, QueueAndMatchMode)
    assert job.enqueued_at is not None
    eventually(lambda: offered_jobs(client, "w1") == ["j1"])


def test_scheduled_job_can_be_cancelled_before_it_is_due(admin_client, client):
    setup_queue(admin_client)
    scheduled_job(client, "j1", datetime.now(timezone.utc) + timedelta(seconds=1))
    eventually(lambda: status_of(client, "j1") == RouterJobStatus.SCHEDULED)
    client.cancel_job("j1")
    holds_for(lambda: status_of(client, "j1") == RouterJobStatus.CANCELLED, 1.5)


def test_suspend_mode_waits_for_activation_without_offers(admin_client, client):
    setup_queue(admin_client)
    add_worker(client, "w1")
    job = client.upsert_job("j1", RouterJob(channel_id=CHANNEL, queue_id="q-1", matching_mode=SuspendMode()))
    assert job.status == RouterJobStatus.WAITING_FOR_ACTIVATION
    assert isinstance(job.matching_mode, SuspendMode)
    holds_for(
        lambda: status_of(client, "j1") == RouterJobStatus.WAITING_FOR_ACTIVATION and offered_jobs(client, "w1") == [],
        0.8,
    )
    client.upsert_job("j1", matching_mode=QueueAndMatchMode())
    eventually(lambda: offered_jobs(client, "w1") == ["j1"])
    assert status_of(client, "j1") == RouterJobStatus.QUEUED


def test_suspending_a_queued_job_revokes_its_offer(admin_client, client):
    setup_queue(admin_client)
    add_worker(client, "w1")
    client.upsert_job("j1", RouterJob(channel_id=CHANNEL, queue_id="q-1"))
    eventually(lambda: offered_jobs(client, "w1") == ["j1"])
    job = client.upsert_job("j1", matching_mode=SuspendMode())
    assert job.status == RouterJobStatus.WAITING_FOR_ACTIVATION
    assert offered_jobs(client, "w1") == []


def test_activating_a_suspended_job_with_a_policy_goes_through_classification(admin_client, client):
    setup_queue(admin_client, "q-1")
    setup_queue(admin_client, "q-classified")
    admin_client.upsert_classification_policy(
        "cp",
        ClassificationPolicy(
            queue_selector_attachments=[
                StaticQueueSelectorAttachment(
                    queue_selector=RouterQueueSelector(key="Id", label_operator=LabelOperator.EQUAL, value="q-classified")
                )
            ],
            prioritization_rule=StaticRouterRule(value=8),
        ),
    )
    add_worker(client, "w1", queues=("q-classified",))
    job = client.upsert_job(
        "j1", RouterJob(channel_id=CHANNEL, classification_policy_id="cp", matching_mode=SuspendMode())
    )
    assert job.status == RouterJobStatus.WAITING_FOR_ACTIVATION
    holds_for(lambda: status_of(client, "j1") == RouterJobStatus.WAITING_FOR_ACTIVATION, 0.5)
    assert client.get_job("j1").get("queueId") is None

    activated = client.upsert_job("j1", matching_mode=QueueAndMatchMode())
    assert activated.status == RouterJobStatus.PENDING_CLASSIFICATION
    job = eventually(lambda: (j := client.get_job("j1")).status == RouterJobStatus.QUEUED and j)
    assert (job.queue_id, job.priority) == ("q-classified", 8)
    eventually(lambda: offered_jobs(client, "w1") == ["j1"])


def test_list_jobs_filters_scheduled_jobs_by_scheduled_before_and_after(admin_client, client):
    setup_queue(admin_client)
    schedule_at = datetime.now(timezone.utc) + timedelta(seconds=60)
    later = schedule_at + timedelta(seconds=60)
    scheduled_job(client, "s1", schedule_at)
    scheduled_job(client, "s2", schedule_at)
    scheduled_job(client, "s3", later)
    client.upsert_job("plain", RouterJob(channel_id=CHANNEL, queue_id="q-1"))
    eventually(lambda: sum(1 for _ in client.list_jobs(status="scheduled")) == 3)

    def ids(**kwargs):
        return sorted(j.id for j in client.list_jobs(**kwargs))

    assert ids(status="scheduled", scheduled_before=schedule_at) == ["s1", "s2"]
    assert ids(status="scheduled", scheduled_after=schedule_at + timedelta(seconds=30)) == ["s3"]
    assert ids(status="scheduled", scheduled_after=schedule_at - timedelta(seconds=1), scheduled_before=later) == ["s1", "s2", "s3"]
    assert ids(status="scheduled", scheduled_before=schedule_at - timedelta(seconds=1)) == []
    assert ids(status="scheduled") == ["s1", "s2", "s3"]
    assert [j.scheduled_at for j in client.list_jobs(status="scheduled", scheduled_before=schedule_at)] == [schedule_at] * 2


# --- worker selector expiry and expedite ---------------------------------------------------------


def preferred_selector(worker_id, seconds=2.0):
    return RouterWorkerSelector(
        key="Id", label_operator=LabelOperator.EQUAL, value=worker_id, expires_after_seconds=seconds, expedite=True
    )


def test_preferred_worker_selector_gives_the_job_to_the_preferred_worker_while_active(admin_client, client):
    setup_queue(admin_client, max_offers=2)
    add_worker(client, "w-other")
    add_worker(client, "w-pref")
    client.upsert_job("j1", RouterJob(channel_id=CHANNEL, queue_id="q-1", requested_worker_selectors=[preferred_selector("w-pref", 60)]))
    eventually(lambda: offered_jobs(client, "w-pref") == ["j1"])
    assert offered_jobs(client, "w-other") == []


def test_expired_preferred_worker_selector_widens_the_pool_to_other_workers(admin_client, client):
    setup_queue(admin_client)
    # The preferred worker is busy with another job.
    add_worker(client, "w-pref")
    client.upsert_job("busy", RouterJob(channel_id=CHANNEL, queue_id="q-1"))
    offer = eventually(lambda: client.get_worker("w-pref").offers)[0]
    client.accept_job_offer("w-pref", offer.offer_id)
    add_worker(client, "w-other")

    job = client.upsert_job(
        "j1", RouterJob(channel_id=CHANNEL, queue_id="q-1", requested_worker_selectors=[preferred_selector("w-pref")])
    )
    (selector,) = job.requested_worker_selectors
    assert selector.status == RouterWorkerSelectorStatus.ACTIVE
    assert selector.expedite is True
    expires_at = selector.expires_at
    assert expires_at is not None
    assert datetime.now(timezone.utc) < expires_at <= datetime.now(timezone.utc) + timedelta(seconds=2.5)

    eventually(lambda: status_of(client, "j1") == RouterJobStatus.QUEUED)
    # While the selector is active only w-pref is eligible; w-other is idle but gets nothing.
    seconds_left = (expires_at - datetime.now(timezone.utc)).total_seconds() - 0.3
    holds_for(lambda: offered_jobs(client, "w-other") == [], max(0.0, seconds_left))

    eventually(lambda: offered_jobs(client, "w-other") == ["j1"], timeout=5)
    offer = client.get_worker("w-other").offers[0]
    assert expires_at <= offer.offered_at <= expires_at + timedelta(seconds=2)  # 1 s + 1 s slack
    (selector,) = client.get_job("j1").requested_worker_selectors
    assert selector.status == RouterWorkerSelectorStatus.EXPIRED
    assert selector.expires_at == expires_at


def test_expedited_job_is_first_in_queue_and_offered_first(admin_client, client):
    setup_queue(admin_client)
    add_worker(client, "w1", labels={"Lang": "en"}, available=False)
    client.upsert_job("early", RouterJob(channel_id=CHANNEL, queue_id="q-1", priority=1))
    eventually(lambda: status_of(client, "early") == RouterJobStatus.QUEUED)
    client.upsert_job(
        "expedited",
        RouterJob(
            channel_id=CHANNEL, queue_id="q-1", priority=1,
            requested_worker_selectors=[RouterWorkerSelector(key="Lang", label_operator=LabelOperator.EQUAL, value="en", expedite=True)],
        ),
    )
    eventually(lambda: status_of(client, "expedited") == RouterJobStatus.QUEUED)
    assert client.get_job("early").enqueued_at < client.get_job("expedited").enqueued_at

    position = client.get_queue_position("expedited")
    assert (position.position, position.queue_id, position.queue_length) == (1, "q-1", 2)
    assert client.get_queue_position("early").position == 2

    add_worker(client, "w1", labels={"Lang": "en"}, available=True)
    eventually(lambda: offered_jobs(client, "w1") == ["expedited"])


def test_expedite_stops_when_its_selector_expires(admin_client, client):
    setup_queue(admin_client)
    client.upsert_job("early", RouterJob(channel_id=CHANNEL, queue_id="q-1"))
    eventually(lambda: status_of(client, "early") == RouterJobStatus.QUEUED)
    job = client.upsert_job(
        "expedited",
        RouterJob(channel_id=CHANNEL, queue_id="q-1", requested_worker_selectors=[preferred_selector("w-nobody", 1.0)]),
    )
    eventually(lambda: status_of(client, "expedited") == RouterJobStatus.QUEUED)
    assert client.get_queue_position("expedited").position == 1
    eventually(lambda: client.get_queue_position("expedited").position == 2, timeout=4)
    assert datetime.now(timezone.utc) >= job.requested_worker_selectors[0].expires_at
    assert client.get_queue_position("early").position == 1


def test_rescheduling_to_a_later_time_ignores_the_earlier_schedule(admin_client, client):
    setup_queue(admin_client)
    first = datetime.now(timezone.utc) + timedelta(seconds=1.5)
    scheduled_job(client, "j1", first)
    eventually(lambda: status_of(client, "j1") == RouterJobStatus.SCHEDULED)
    later = datetime.now(timezone.utc) + timedelta(seconds=3.5)
    job = client.upsert_job("j1", matching_mode=ScheduleAndSuspendMode(schedule_at=later))
    assert job.status in (RouterJobStatus.PENDING_SCHEDULE, RouterJobStatus.SCHEDULED)
    job = eventually(lambda: (j := client.get_job("j1")).scheduled_at == later and j)
    assert job.status == RouterJobStatus.SCHEDULED
    # Past the first time (+ slack) the job is still scheduled for the later one.
    holds_for(lambda: status_of(client, "j1") == RouterJobStatus.SCHEDULED, (first - datetime.now(timezone.utc)).total_seconds() + 0.8)
    eventually(lambda: status_of(client, "j1") == RouterJobStatus.WAITING_FOR_ACTIVATION, timeout=5)
    assert datetime.now(timezone.utc) >= later
