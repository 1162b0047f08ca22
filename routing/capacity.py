"""Capacity: what a worker's open offers and live assignments consume (ACS 2023-11-01 §4.2).

One definition of load, room for one more job, and load ratio, used by matching (Python and
SQL ranking), the API's worker reads and filters, the desk and the admin alike.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime

from django.db.models import Case, ExpressionWrapper, F, FloatField, Q, Value, When

from routing.models import Assignment, Offer


@dataclass
class Load:
    """A worker's consumed capacity: the summed capacity cost of its open offers and live
    assignments (`used`), and how many of them are on each channel (for maxNumberOfJobs)."""

    used: int = 0
    per_channel: dict[str, int] = field(default_factory=lambda: defaultdict(int))

    def add(self, channel_id: str, cost: int) -> None:
        self.used += cost
        self.per_channel[channel_id] += 1

    def on_channel(self, channel_id: str) -> int:
        return self.per_channel.get(channel_id, 0)


def loads_for(worker_filter: Q, now: datetime) -> dict[str, Load]:
    """Loads of the workers selected by `worker_filter` (a Q over the offer/assignment `worker`
    relation, e.g. `Q(worker__queue_links__queue_id=...)`), from two aggregate-free scans."""
    loads: dict[str, Load] = defaultdict(Load)
    for worker_id, channel_id, cost in Offer.objects.open_at(now).filter(worker_filter).values_list(
        "worker_id", "channel_id", "capacity_cost"
    ):
        loads[worker_id].add(channel_id, cost)
    for worker_id, channel_id, cost in Assignment.objects.live().filter(worker_filter).values_list(
        "worker_id", "channel_id", "capacity_cost"
    ):
        loads[worker_id].add(channel_id, cost)
    return loads


def load_of(worker_id: str, now: datetime) -> Load:
    return loads_for(Q(worker_id=worker_id), now).get(worker_id, Load())


def fits(*, capacity: int, load: Load, channel_id: str, cost: int, max_jobs: int | None) -> bool:
    """Whether one more job on `channel_id` costing `cost` fits (ACS §4.2 capacity rule)."""
    if load.used + cost > capacity:
        return False
    return max_jobs is None or load.on_channel(channel_id) < max_jobs


def load_ratio(capacity: int, used: int) -> float:
    """Consumed capacity / capacity in 0..1 (ACS RouterWorker.loadRatio). Nothing consumed is 0;
    a worker with no capacity that still holds something counts as full."""
    if used <= 0:
        return 0.0
    if capacity <= 0:
        return 1.0
    return min(1.0, used / capacity)


def load_ratio_sql(used: str, capacity: str) -> Case:
    """`load_ratio` as a database expression over the names of a `used` annotation and a
    capacity column, so SQL ranking orders exactly as the Python engine does."""
    return Case(
        When(**{f"{used}__lte": 0}, then=Value(0.0)),
        When(**{f"{capacity}__lte": 0}, then=Value(1.0)),
        default=ExpressionWrapper(F(used) * 1.0 / F(capacity), output_field=FloatField()),
        output_field=FloatField(),
    )
