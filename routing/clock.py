"""The router's one clock.

Entry points (REST views, websocket consumers, admin actions, background tasks, the timer loop)
read it once per operation and pass that `now` down; domain and query functions take `now` and
fall back to this clock only when a caller gives none. Tests freeze or travel it with
time-machine, which moves `django.utils.timezone.now` and therefore this function.
"""

from __future__ import annotations

from datetime import datetime

from django.utils import timezone


def now() -> datetime:
    """The current time, timezone-aware (UTC)."""
    return timezone.now()


def clock(given: datetime | None) -> datetime:
    """The operation's single reading of the clock: `given` when the caller passed one."""
    return given if given is not None else now()
