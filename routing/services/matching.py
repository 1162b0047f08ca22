"""Matching: issuing offers (ACS Job Router 2023-11-01 §4.2, §4.3).

Two entry points, both run after the commit of whatever made a match possible:
- `match_job(job_id)`: a job became queued (or lost an offer): offer it to the best eligible
  workers, up to the distribution policy's maxConcurrentOffers.
- `match_worker(worker_id)`: a worker gained capacity or registered: walk the jobs of its queues
  in queue order (queue priority, expedite, job priority, enqueue time) and run `match_job` for
  each job this worker could take, until the worker is full.

Cost per decision is bounded by indexes: candidate workers come from (queue_id, worker) and
(channel_id, worker) memberships and only their open offers and assignments are summed; queued
jobs are read in index order per (queue, channel), from the (queue, status, channel, expedite,
priority, enqueued_at, id) index, and merged.

Locking: `match_job` ranks candidates with no transaction open (scoring rules may call out over
HTTP), then locks the job row and each chosen worker row in turn (the same order as
`offer_accept`) and re-checks the job's status and open offers and the worker's availability
and capacity under those locks, so an offer is never issued to a worker that deregistered or
filled up in the meantime, and two processes matching one job never exceed maxConcurrentOffers.
"""

from __future__ import annotations

import heapq
import logging
from collections import defaultdict
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Iterable

from django.db import transaction
from django.db.models import (
    Case,
    Exists,
    ExpressionWrapper,
    F,
    FloatField,
    IntegerField,
    OuterRef,
    Q,
    Subquery,
    Sum,
    Value,
    When,
)
from django.db.models.functions import Coalesce

from routing.engine.distribution import (
    Candidate,
    default_scorer_for,
    expression_scorer_for,
    order_candidates,
)
from routing.engine.selectors import active_selectors, all_match
from routing.models import (
    Assignment,
    Job,
    JobDecline,
    JobStatus,
    Offer,
    OfferStatus,
    Queue,
    RouterTimer,
    TimerKind,
    Worker,
    WorkerChannel,
    WorkerQueue,
    new_etag,
)
from routing.services.common import clock

logger = logging.getLogger("routing.matching")


def open_offer_q(now: datetime, prefix: str = "") -> Q:
    """Offers that count: open and not past `expiresAt` (an expired offer is never shown, never
    accepted and holds no capacity, even before the timer loop has marked it expired)."""
    return Q(**{f"{prefix}status": OfferStatus.OPEN}) & (
        Q(**{f"{prefix}expires_at__isnull": True}) | Q(**{f"{prefix}expires_at__gt": now})
    )


LIVE_ASSIGNMENT_Q = Q(closed_at__isnull=True, unassigned_at__isnull=True)


@dataclass
class Load:
    """A worker's consumed capacity: cost of open offers and live assignments, and how many of
    them are on each channel (for maxNumberOfJobs)."""

    used: int = 0
    per_channel: dict[str, int] | None = None

    def add(self, channel_id: str, cost: int) -> None:
        self.used += cost
        if self.per_channel is None:
            self.per_channel = defaultdict(int)
        self.per_channel[channel_id] += 1

    def on_channel(self, channel_id: str) -> int:
        return (self.per_channel or {}).get(channel_id, 0)


def loads_for(worker_filter: Q, now: datetime, *, worker_prefix: str = "worker__") -> dict[str, Load]:
    """Loads of the workers selected by `worker_filter` (a Q over the Worker relation, written
    with `worker_prefix`), from two aggregate-free scans of their offers and assignments."""
    loads: dict[str, Load] = defaultdict(Load)
    for worker_id, channel_id, cost in Offer.objects.filter(worker_filter, open_offer_q(now)).values_list(
        "worker_id", "channel_id", "capacity_cost"
    ):
        loads[worker_id].add(channel_id, cost)
    for worker_id, channel_id, cost in Assignment.objects.filter(worker_filter, LIVE_ASSIGNMENT_Q).values_list(
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
    if max_jobs is not None and load.on_channel(channel_id) >= max_jobs:
        return False
    return True


def load_ratio(capacity: int, used: int) -> float:
    """Consumed capacity / capacity, 0..1 (a worker with no capacity counts as full)."""
    if capacity <= 0:
        return 1.0
    return min(1.0, used / capacity)


def job_selectors(job: Job, now: datetime) -> list[dict]:
    return active_selectors([*job.requested_worker_selectors, *job.attached_worker_selectors], now)


def _declined_worker_ids(job_id: str, now: datetime) -> set[str]:
    return set(
        JobDecline.objects.filter(job_id=job_id)
        .filter(Q(retry_offer_at__isnull=True) | Q(retry_offer_at__gt=now))
        .values_list("worker_id", flat=True)
    )


def eligible_candidates(job: Job, mode: dict, now: datetime) -> tuple[list[Candidate], dict[str, tuple[int, int | None]]]:
    """Workers that could take `job` now, and each one's (capacity cost, maxNumberOfJobs) for the
    job's channel. Excludes workers already holding an open offer for the job, and workers who
    declined it until their retryOfferAt."""
    memberships = {
        worker_id: priority
        for worker_id, priority in WorkerQueue.objects.filter(
            queue_id=job.queue_id, worker__available_for_offers=True
        ).values_list("worker_id", "priority")
    }
    if not memberships:
        return [], {}
    rows = WorkerChannel.objects.filter(
        channel_id=job.channel_id, worker__available_for_offers=True, worker__queue_links__queue_id=job.queue_id
    ).values_list(
        "worker_id", "capacity_cost_per_job", "max_number_of_jobs", "worker__capacity", "worker__labels",
        "worker__idle_since",
    )
    excluded = _declined_worker_ids(job.pk, now) | set(
        Offer.objects.filter(open_offer_q(now), job_id=job.pk).values_list("worker_id", flat=True)
    )
    selectors = [] if mode.get("bypassSelectors") else job_selectors(job, now)
    loads = loads_for(Q(worker__queue_links__queue_id=job.queue_id, worker__available_for_offers=True), now)
    candidates: list[Candidate] = []
    costs: dict[str, tuple[int, int | None]] = {}
    for worker_id, cost, max_jobs, capacity, labels, idle_since in rows:
        if worker_id in excluded or worker_id not in memberships:
            continue
        if selectors and not all_match(selectors, labels):
            continue
        load = loads.get(worker_id, Load())
        if not fits(capacity=capacity, load=load, channel_id=job.channel_id, cost=cost, max_jobs=max_jobs):
            continue
        candidates.append(
            Candidate(
                worker_id=worker_id,
                labels=labels,
                load_ratio=load_ratio(capacity, load.used),
                idle_since=idle_since,
                queue_priority=memberships[worker_id],
            )
        )
        costs[worker_id] = (cost, max_jobs)
    return candidates, costs


# How many candidates to rank beyond the free offer slots, in case some fill up or deregister
# between ranking and the locked re-check.
RANKING_MARGIN = 3
RANKING_PAGE = 50


def ranked_candidates(
    job: Job, mode: dict, now: datetime, *, last_offered_worker_id: str | None, want: int
) -> tuple[list[Candidate], dict[str, tuple[int, int | None]]]:
    """The first `want` eligible workers for `job` in longestIdle or roundRobin order.

    The database ranks the queue's available members (worker priority in the queue first, then
    load ratio and idle time, or the round-robin rotation after `last_offered_worker_id`) with
    each worker's load summed by correlated subqueries on the indexed offer and assignment
    columns; Python then reads them a page at a time, checking selectors and capacity, and stops
    as soon as it has enough. A decision therefore touches a page of workers, not all of them.
    Same eligibility as `eligible_candidates`.
    """
    offer_cost = (
        Offer.objects.filter(open_offer_q(now), worker_id=OuterRef("worker_id"))
        .values("worker_id").annotate(total=Sum("capacity_cost")).values("total")
    )
    assignment_cost = (
        Assignment.objects.filter(LIVE_ASSIGNMENT_Q, worker_id=OuterRef("worker_id"))
        .values("worker_id").annotate(total=Sum("capacity_cost")).values("total")
    )
    held = Offer.objects.filter(open_offer_q(now), job_id=job.pk, worker_id=OuterRef("worker_id"))
    declined = JobDecline.objects.filter(job_id=job.pk, worker_id=OuterRef("worker_id")).filter(
        Q(retry_offer_at__isnull=True) | Q(retry_offer_at__gt=now)
    )
    priority = WorkerQueue.objects.filter(worker_id=OuterRef("worker_id"), queue_id=job.queue_id).values("priority")[:1]
    qs = (
        WorkerChannel.objects.filter(
            channel_id=job.channel_id, worker__available_for_offers=True, worker__queue_links__queue_id=job.queue_id
        )
        .exclude(Exists(held))
        .exclude(Exists(declined))
        .annotate(
            queue_priority=Subquery(priority),
            used=Coalesce(Subquery(offer_cost), 0) + Coalesce(Subquery(assignment_cost), 0),
        )
        .annotate(
            ratio=Case(
                When(worker__capacity__lte=0, then=Value(1.0)),
                default=ExpressionWrapper(F("used") * 1.0 / F("worker__capacity"), output_field=FloatField()),
                output_field=FloatField(),
            )
        )
    )
    if mode.get("kind") == "roundRobin":
        after = last_offered_worker_id or ""
        rotation = Case(When(worker_id__gt=after, then=Value(0)), default=Value(1), output_field=IntegerField())
        qs = qs.annotate(rotation=rotation).order_by("-queue_priority", "rotation", "worker_id")
    else:
        qs = qs.order_by("-queue_priority", "ratio", F("worker__idle_since").asc(nulls_last=True), "worker_id")
    rows = qs.values_list(
        "worker_id", "capacity_cost_per_job", "max_number_of_jobs", "worker__capacity", "worker__labels",
        "worker__idle_since", "queue_priority", "used", "ratio",
    )
    selectors = [] if mode.get("bypassSelectors") else job_selectors(job, now)
    candidates: list[Candidate] = []
    costs: dict[str, tuple[int, int | None]] = {}
    offset = 0
    while len(candidates) < want:
        page = list(rows[offset : offset + RANKING_PAGE])
        for worker_id, cost, max_jobs, capacity, labels, idle_since, queue_priority, used, ratio in page:
            if selectors and not all_match(selectors, labels):
                continue
            # maxNumberOfJobs needs per-channel counts: only then read the worker's full load.
            load = load_of(worker_id, now) if max_jobs is not None else Load(used=used)
            if not fits(capacity=capacity, load=load, channel_id=job.channel_id, cost=cost, max_jobs=max_jobs):
                continue
            candidates.append(
                Candidate(worker_id=worker_id, labels=labels, load_ratio=min(1.0, ratio), idle_since=idle_since,
                          queue_priority=queue_priority or 0)
            )
            costs[worker_id] = (cost, max_jobs)
            if len(candidates) >= want:
                break
        if len(page) < RANKING_PAGE:
            break
        offset += RANKING_PAGE
    return candidates, costs


def _scorer(job: Job, mode: dict, now: datetime):
    from routing.engine.rules import RuleError, batch_scores
    from routing.services.remote_rules import call_remote_rule

    rule = mode.get("scoringRule")
    if rule and rule.get("kind") == "expression":
        return expression_scorer_for(rule["expression"], job.labels)
    if rule and rule.get("kind") == "static":
        value = rule.get("value")
        score = float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else 0.0
        return lambda band: [score] * len(band)
    if rule and rule.get("kind") in ("function", "webhook"):
        def remote_scores(band):
            try:
                return batch_scores(
                    rule, job_labels=job.labels, selectors=job_selectors(job, now),
                    workers=[{**c.labels, "Id": c.worker_id} for c in band],
                    options=mode.get("scoringRuleOptions") or {}, remote=call_remote_rule,
                )
            except RuleError:
                logger.warning("scoring rule failed for job %s; falling back to default scores", job.pk, exc_info=True)
                return default_scorer_for(job.labels, job_selectors(job, now))(band)

        return remote_scores
    return default_scorer_for(job.labels, job_selectors(job, now))


def match_job(*, job_id: str, now: datetime | None = None) -> list[str]:
    """Offer a queued job to the best eligible workers; returns the ids of workers offered.

    No-op unless the job is `queued` and its queue has a distribution policy. Candidates are
    found and ranked without a transaction (a scoring rule may call out over HTTP); offers are
    then issued under the job's row lock, re-checking each worker under its own lock, until the
    job holds maxConcurrentOffers open offers or candidates run out. Each offer expires
    `offerExpiresAfterSeconds` after it is issued (a stored timer marks it expired).
    """
    from routing.services.notify import notify_changed

    now = clock(now)
    offered: list[str] = []
    job = Job.objects.filter(pk=job_id, status=JobStatus.QUEUED).first()
    if job is None or job.queue_id is None or job.channel_id is None:
        return offered
    queue = Queue.objects.select_related("distribution_policy").filter(pk=job.queue_id).first()
    if queue is None or queue.distribution_policy is None:
        return offered
    policy = queue.distribution_policy
    mode = policy.mode or {"kind": "longestIdle"}
    max_offers = int(mode.get("maxConcurrentOffers", 1))
    if Offer.objects.filter(open_offer_q(now), job_id=job.pk).count() >= max_offers:
        return offered
    if mode.get("kind") == "bestWorker":
        # Scores need every candidate (and may come from a function or webhook).
        candidates, costs = eligible_candidates(job, mode, now)
        ordered = order_candidates(
            candidates, mode=mode, last_offered_worker_id=queue.last_offered_worker_id, scorer=_scorer(job, mode, now)
        )
    else:
        held = Offer.objects.filter(open_offer_q(now), job_id=job.pk).count()
        ordered, costs = ranked_candidates(
            job, mode, now, last_offered_worker_id=queue.last_offered_worker_id,
            want=max_offers - held + RANKING_MARGIN,
        )
    if not ordered:
        return offered
    expires_at = (
        now + timedelta(seconds=policy.offer_expires_after_seconds) if policy.offer_expires_after_seconds else None
    )
    with transaction.atomic():
        # The job lock serialises all offer decisions for this job across processes; what was
        # read above is re-checked here.
        locked = Job.objects.select_for_update().filter(
            pk=job_id, status=JobStatus.QUEUED, queue_id=job.queue_id, channel_id=job.channel_id
        ).first()
        if locked is None:
            return offered
        holding = set(Offer.objects.filter(open_offer_q(now), job_id=job_id).values_list("worker_id", flat=True))
        slots = max_offers - len(holding)
        declined = _declined_worker_ids(job_id, now)
        for candidate in ordered:
            if len(offered) >= slots:
                break
            if candidate.worker_id in holding or candidate.worker_id in declined:
                continue
            cost, max_jobs = costs[candidate.worker_id]
            offer = _issue_offer(locked, candidate.worker_id, cost, max_jobs, expires_at, now)
            if offer is not None:
                offered.append(candidate.worker_id)
        if offered:
            notify_changed(workers=offered, jobs=[job_id])
            Job.objects.filter(pk=job_id).update(etag=new_etag())
            if mode.get("kind") == "roundRobin":
                Queue.objects.filter(pk=queue.pk).update(last_offered_worker_id=offered[-1])
    return offered


def _issue_offer(
    job: Job, worker_id: str, cost: int, max_jobs: int | None, expires_at: datetime | None, now: datetime
) -> Offer | None:
    # Re-check under the worker's row lock: a worker deregistering (or filling up through another
    # job's offer) concurrently is either seen here or sees this offer and revokes it.
    worker = Worker.objects.select_for_update().filter(pk=worker_id, available_for_offers=True).first()
    if worker is None:
        return None
    if not fits(capacity=worker.capacity, load=load_of(worker_id, now), channel_id=job.channel_id, cost=cost, max_jobs=max_jobs):
        return None
    offer = Offer.objects.create(
        job=job, worker_id=worker_id, channel_id=job.channel_id, capacity_cost=cost, offered_at=now, expires_at=expires_at
    )
    if expires_at is not None:
        RouterTimer.objects.create(kind=TimerKind.OFFER_EXPIRY, target_id=str(offer.pk), due_at=expires_at)
    Worker.objects.filter(pk=worker_id).update(etag=new_etag())
    return offer


def _stream(queue_id: str, channel_id: str, chunk: int = 200) -> Iterable[Job]:
    """Queued jobs of one queue on one channel in queue order, read in index order (the
    job_match_order index) a chunk at a time."""
    base = Job.objects.filter(queue_id=queue_id, status=JobStatus.QUEUED, channel_id=channel_id).order_by(
        "-expedite", "-priority", "enqueued_at", "id"
    )
    offset = 0
    while True:
        page = list(base[offset : offset + chunk])
        yield from page
        if len(page) < chunk:
            return
        offset += chunk


def _order_key(job: Job) -> tuple:
    return (not job.expedite, -job.priority, job.enqueued_at, job.pk)


def queued_jobs_for(queue_ids: list[str], channel_ids: list[str]) -> Iterable[Job]:
    """Queued jobs a worker could serve, in the order it should get them: queue priority (seed
    002 Q3), then expedited, job priority and enqueue time across the queues of equal priority.

    Each (queue, channel) pair is one index-ordered stream, and the streams of a priority band
    are merged lazily, so the cost grows with the jobs looked at, not with the backlog."""
    priorities = dict(Queue.objects.filter(pk__in=queue_ids).values_list("pk", "priority"))
    bands: dict[int, list[str]] = defaultdict(list)
    for queue_id in queue_ids:
        if queue_id in priorities:
            bands[priorities[queue_id]].append(queue_id)
    for priority in sorted(bands, reverse=True):
        streams = [_stream(q, c) for q in bands[priority] for c in channel_ids]
        yield from heapq.merge(*streams, key=_order_key)


def queue_modes(queue_ids: Iterable[str]) -> dict[str, dict]:
    return {
        queue_id: mode or {}
        for queue_id, mode in Queue.objects.filter(pk__in=list(queue_ids)).values_list("pk", "distribution_policy__mode")
    }


def match_worker(*, worker_id: str, now: datetime | None = None) -> int:
    """Offer a worker the next jobs it can take, in queue order; returns offers it received.

    Queue order across the worker's queues: queue priority (seed 002 Q3), then expedited jobs,
    then job priority, then enqueue time (ACS §4.7). Jobs the worker cannot take (selectors,
    declines) are skipped without locking them.
    """
    now = clock(now)
    worker = Worker.objects.filter(pk=worker_id, available_for_offers=True).first()
    if worker is None:
        return 0
    channels = {c.channel_id: (c.capacity_cost_per_job, c.max_number_of_jobs) for c in worker.channels.all()}
    queue_ids = list(worker.queue_links.values_list("queue_id", flat=True))
    if not channels or not queue_ids:
        return 0
    load = load_of(worker_id, now)
    if not any(fits(capacity=worker.capacity, load=load, channel_id=ch, cost=c, max_jobs=m) for ch, (c, m) in channels.items()):
        return 0
    declined = set(
        JobDecline.objects.filter(worker_id=worker_id)
        .filter(Q(retry_offer_at__isnull=True) | Q(retry_offer_at__gt=now))
        .values_list("job_id", flat=True)
    )
    modes = queue_modes(queue_ids)
    received = 0
    for job in queued_jobs_for(queue_ids, list(channels)):
        if job.pk in declined:
            continue
        cost, max_jobs = channels[job.channel_id]
        if not fits(capacity=worker.capacity, load=load, channel_id=job.channel_id, cost=cost, max_jobs=max_jobs):
            continue
        if not modes.get(job.queue_id, {}).get("bypassSelectors") and not all_match(job_selectors(job, now), worker.labels):
            continue
        if worker_id in match_job(job_id=job.pk, now=now):
            received += 1
            load = load_of(worker_id, now)
            if not any(
                fits(capacity=worker.capacity, load=load, channel_id=ch, cost=c, max_jobs=m)
                for ch, (c, m) in channels.items()
            ):
                break
    return received


def match_queue(*, queue_id: str, now: datetime | None = None) -> None:
    """Re-run matching for every available worker of a queue (after a policy change)."""
    now = clock(now)
    for worker_id in WorkerQueue.objects.filter(queue_id=queue_id, worker__available_for_offers=True).values_list(
        "worker_id", flat=True
    ):
        match_worker(worker_id=worker_id, now=now)


def revoke_offers(offers: Q, now: datetime) -> list[tuple[str, str]]:
    """Revoke the open offers selected by `offers`; returns (offer id, job id) of those revoked.

    Compare-and-set on status: an offer accepted or expired concurrently is left alone."""
    from routing.services.notify import notify_changed

    targets = list(Offer.objects.filter(offers, status=OfferStatus.OPEN).values_list("id", "job_id", "worker_id"))
    revoked = []
    workers = []
    for offer_id, job_id, worker_id in targets:
        if Offer.objects.filter(pk=offer_id, status=OfferStatus.OPEN).update(
            status=OfferStatus.REVOKED, ended_at=now
        ):
            revoked.append((str(offer_id), job_id))
            workers.append(worker_id)
            Worker.objects.filter(pk=worker_id).update(etag=new_etag())
    if revoked:
        notify_changed(workers=workers, jobs=[job_id for _, job_id in revoked])
    return revoked
