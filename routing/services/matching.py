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
HTTP), then locks the job row and each chosen worker row in turn (the one lock order, job → offer →
worker, documented in `routing.services.assignment`) and re-checks the job's status and open offers and the worker's availability
and capacity under those locks, so an offer is never issued to a worker that deregistered or
filled up in the meantime, and two processes matching one job never exceed maxConcurrentOffers.
"""

from __future__ import annotations

import heapq
import logging
from collections import defaultdict
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Iterable, Mapping, Sequence

from django.db import transaction
from django.db.models import Case, Exists, F, IntegerField, OuterRef, Q, Subquery, Sum, Value, When
from django.db.models.functions import Coalesce

from routing.capacity import Load, fits, load_of, load_ratio, load_ratio_sql, loads_for
from routing.clock import clock
from routing.engine.distribution import (
    Candidate,
    Scorer,
    default_scorer_for,
    expression_scorer_for,
    order_candidates,
)
from routing.engine.rules import RuleError, batch_scores
from routing.engine.selectors import active_selectors, all_match
from routing.models import (
    Assignment,
    DistributionPolicy,
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
    touched,
)
from routing.services import events
from routing.services.notify import notify_changed
from routing.services.remote_rules import call_remote_rule

logger = logging.getLogger("routing.matching")

# (capacity cost per job, maxNumberOfJobs) of a worker's channel.
ChannelTerms = tuple[int, "int | None"]


def job_selectors(job: Job, now: datetime) -> list[Mapping[str, Any]]:
    """The job's requested and attached worker selectors still active at `now`."""
    return active_selectors([*job.requested_worker_selectors, *job.attached_worker_selectors], now)


def worker_qualifies(job: Job, labels: dict, mode: dict, now: datetime) -> bool:
    """Whether a worker's labels satisfy the job's active selectors (unless the queue's
    distribution mode bypasses selectors)."""
    return bool(mode.get("bypassSelectors")) or all_match(job_selectors(job, now), labels)


def declined_job_ids(worker_id: str, now: datetime) -> set[str]:
    """Jobs this worker declined whose decline window is still open."""
    return set(JobDecline.objects.blocking_at(now).filter(worker_id=worker_id).values_list("job_id", flat=True))


def _declined_worker_ids(job_id: str, now: datetime) -> set[str]:
    return set(JobDecline.objects.blocking_at(now).filter(job_id=job_id).values_list("worker_id", flat=True))


def eligible_candidates(job: Job, mode: dict, now: datetime) -> tuple[list[Candidate], dict[str, ChannelTerms]]:
    """Workers that could take `job` now, and each one's (capacity cost, maxNumberOfJobs) for the
    job's channel. Excludes workers already holding an open offer for the job, and workers who
    declined it until their retryOfferAt."""
    memberships = dict(
        WorkerQueue.objects.filter(queue_id=job.queue_id, worker__available_for_offers=True).values_list(
            "worker_id", "priority"
        )
    )
    if not memberships:
        return [], {}
    rows = WorkerChannel.objects.filter(
        channel_id=job.channel_id, worker__available_for_offers=True, worker__queue_links__queue_id=job.queue_id
    ).values_list(
        "worker_id", "capacity_cost_per_job", "max_number_of_jobs", "worker__capacity", "worker__labels",
        "worker__idle_since",
    )
    excluded = _declined_worker_ids(job.pk, now) | set(
        Offer.objects.open_at(now).filter(job_id=job.pk).values_list("worker_id", flat=True)
    )
    loads = loads_for(Q(worker__queue_links__queue_id=job.queue_id, worker__available_for_offers=True), now)
    candidates: list[Candidate] = []
    terms: dict[str, ChannelTerms] = {}
    for worker_id, cost, max_jobs, capacity, labels, idle_since in rows:
        if worker_id in excluded or worker_id not in memberships or not worker_qualifies(job, labels, mode, now):
            continue
        load = loads.get(worker_id, Load())
        if not fits(capacity=capacity, load=load, channel_id=job.channel_id or "", cost=cost, max_jobs=max_jobs):
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
        terms[worker_id] = (cost, max_jobs)
    return candidates, terms


# How many candidates to rank beyond the free offer slots, in case some fill up or deregister
# between ranking and the locked re-check.
RANKING_MARGIN = 3
RANKING_PAGE = 50


def _ranking_queryset(job: Job, mode: dict, now: datetime, last_offered_worker_id: str | None):
    """The queue's available members on the job's channel, not holding or declining the job, in
    distribution order: worker priority in the queue first, then load ratio and idle time
    (longestIdle) or the rotation after the last offered worker (roundRobin). Each worker's load
    is summed by correlated subqueries on the indexed offer and assignment columns."""
    offer_cost = (
        Offer.objects.open_at(now).filter(worker_id=OuterRef("worker_id"))
        .values("worker_id").annotate(total=Sum("capacity_cost")).values("total")
    )
    assignment_cost = (
        Assignment.objects.live().filter(worker_id=OuterRef("worker_id"))
        .values("worker_id").annotate(total=Sum("capacity_cost")).values("total")
    )
    held = Offer.objects.open_at(now).filter(job_id=job.pk, worker_id=OuterRef("worker_id"))
    declined = JobDecline.objects.blocking_at(now).filter(job_id=job.pk, worker_id=OuterRef("worker_id"))
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
        .annotate(ratio=load_ratio_sql("used", "worker__capacity"))
    )
    if mode.get("kind") == "roundRobin":
        after = last_offered_worker_id or ""
        rotation = Case(When(worker_id__gt=after, then=Value(0)), default=Value(1), output_field=IntegerField())
        return qs.annotate(rotation=rotation).order_by("-queue_priority", "rotation", "worker_id")
    return qs.order_by("-queue_priority", "ratio", F("worker__idle_since").asc(nulls_last=True), "worker_id")


def ranked_candidates(
    job: Job, mode: dict, now: datetime, *, last_offered_worker_id: str | None, want: int
) -> tuple[list[Candidate], dict[str, ChannelTerms]]:
    """The first `want` eligible workers for `job` in longestIdle or roundRobin order.

    The database ranks (see `_ranking_queryset`); Python reads a page at a time, checking
    selectors and capacity, and stops as soon as it has enough, so a decision touches a page of
    workers, not all of them. Same eligibility as `eligible_candidates`.
    """
    rows = _ranking_queryset(job, mode, now, last_offered_worker_id).values_list(
        "worker_id", "capacity_cost_per_job", "max_number_of_jobs", "worker__capacity", "worker__labels",
        "worker__idle_since", "queue_priority", "used", "ratio",
    )
    candidates: list[Candidate] = []
    terms: dict[str, ChannelTerms] = {}
    offset = 0
    while len(candidates) < want:
        page = list(rows[offset : offset + RANKING_PAGE])
        for worker_id, cost, max_jobs, capacity, labels, idle_since, queue_priority, used, ratio in page:
            if not worker_qualifies(job, labels, mode, now):
                continue
            # maxNumberOfJobs needs per-channel counts: only then read the worker's full load.
            load = load_of(worker_id, now) if max_jobs is not None else Load(used=used)
            if not fits(capacity=capacity, load=load, channel_id=job.channel_id or "", cost=cost, max_jobs=max_jobs):
                continue
            candidates.append(
                Candidate(worker_id=worker_id, labels=labels, load_ratio=min(1.0, ratio), idle_since=idle_since,
                          queue_priority=queue_priority or 0)
            )
            terms[worker_id] = (cost, max_jobs)
            if len(candidates) >= want:
                break
        if len(page) < RANKING_PAGE:
            break
        offset += RANKING_PAGE
    return candidates, terms


def _remote_scorer(job: Job, mode: dict, rule: dict, now: datetime) -> Scorer:
    def remote_scores(band: Sequence[Candidate]) -> list[float]:
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


def _scorer(job: Job, mode: dict, now: datetime) -> Scorer:
    """bestWorker scores: the scoring rule's (expression, static, function or webhook), or the
    default scoring of how well a worker matches the job's selectors (ACS §4.3)."""
    rule = mode.get("scoringRule") or {}
    kind = rule.get("kind")
    if kind == "expression":
        return expression_scorer_for(rule["expression"], job.labels)
    if kind == "static":
        value = rule.get("value")
        score = float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else 0.0
        return lambda band: [score] * len(band)
    if kind in ("function", "webhook"):
        return _remote_scorer(job, mode, rule, now)
    return default_scorer_for(job.labels, job_selectors(job, now))


@dataclass(frozen=True)
class Distribution:
    """What matching needs of a job's queue: the queue, its distribution policy and mode."""

    queue: Queue
    policy: DistributionPolicy
    mode: dict

    @property
    def max_offers(self) -> int:
        return int(self.mode.get("maxConcurrentOffers", 1))

    def expires_at(self, now: datetime) -> datetime | None:
        seconds = self.policy.offer_expires_after_seconds
        return now + timedelta(seconds=seconds) if seconds else None


def _distribution_for(job: Job) -> Distribution | None:
    queue = Queue.objects.select_related("distribution_policy").filter(pk=job.queue_id).first()
    if queue is None or queue.distribution_policy is None:
        return None
    policy = queue.distribution_policy
    return Distribution(queue=queue, policy=policy, mode=policy.mode or {"kind": "longestIdle"})


def _ranked(job: Job, dist: Distribution, held: int, now: datetime) -> tuple[list[Candidate], dict[str, ChannelTerms]]:
    if dist.mode.get("kind") == "bestWorker":
        # Scores need every candidate (and may come from a function or webhook).
        candidates, terms = eligible_candidates(job, dist.mode, now)
        ordered = order_candidates(
            candidates, mode=dist.mode, last_offered_worker_id=dist.queue.last_offered_worker_id,
            scorer=_scorer(job, dist.mode, now),
        )
        return ordered, terms
    return ranked_candidates(
        job, dist.mode, now, last_offered_worker_id=dist.queue.last_offered_worker_id,
        want=dist.max_offers - held + RANKING_MARGIN,
    )


def match_job(*, job_id: str, now: datetime | None = None) -> list[str]:
    """Offer a queued job to the best eligible workers; returns the ids of workers offered.

    No-op unless the job is `queued` and its queue has a distribution policy. Candidates are
    found and ranked without a transaction (a scoring rule may call out over HTTP); offers are
    then issued under the job's row lock (`_offer_locked`). Each offer expires
    `offerExpiresAfterSeconds` (seconds) after it is issued (a stored timer marks it expired).
    """
    now = clock(now)
    job = Job.objects.filter(pk=job_id, status=JobStatus.QUEUED).first()
    if job is None or job.queue_id is None or job.channel_id is None:
        return []
    dist = _distribution_for(job)
    if dist is None:
        return []
    held = Offer.objects.open_at(now).filter(job_id=job.pk).count()
    if held >= dist.max_offers:
        return []
    ordered, terms = _ranked(job, dist, held, now)
    if not ordered:
        return []
    return _offer_locked(job, dist, ordered, terms, now)


def _offer_locked(
    job: Job, dist: Distribution, ordered: list[Candidate], terms: dict[str, ChannelTerms], now: datetime
) -> list[str]:
    """Issue offers to `ordered` candidates until the job holds maxConcurrentOffers open offers.

    Locks the job row first (lock order job → worker, as everywhere): the lock serialises all
    offer decisions for this job across processes, and what ranking read is re-checked here, so
    two processes matching one job never exceed maxConcurrentOffers."""
    offered: list[str] = []
    with transaction.atomic():
        locked = Job.objects.select_for_update().filter(
            pk=job.pk, status=JobStatus.QUEUED, queue_id=job.queue_id, channel_id=job.channel_id
        ).first()
        if locked is None:
            return offered
        holding = set(Offer.objects.open_at(now).filter(job_id=job.pk).values_list("worker_id", flat=True))
        skip = holding | _declined_worker_ids(job.pk, now)
        slots = dist.max_offers - len(holding)
        expires_at = dist.expires_at(now)
        for candidate in ordered:
            if len(offered) >= slots:
                break
            if candidate.worker_id in skip:
                continue
            cost, max_jobs = terms[candidate.worker_id]
            if issue_offer(locked, candidate.worker_id, cost, max_jobs, expires_at, now) is not None:
                offered.append(candidate.worker_id)
        if offered:
            notify_changed(workers=offered, jobs=[job.pk], now=now)
            Job.objects.filter(pk=job.pk).update(**touched(now))
            if dist.mode.get("kind") == "roundRobin":
                Queue.objects.filter(pk=dist.queue.pk).update(last_offered_worker_id=offered[-1])
    return offered


def issue_offer(
    job: Job, worker_id: str, cost: int, max_jobs: int | None, expires_at: datetime | None, now: datetime
) -> Offer | None:
    """Offer a locked job to one worker, or None when the worker is gone or full.

    Re-checks under the worker's row lock: a worker deregistering (or filling up through another
    job's offer) concurrently is either seen here or sees this offer and revokes it."""
    worker = Worker.objects.select_for_update().filter(pk=worker_id, available_for_offers=True).first()
    if worker is None:
        return None
    if not fits(capacity=worker.capacity, load=load_of(worker_id, now), channel_id=job.channel_id or "", cost=cost,
                max_jobs=max_jobs):
        return None
    offer = Offer.objects.create(
        job=job, worker_id=worker_id, channel_id=job.channel_id or "", capacity_cost=cost, offered_at=now,
        expires_at=expires_at,
    )
    if expires_at is not None:
        RouterTimer.objects.create(kind=TimerKind.OFFER_EXPIRY, target_id=str(offer.pk), due_at=expires_at)
    Worker.objects.filter(pk=worker_id).update(**touched(now))
    events.offer_issued(job, offer, worker, now)
    return offer


def _stream(queue_id: str, channel_id: str, chunk: int = 200) -> Iterable[Job]:
    """Queued jobs of one queue on one channel in queue order, read in index order (the
    job_match_order index) a chunk at a time."""
    base = Job.objects.queued_in(queue_id).filter(channel_id=channel_id).in_queue_order()
    offset = 0
    while True:
        page = list(base[offset : offset + chunk])
        yield from page
        if len(page) < chunk:
            return
        offset += chunk


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
        yield from heapq.merge(*streams, key=Job.queue_order_key)


def queue_modes(queue_ids: Iterable[str]) -> dict[str, dict]:
    """Each queue's distribution mode ({} without a policy)."""
    return {
        queue_id: mode or {}
        for queue_id, mode in Queue.objects.filter(pk__in=list(queue_ids)).values_list("pk", "distribution_policy__mode")
    }


@dataclass
class WorkerSeat:
    """A worker as matching sees it from its side: capacity, channel terms, queues, declines."""

    worker: Worker
    channels: dict[str, ChannelTerms]
    queue_ids: list[str]
    declined: set[str]
    load: Load

    @classmethod
    def read(cls, worker: Worker, now: datetime) -> WorkerSeat:
        return cls(
            worker=worker,
            channels={c.channel_id: (c.capacity_cost_per_job, c.max_number_of_jobs) for c in worker.channels.all()},
            queue_ids=list(worker.queue_links.values_list("queue_id", flat=True)),
            declined=declined_job_ids(worker.pk, now),
            load=load_of(worker.pk, now),
        )

    def fits_job(self, job: Job, load: Load | None = None) -> bool:
        cost, max_jobs = self.channels[job.channel_id or ""]
        return fits(capacity=self.worker.capacity, load=load or self.load, channel_id=job.channel_id or "",
                    cost=cost, max_jobs=max_jobs)

    def has_room(self) -> bool:
        return any(
            fits(capacity=self.worker.capacity, load=self.load, channel_id=ch, cost=cost, max_jobs=max_jobs)
            for ch, (cost, max_jobs) in self.channels.items()
        )

    def candidate_jobs(self, now: datetime) -> Iterable[Job]:
        """Queued jobs in this worker's queue order that it could take now (selectors, declines,
        capacity), read lazily."""
        modes = queue_modes(self.queue_ids)
        for job in queued_jobs_for(self.queue_ids, list(self.channels)):
            if job.pk in self.declined or not self.fits_job(job):
                continue
            if worker_qualifies(job, self.worker.labels, modes.get(job.queue_id or "", {}), now):
                yield job


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
    seat = WorkerSeat.read(worker, now)
    if not seat.channels or not seat.queue_ids or not seat.has_room():
        return 0
    received = 0
    for job in seat.candidate_jobs(now):
        if worker_id in match_job(job_id=job.pk, now=now):
            received += 1
            seat.load = load_of(worker_id, now)
            if not seat.has_room():
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
    # Worker order: the worker rows are updated (locked) in id order, as everywhere.
    targets = list(
        Offer.objects.filter(offers, status=OfferStatus.OPEN).order_by("worker_id", "id").values_list(
            "id", "job_id", "worker_id"
        )
    )
    revoked = []
    workers = []
    for offer_id, job_id, worker_id in targets:
        if Offer.objects.filter(pk=offer_id, status=OfferStatus.OPEN).update(
            status=OfferStatus.REVOKED, ended_at=now
        ):
            revoked.append((str(offer_id), job_id))
            workers.append(worker_id)
            events.offer_ended("RouterWorkerOfferRevoked", job_id, str(offer_id), worker_id, now)
            Worker.objects.filter(pk=worker_id).update(**touched(now))
    if revoked:
        notify_changed(workers=workers, jobs=[job_id for _, job_id in revoked], now=now)
    return revoked


@dataclass(frozen=True)
class Eligibility:
    """Who could ever be offered a job, narrowed step by step as `match_job` narrows it: counts
    of registered workers (any availability) that list the job's queue, that also have its
    channel, and that also satisfy its worker selectors with room for one such job at zero load;
    then how many of those are available for offers now. `has_policy` is whether the queue has
    a distribution policy (without one nothing is offered)."""

    queue_id: str
    channel_id: str
    has_policy: bool
    serving_queue: int
    on_channel: int
    qualified: int
    available: int

    def explain(self) -> str:
        """One line for a supervisor: the first reason nobody is offered the job, or how many can be."""
        q, c = self.queue_id, self.channel_id
        if not self.has_policy:
            return f"queue {q} has no distribution policy: nothing is offered from it"
        if not self.serving_queue:
            return f"no worker serves queue {q}"
        if not self.on_channel:
            return f"{self.serving_queue} worker(s) serve queue {q}, but none on channel {c}"
        if not self.qualified:
            return (f"{self.on_channel} worker(s) serve queue {q} on channel {c}, but none matches the job's"
                    " worker selectors with capacity for it")
        if not self.available:
            return f"{self.qualified} worker(s) can serve it, none available for offers now (all in Do not disturb)"
        return f"{self.qualified} worker(s) can serve it, {self.available} available for offers now"


def job_eligibility(job: Job, now: datetime) -> Eligibility:
    """Eligibility of a job in its queue and channel, counted with the rules `match_job` applies
    (`worker_qualifies`, `fits` at zero load), ignoring what changes from moment to moment
    (current load, open offers, declines). Reads only; for the admin's job page."""
    mode = queue_modes([job.queue_id or ""]).get(job.queue_id or "")
    has_policy = Queue.objects.filter(pk=job.queue_id, distribution_policy__isnull=False).exists()
    serving = WorkerQueue.objects.filter(queue_id=job.queue_id).values_list("worker_id", flat=True)
    rows = WorkerChannel.objects.filter(channel_id=job.channel_id, worker_id__in=serving).values_list(
        "capacity_cost_per_job", "max_number_of_jobs", "worker__capacity", "worker__labels",
        "worker__available_for_offers",
    )
    qualified = [
        available
        for cost, max_jobs, capacity, labels, available in rows
        if worker_qualifies(job, labels, mode or {}, now)
        and fits(capacity=capacity, load=Load(), channel_id=job.channel_id or "", cost=cost, max_jobs=max_jobs)
    ]
    return Eligibility(
        queue_id=job.queue_id or "", channel_id=job.channel_id or "", has_policy=has_policy,
        serving_queue=serving.count(), on_channel=len(rows), qualified=len(qualified), available=sum(qualified),
    )
