"""Classification of jobs (ACS Job Router 2023-11-01 §4.4).

`routing.services.queueing.request_classification` marks a locked job pendingClassification and
owes a classification (a `classify` timer row due at once). Its handler, `classify_owed`, runs
`job_classify` right away, or hands it to a django-q2 task when the policy calls out over HTTP,
so a slow function never holds up the request that changed the job. `job_classify` evaluates the
policy with no transaction open (outbound calls never run inside one), then applies the outcome in
a short transaction by compare-and-set on the job's ETag: if the job changed meanwhile, that newer
change has asked for its own classification and this outcome is dropped.
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta

from django.conf import settings
from django.db import transaction

from routing import limits
from routing import validation as v
from routing.clock import clock
from routing.engine.rules import Classification, classify
from routing.models import ClassificationPolicy, Job, JobStatus, Queue, RouterTimer, TimerKind
from routing.services import events
from routing.services.common import after_commit
from routing.services.notify import notify_changed
from routing.services.queueing import arm_selector_expiry, enter_queue, refresh_expedite, stamp_selectors
from routing.services.remote_rules import call_remote_rule, has_remote_rules

logger = logging.getLogger("routing.classification")


def _policy_dict(policy: ClassificationPolicy) -> dict:
    return {
        "queueSelectorAttachments": policy.queue_selector_attachments or [],
        "fallbackQueueId": policy.fallback_queue_id,
        "prioritizationRule": policy.prioritization_rule,
        "workerSelectorAttachments": policy.worker_selector_attachments or [],
    }


def _enqueue_remote_classification(job_id: str) -> None:
    from django_q.tasks import async_task

    async_task("routing.tasks.classify_job", job_id, task_name=f"classify {job_id}"[:100])


LEASE_MARGIN_SECONDS = 30


def classify_owed(*, job_id: str, now: datetime | None = None) -> None:
    """Owed work: classify a job now, or hand it to the background worker (after the current
    transaction commits) when its policy makes HTTP calls."""
    policy_id = Job.objects.filter(pk=job_id).values_list("classification_policy_id", flat=True).first()
    policy = ClassificationPolicy.objects.filter(pk=policy_id).first() if policy_id else None
    if policy is not None and has_remote_rules(_policy_dict(policy)):
        # The lease row stands for the task until `job_classify` ends it; a task lost with its
        # process lets the lease come due, and the classification is requested again.
        due = clock(now) + timedelta(seconds=settings.JOBROUTER_TASK_TIMEOUT_SECONDS + LEASE_MARGIN_SECONDS)
        RouterTimer.objects.create(kind=TimerKind.CLASSIFY_LEASE, target_id=job_id, due_at=due)
        after_commit(_enqueue_remote_classification, job_id)
        return
    job_classify(job_id=job_id, now=now)


def _evaluate(job: Job) -> tuple[Classification | None, str | None]:
    """(outcome, error) of the job's policy. Outside any transaction: rules may call out."""
    policy = ClassificationPolicy.objects.filter(pk=job.classification_policy_id).first()
    if policy is None:
        return None, f"Classification policy {job.classification_policy_id!r} does not exist."
    queues = [(qid, {**(labels or {}), "Id": qid}) for qid, labels in Queue.objects.order_by("pk").values_list("pk", "labels")]
    outcome = classify(
        _policy_dict(policy), labels=job.labels, current_queue_id=job.queue_id, queues=queues, remote=call_remote_rule
    )
    if outcome.error is None and not Queue.objects.filter(pk=outcome.queue_id).exists():
        return outcome, f"Queue {outcome.queue_id!r} chosen by classification does not exist."
    return outcome, outcome.error


def _fail(job: Job, error: str, now: datetime) -> str:
    job.status = JobStatus.CLASSIFICATION_FAILED
    # Messages quote rule answers and expressions: what is stored (and every GET returns) stays short.
    error = limits.truncate(error)
    job.classification_error = error
    logger.info("job %s classification failed: %s", job.pk, error)
    notify_changed(jobs=[job.pk], now=now)
    job.touch(now)
    job.save()
    events.job_classification_failed(job, error, now)
    return job.status


def _apply_outcome(job: Job, outcome: Classification, now: datetime) -> str:
    try:
        selectors = v.worker_selectors(outcome.worker_selectors, "attachedWorkerSelectors")
    except v.InvalidRequest as exc:
        return _fail(job, f"Worker selectors from classification are invalid: {exc.message}", now)
    same_queue = outcome.queue_id == job.queue_id
    job.queue_id = outcome.queue_id
    if outcome.priority is not None:
        job.priority = outcome.priority
    job.attached_worker_selectors = stamp_selectors(selectors, now)
    refresh_expedite(job, now)
    events.job_classified(job, now)
    enter_queue(job, now, same_queue=same_queue)
    job.touch(now)
    job.save()
    arm_selector_expiry(job, job.attached_worker_selectors)
    return job.status


def job_classify(*, job_id: str, now: datetime | None = None) -> str | None:
    """Classify a pendingClassification job; returns its new status (None if nothing was done).

    Success: queue, priority and attached worker selectors from the policy, then `queued` (a new
    queue visit, unless the job stays in the queue it was visiting). Failure (no queue, a
    rule error, an HTTP failure): `classificationFailed`, with the reason in
    `classification_error`. Ends the job's classification lease (`classify_owed`) either way.
    """
    try:
        return _classify(job_id, now)
    finally:
        RouterTimer.objects.filter(kind=TimerKind.CLASSIFY_LEASE, target_id=job_id, fired_at__isnull=True).delete()


def _classify(job_id: str, now: datetime | None) -> str | None:
    job = Job.objects.filter(pk=job_id, status=JobStatus.PENDING_CLASSIFICATION).first()
    if job is None:
        return None
    seen_etag = job.etag
    outcome, error = _evaluate(job)
    now = clock(now)
    with transaction.atomic():
        job = Job.objects.select_for_update().filter(
            pk=job_id, status=JobStatus.PENDING_CLASSIFICATION, etag=seen_etag
        ).first()
        if job is None:
            return None
        if error is not None or outcome is None:
            return _fail(job, error or "Classification produced no outcome.", now)
        return _apply_outcome(job, outcome, now)
