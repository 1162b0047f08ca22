"""Small helpers shared by the SDK-driven API tests."""

from __future__ import annotations

import time
from typing import Any, Callable, Iterable

from azure.communication.jobrouter.models import RouterChannel, RouterWorker

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
