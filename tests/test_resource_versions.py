"""ETag and Last-Modified change together. The REST layer sends a row's `etag` as `ETag` and its
`updated_at` as `Last-Modified` (routing/api/views.py); a write that renews one without the
other lets a client's `If-Modified-Since` cache keep a stale body, or makes `Last-Modified` lie.

Each step below runs on a clock that moved on by two seconds, then compares every job and worker
row with its state before the step: a new ETag must come with a new Last-Modified, and the
reverse. The steps reach every write that renews an ETag through `QuerySet.update` (offer issue,
decline, expiry, accept, complete, revoke)."""

from __future__ import annotations

from datetime import timedelta

import pytest
import time_machine
from django.utils import timezone
from django.utils.http import http_date

from routing.models import Assignment, Job, Offer, OfferStatus, Worker
from routing.services.jobs import job_cancel, job_complete
from routing.services.offers import offer_accept, offer_decline, offer_expire
from routing.services.workers import worker_set_availability
from tests import factories

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.postgres]

Versions = dict[tuple[str, str], tuple[str, str]]


def _versions() -> Versions:
    """(kind, id) → (ETag, Last-Modified as the API renders it) of every job and worker."""
    rows: Versions = {}
    for kind, model in (("job", Job), ("worker", Worker)):
        for pk, etag, updated_at in model.objects.values_list("pk", "etag", "updated_at"):
            rows[(kind, pk)] = (etag, http_date(updated_at.timestamp()))
    return rows


def _step(traveller, action) -> set[tuple[str, str]]:
    """Run `action` two seconds later; returns the rows whose ETag changed, after checking that
    each such row's Last-Modified changed with it and no row's Last-Modified changed alone."""
    before = _versions()
    traveller.shift(timedelta(seconds=2))
    action()
    after = _versions()
    changed = set()
    for key, (etag, modified) in before.items():
        if key not in after:
            continue
        new_etag, new_modified = after[key]
        assert (new_etag != etag) == (new_modified != modified), f"{key}: ETag and Last-Modified disagree"
        if new_etag != etag:
            changed.add(key)
    return changed


def _open_offer(job_id: str) -> Offer:
    return Offer.objects.get(job_id=job_id, status=OfferStatus.OPEN)


def test_every_write_that_renews_an_etag_renews_last_modified():
    with time_machine.travel(timezone.now(), tick=False) as traveller:
        factories.queue_with_policy("q1", expires=60)
        factories.worker("w1")
        factories.worker("w2")
        factories.queued_job("j0", channel="other")  # a bystander row nobody touches

        # match_job renews the job's ETag and issue_offer the offered worker's.
        changed = _step(traveller, lambda: factories.queued_job("j1"))
        first = _open_offer("j1")
        assert ("worker", first.worker_id) in changed

        # offer_decline renews the worker and the job; the job is offered to the other worker.
        changed = _step(traveller, lambda: offer_decline(worker_id=first.worker_id, offer_id=str(first.pk)))
        second = _open_offer("j1")
        assert {("job", "j1"), ("worker", first.worker_id), ("worker", second.worker_id)} <= changed

        # offer_expire renews the job (and deregisters the worker).
        traveller.shift(timedelta(seconds=61))
        changed = _step(traveller, lambda: offer_expire(offer_id=str(second.pk)))
        assert {("job", "j1"), ("worker", second.worker_id)} <= changed

        # Re-registering makes the job ring again; accepting renews the worker (assign_locked).
        _step(traveller, lambda: worker_set_availability(worker_id=second.worker_id, available=True))
        third = _open_offer("j1")
        changed = _step(traveller, lambda: offer_accept(worker_id=third.worker_id, offer_id=str(third.pk)))
        assert {("job", "j1"), ("worker", third.worker_id)} <= changed

        # job_complete renews the worker whose customer went to wrap-up.
        assignment = Assignment.objects.get(job_id="j1")
        changed = _step(traveller, lambda: job_complete(job_id="j1", assignment_id=str(assignment.pk)))
        assert {("job", "j1"), ("worker", third.worker_id)} <= changed

        # Cancelling a ringing job revokes its offer and renews that worker (revoke_offers).
        _step(traveller, lambda: factories.queued_job("j2"))
        ringing = _open_offer("j2")
        changed = _step(traveller, lambda: job_cancel(job_id="j2"))
        assert {("job", "j2"), ("worker", ringing.worker_id)} <= changed
        assert ("job", "j0") not in changed
