"""Seed 000 end to end through the official SDK (azure-communication-jobrouter 1.0.0) against
the real server: policy, queue, job, worker, offer, accept, complete, close (now and later).

The seed's selector asks Some-Skill EQUAL 10 of a worker labelled 11, which can never match; the
prose says "greater than", which is what this test uses."""

from datetime import datetime, timedelta, timezone

from azure.communication.jobrouter.models import (
    CloseJobOptions,
    CompleteJobOptions,
    DistributionPolicy,
    LabelOperator,
    LongestIdleMode,
    RouterChannel,
    RouterJob,
    RouterJobStatus,
    RouterQueue,
    RouterWorker,
    RouterWorkerSelector,
)

from tests.conftest import eventually


def _seed_setup(admin_client, client, job_id="jobId-1", worker_id="worker-1"):
    admin_client.upsert_distribution_policy(
        "distribution-policy-1",
        DistributionPolicy(
            offer_expires_after_seconds=24 * 60 * 60,
            mode=LongestIdleMode(min_concurrent_offers=1, max_concurrent_offers=1),
        ),
    )
    admin_client.upsert_queue("queue-1", RouterQueue(distribution_policy_id="distribution-policy-1"))
    job = client.upsert_job(
        job_id,
        RouterJob(
            channel_id="my-channel",
            queue_id="queue-1",
            channel_reference="12345",
            priority=1,
            requested_worker_selectors=[
                RouterWorkerSelector(key="Some-Skill", label_operator=LabelOperator.GREATER_THAN, value=10)
            ],
        ),
    )
    worker = client.upsert_worker(
        worker_id,
        RouterWorker(
            capacity=1,
            queues=["queue-1"],
            labels={"Some-Skill": 11},
            channels=[RouterChannel(channel_id="my-channel", capacity_cost_per_job=1)],
            available_for_offers=True,
        ),
    )
    return job, worker


def test_seed_flow_offer_accept_complete_close(live_admin_client, live_client):
    admin_client, client = live_admin_client, live_client
    job, worker = _seed_setup(admin_client, client)
    assert job.status == RouterJobStatus.CREATED
    assert worker.labels == {"Some-Skill": 11, "Id": "worker-1"}

    worker = eventually(lambda: (w := client.get_worker(worker_id="worker-1")).offers and w)
    offer = [o for o in worker.offers if o.job_id == "jobId-1"][0]
    assert offer.capacity_cost == 1 and offer.offered_at and offer.expires_at

    accepted = client.accept_job_offer(worker_id="worker-1", offer_id=offer.offer_id)
    assert (accepted.job_id, accepted.worker_id) == ("jobId-1", "worker-1")
    job = client.get_job(job_id="jobId-1")
    assert job.status == RouterJobStatus.ASSIGNED
    assert accepted.assignment_id in job.assignments

    client.complete_job("jobId-1", accepted.assignment_id, CompleteJobOptions(note="done"))
    assert client.get_job("jobId-1").status == RouterJobStatus.COMPLETED
    client.close_job("jobId-1", accepted.assignment_id, CloseJobOptions(note="closed"))
    job = client.get_job(job_id="jobId-1")
    assert job.status == RouterJobStatus.CLOSED
    assert job.disposition_code == "Closed"
    assignment = job.assignments[accepted.assignment_id]
    assert assignment.assigned_at and assignment.completed_at and assignment.closed_at
    assert [n.message for n in job.notes] == ["done", "closed"]
    assert client.get_worker("worker-1").load_ratio == 0


def test_seed_flow_close_in_the_future_takes_effect_within_a_second(live_admin_client, live_client):
    admin_client, client = live_admin_client, live_client
    _seed_setup(admin_client, client)
    worker = eventually(lambda: (w := client.get_worker(worker_id="worker-1")).offers and w)
    accepted = client.accept_job_offer(worker_id="worker-1", offer_id=worker.offers[0].offer_id)
    client.complete_job("jobId-1", accepted.assignment_id)
    close_at = datetime.now(timezone.utc) + timedelta(seconds=2)
    client.close_job("jobId-1", accepted.assignment_id, CloseJobOptions(close_at=close_at))
    assert client.get_job("jobId-1").status == RouterJobStatus.COMPLETED
    assert client.get_worker("worker-1").load_ratio == 1

    eventually(lambda: client.get_job("jobId-1").status == RouterJobStatus.CLOSED, timeout=4)
    closed_at = client.get_job("jobId-1").assignments[accepted.assignment_id].closed_at
    assert close_at <= closed_at < close_at + timedelta(seconds=1)
    assert client.get_worker("worker-1").load_ratio == 0
