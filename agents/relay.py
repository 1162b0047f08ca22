"""Cross-process delivery of router events without Redis.

With the in-memory channel layer a `group_send` reaches only consumers of the process that sent
it. Every change also leaves a RouterEvent row (routing.services.notify), so each web process
runs one relay task that polls for rows written by *other* processes (an indexed range scan on
the primary key) and re-sends them to its local groups. With Redis (REDIS_URL) the layer itself
crosses processes and the relay is not started.
"""

from __future__ import annotations

import asyncio
import logging

from channels.db import database_sync_to_async
from channels.layers import InMemoryChannelLayer, get_channel_layer
from django.db import close_old_connections
from django.db.models import Max

from routing.models import RouterEvent
from routing.services.notify import ORIGIN, send_local

logger = logging.getLogger("agents.relay")

POLL_SECONDS = 0.2
_task: asyncio.Task | None = None


def _latest_id() -> int:
    close_old_connections()
    return RouterEvent.objects.aggregate(m=Max("id"))["m"] or 0


def _relay_once(after: int) -> int:
    close_old_connections()
    events = list(RouterEvent.objects.filter(id__gt=after).order_by("id")[:500])
    send_local(e for e in events if e.origin != ORIGIN)
    return events[-1].id if events else after


async def _run() -> None:
    last = await database_sync_to_async(_latest_id)()
    while True:
        try:
            last = await database_sync_to_async(_relay_once)(last)
        except Exception:
            logger.exception("event relay pass failed")
        await asyncio.sleep(POLL_SECONDS)


def ensure_relay() -> None:
    """Start this process's relay once (only needed with the in-memory channel layer)."""
    global _task
    if not isinstance(get_channel_layer(), InMemoryChannelLayer):
        return
    if _task is None or _task.done():
        _task = asyncio.get_running_loop().create_task(_run())
