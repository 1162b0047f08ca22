"""Live notifications of router changes (agent desks, waiting rooms, the supervisor view).

Domain operations call `notify_changed(...)` inside their transaction; it writes one RouterEvent
row per topic (`worker:<id>`, `job:<id>`, `queue:<id>`) in that same transaction, so a change
and its notification commit or roll back together, and no read is added to the write. After the
commit, the listeners registered in this process (the push hub of `agents.hub`) are nudged to
read the new rows at once; hubs in other processes find them on their next poll. What a change
means for each page (a worker's queues, a job's queue) is worked out by the hub, off the
request path.
"""

from __future__ import annotations

import logging
from datetime import datetime
from typing import Callable, Iterable

from django.db import transaction

from routing.models import RouterEvent

logger = logging.getLogger("routing.notify")

_commit_listeners: set[Callable[[], None]] = set()


def add_commit_listener(listener: Callable[[], None]) -> None:
    """Call `listener()` (no arguments, must not block) after each commit that notified."""
    _commit_listeners.add(listener)


def topics_for(*, workers: Iterable[str] = (), jobs: Iterable[str] = (), queues: Iterable[str] = ()) -> list[str]:
    topics = {f"worker:{w}" for w in workers if w} | {f"job:{j}" for j in jobs if j} | {f"queue:{q}" for q in queues if q}
    return sorted(topics)


def _nudge_listeners() -> None:
    for listener in list(_commit_listeners):
        try:
            listener()
        except Exception:
            logger.warning("a commit listener failed", exc_info=True)


def notify_changed(
    *, now: datetime, workers: Iterable[str] = (), jobs: Iterable[str] = (), queues: Iterable[str] = ()
) -> None:
    """Record, in the current transaction, that these workers, jobs and queues changed at `now`."""
    topics = topics_for(workers=workers, jobs=jobs, queues=queues)
    if not topics:
        return
    RouterEvent.objects.bulk_create([RouterEvent(topic=t, origin="", created_at=now) for t in topics])
    if _commit_listeners:
        transaction.on_commit(_nudge_listeners, robust=True)
