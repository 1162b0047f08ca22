"""Small helpers shared by the SDK-driven API tests."""

from __future__ import annotations

import time
from typing import Any, Callable, Iterable

from azure.communication.jobrouter.models import (
    ClassificationPolicy,
    DistributionPolicy,
    LongestIdleMode,
    RouterChannel,
    RouterJob,
    RouterQueue,
    RouterWorker,
)

CHANNEL = "voice"


def add_worker(
    client,
    worker_id: str,
    queues: Iterable[str] = ("q-1",),
    labels: dict[str, Any] | None = None,
    *,
    capacity: int = 1,
    available: bool = True,
    channel: str = CHANNEL,
) -> RouterWorker:
    """Register a worker through the SDK: one channel at capacity cost 1."""
    return client.upsert_worker(
        worker_id,
        RouterWorker(
            capacity=capacity,
            queues=list(queues),
            labels=labels or {},
            channels=[RouterChannel(channel_id=channel, capacity_cost_per_job=1)],
            available_for_offers=available,
        ),
    )


def offered_jobs(client, worker_id: str) -> list[str]:
    """Ids of the jobs a worker holds open offers for."""
    return [o.job_id for o in client.get_worker(worker_id).offers]


def holds_for(check: Callable[[], Any], seconds: float, interval: float = 0.1) -> None:
    """Assert `check()` stays truthy for `seconds` (an effect that must NOT happen)."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        value = check()
        assert value, f"condition stopped holding: {value!r}"
        time.sleep(interval)


def make_queue(admin_client, queue_id, labels=None, policy_id="dp-1", exception_policy_id=None):
    admin_client.upsert_queue(
        queue_id,
        RouterQueue(distribution_policy_id=policy_id, labels=labels or {}, exception_policy_id=exception_policy_id),
    )


def make_distribution_policy(admin_client, policy_id="dp-1", mode=None):
    """A distribution policy ringing for 600 s (longestIdle unless `mode` says otherwise)."""
    admin_client.upsert_distribution_policy(
        policy_id, DistributionPolicy(offer_expires_after_seconds=600, mode=mode or LongestIdleMode())
    )


def region_queues(admin_client) -> list[str]:
    """dp-1 and three queues: q-eu (Region EU, Tier 1), q-us (Region US, Tier 2), q-fallback."""
    make_distribution_policy(admin_client)
    make_queue(admin_client, "q-eu", {"Region": "EU", "Tier": 1})
    make_queue(admin_client, "q-us", {"Region": "US", "Tier": 2})
    make_queue(admin_client, "q-fallback", {"Region": "none"})
    return ["q-eu", "q-fallback", "q-us"]


def policy(admin_client, policy_id, **kwargs):
    return admin_client.upsert_classification_policy(policy_id, ClassificationPolicy(**kwargs))


def job_in_policy(client, job_id, policy_id, labels=None, **kwargs):
    return client.upsert_job(
        job_id, RouterJob(channel_id=CHANNEL, classification_policy_id=policy_id, labels=labels or {}, **kwargs)
    )
