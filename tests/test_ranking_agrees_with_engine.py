"""The SQL ranking in `match_job` (routing.services.matching.ranked_candidates) must order
workers exactly as the plain-Python distribution modes (routing.engine.distribution) say:
randomised workers, loads, idle times and queue priorities, compared for both modes."""

import random
from datetime import timedelta

import pytest
from django.utils import timezone

from routing.engine.distribution import order_candidates
from routing.models import Job, Worker, WorkerQueue
from routing.services.matching import eligible_candidates, ranked_candidates
from routing.services.offers import offer_accept
from tests import factories

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.postgres]


@pytest.mark.parametrize("kind", ["longestIdle", "roundRobin"])
@pytest.mark.parametrize("seed", [1, 2, 3])
def test_sql_ranking_matches_engine_order(kind, seed):
    rng = random.Random(seed)
    factories.queue_with_policy("q1", mode=kind, max_offers=1)
    now = timezone.now()
    for i in range(24):
        factories.worker(f"w{i:02d}", capacity=rng.choice([1, 2, 3]), labels={"skill": rng.randint(0, 9)})
    # Busy some workers: accept offers of jobs so they carry load.
    for n in range(10):
        factories.queued_job(f"busy{n}")
        offer = Job.objects.get(pk=f"busy{n}").offers.filter(status="open").first()
        if offer:
            offer_accept(worker_id=offer.worker_id, offer_id=str(offer.pk))
    for worker in Worker.objects.all():
        Worker.objects.filter(pk=worker.pk).update(
            idle_since=None if rng.random() < 0.2 else now - timedelta(seconds=rng.randint(0, 3600))
        )
        WorkerQueue.objects.filter(worker=worker).update(priority=rng.choice([0, 0, 1, 5]))
    job, _ = Job.objects.get_or_create(pk="probe", defaults=dict(
        queue_id="q1", channel_id="voice", status="queued", created_at=now, updated_at=now, enqueued_at=now,
        requested_worker_selectors=[{"key": "skill", "labelOperator": "greaterThan", "value": 2, "expedite": False,
                                     "status": "active"}],
    ))
    mode = {"kind": kind, "maxConcurrentOffers": 1}
    last = rng.choice([None, "w07", "w15"])

    candidates, _ = eligible_candidates(job, mode, now)
    expected = [c.worker_id for c in order_candidates(candidates, mode=mode, last_offered_worker_id=last)]
    ranked, _ = ranked_candidates(job, mode, now, last_offered_worker_id=last, want=len(expected) + 5)

    assert expected, "the scenario should leave some eligible workers"
    assert [c.worker_id for c in ranked] == expected
