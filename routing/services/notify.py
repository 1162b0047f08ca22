"""Live notifications of router changes (agent desks, waiting rooms, the supervisor view).

Domain operations call `notify_changed(...)` inside their transaction; it writes a RouterEvent
row per topic in that same transaction (no extra write transaction; rolled back with it) and
registers one after-commit step that sends a `router.event` message to each matching Channels
group, all in one hop to the event loop. With Redis as the channel layer (REDIS_URL) the message
reaches every process directly; with the in-memory layer it reaches this process only, and the
relay in each web process (`agents.relay`) forwards rows written by other processes. Listeners
re-read state from the database on every event, so a lost or duplicated message costs a refresh,
never correctness.
"""

from __future__ import annotations

import logging
import os
import socket
from datetime import datetime
from typing import Iterable, TypedDict

from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer
from django.db import transaction

from routing.models import Job, RouterEvent

logger = logging.getLogger("routing.notify")

# Identifies this process in RouterEvent.origin, so the relay skips what this process sent.
ORIGIN = f"{socket.gethostname()}:{os.getpid()}"[:64]
SUPERVISOR_TOPIC = "supervisor"


class RouterEventMessage(TypedDict):
    type: str  # the Channels handler: "router.event" → consumer.router_event
    topic: str
    eventId: int


def group_for(topic: str) -> str:
    """Channels group name for a topic (letters, digits, `-_.` only, under 100 characters)."""
    safe = "".join(ch if ch.isalnum() or ch in "-_" else f".{ord(ch):x}." for ch in topic)
    return f"router.{safe}"[:99]


def topics_for(*, workers: Iterable[str] = (), jobs: Iterable[str] = (), queues: Iterable[str] = ()) -> list[str]:
    topics = {f"worker:{w}" for w in workers if w}
    queue_ids = {q for q in queues if q}
    for job_id, queue_id in Job.objects.filter(pk__in=[j for j in jobs if j]).values_list("pk", "queue_id"):
        topics.add(f"job:{job_id}")
        if queue_id:
            queue_ids.add(queue_id)
    topics |= {f"queue:{q}" for q in queue_ids}
    topics.add(SUPERVISOR_TOPIC)
    return sorted(topics)


def record(topics: list[str], now: datetime) -> list[RouterEvent]:
    """Write the event rows (in the caller's transaction, if any)."""
    return RouterEvent.objects.bulk_create([RouterEvent(topic=t, origin=ORIGIN, created_at=now) for t in topics])


async def _send_all(layer, messages: list[tuple[str, dict]]) -> None:
    for group, message in messages:
        await layer.group_send(group, message)


def send_local(events: Iterable[RouterEvent]) -> None:
    layer = get_channel_layer()
    if layer is None:
        return
    messages = []
    for event in events:
        message: RouterEventMessage = {"type": "router.event", "topic": event.topic, "eventId": event.pk or 0}
        messages.append((group_for(event.topic), dict(message)))
    if not messages:
        return
    try:
        async_to_sync(_send_all)(layer, messages)
    except Exception:
        # A push that cannot be sent is caught up by the listeners' own refresh.
        logger.warning("could not send %d router events", len(messages), exc_info=True)


def notify_changed(
    *, now: datetime, workers: Iterable[str] = (), jobs: Iterable[str] = (), queues: Iterable[str] = ()
) -> None:
    """Announce, after the current transaction commits, that these workers, jobs (and their
    queues) and queues changed at `now`."""
    events = record(topics_for(workers=workers, jobs=jobs, queues=queues), now)
    transaction.on_commit(lambda: send_local(events), robust=True)
