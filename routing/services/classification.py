"""Classification of jobs (ACS Job Router 2023-11-01 §4.4).

`request_classification` marks a locked job pendingClassification and, after commit, runs
`job_classify` — inline, or as a django-q2 task when the policy calls out over HTTP, so a slow
function never holds up the request that changed the job. `job_classify` evaluates the policy
with no transaction open (outbound calls never run inside one), then applies the outcome in a
short transaction by compare-and-set on the job's ETag: if the job changed meanwhile, that newer
change has asked for its own classification and this outcome is dropped.
"""

from __future__ import annotations

import logging
from datetime import datetime

from django.db import transaction
from django.db.models import Q

from routing import validation as v
from routing.engine.rules import classify
from routing.models import ClassificationPolicy, Job, JobStatus, Queue
from routing.services.common import after_commit, clock
from routing.services.matching import revoke_offers
from routing.services.notify import notify_changed
from routing.services.remote_rules import call_remote_rule, has_remote_rules

logger = logging.getLogger("routing.classification")


def request_classification(job: Job, now: datetime) -> None:
    """Send a locked job (saved by the caller) to classification."""
    if job.status == JobStatus.QUEUED:
        revoke_offers(Q(job_id=job.pk), now)
    job.status = JobStatus.PENDING_CLASSIFICATION
    job.classification_error = None
    after_commit(classify_later, job_id=job.pk)


def _policy_dict(policy: ClassificationPolicy) -> dict:
    return {
        "queueSelectorAttachments": policy.queue_selector_attachments or [],
        "fallbackQueueId": policy.fallback_queue_id,
        "prioritizationRule": policy.prioritization_rule,
        "workerSelectorAttachments": policy.worker_selector_attachments or [],
    }


def classify_later(*, job_id: str) -> None:
    """Run classification now, or hand it to the background worker when it makes HTTP calls."""
    policy_id = Job.objects.filter(pk=job_id).values_list("classification_policy_id", flat=True).first()
    policy = ClassificationPolicy.objects.filter(pk=policy_id).first() if policy_id else None
    if policy is not None and has_remote_rules(_policy_dict(policy)):
        from django_q.tasks import async_task

        async_task("routing.tasks.classify_job", job_id, task_name=f"classify {job_id}"[:100])
        return
    job_classify(job_id=job_id)


def job_classify(*, job_id: str, now: datetime | None = None) -> str | None:
    """Classify a pendingClassification job; returns its new status (None if nothing was done).

    Success: queue, priority and attached worker selectors from the policy, then `queued` (a new
    queue visit, unless the job stays in the queue it was visiting). Failure (no queue, a
    rule error, an HTTP failure): `classificationFailed`, with the reason in
    `classification_error`.
    """
    from routing.services.jobs import _arm_selector_expiry, enter_queue, refresh_expedite, stamp_selectors

    job = Job.objects.filter(pk=job_id, status=JobStatus.PENDING_CLASSIFICATION).first()
    if job is None:
        return None
    seen_etag = job.etag
    policy = ClassificationPolicy.objects.filter(pk=job.classification_policy_id).first()
    if policy is None:
        outcome_error = f"Classification policy {job.classification_policy_id!r} does not exist."
        outcome = None
    else:
        queues = [(qid, {**(labels or {}), "Id": qid}) for qid, labels in Queue.objects.order_by("pk").values_list("pk", "labels")]
        # Outside any transaction: rules may call functions and webhooks over HTTP.
        outcome = classify(
            _policy_dict(policy), labels=job.labels, current_queue_id=job.queue_id, queues=queues, remote=call_remote_rule
        )
        outcome_error = outcome.error
    now = clock(now)
    with transaction.atomic():
        job = Job.objects.select_for_update().filter(
            pk=job_id, status=JobStatus.PENDING_CLASSIFICATION, etag=seen_etag
        ).first()
        if job is None:
            return None
        if outcome_error is None and outcome is not None and not Queue.objects.filter(pk=outcome.queue_id).exists():
            outcome_error = f"Queue {outcome.queue_id!r} chosen by classification does not exist."
        if outcome_error is not None or outcome is None:
            job.status = JobStatus.CLASSIFICATION_FAILED
            notify_changed(jobs=[job.pk])
            job.classification_error = outcome_error
            logger.info("job %s classification failed: %s", job_id, outcome_error)
            job.touch(now)
            job.save()
            return job.status
        same_queue = outcome.queue_id == job.queue_id
        job.queue_id = outcome.queue_id
        if outcome.priority is not None:
            job.priority = outcome.priority
        try:
            selectors = v.worker_selectors(outcome.worker_selectors, "attachedWorkerSelectors")
        except v.InvalidRequest as exc:
            job.status = JobStatus.CLASSIFICATION_FAILED
            job.classification_error = f"Worker selectors from classification are invalid: {exc.message}"
            job.touch(now)
            job.save()
            return job.status
        job.attached_worker_selectors = stamp_selectors(selectors, now)
        refresh_expedite(job, now)
        enter_queue(job, now, same_queue=same_queue)
        job.touch(now)
        job.save()
        _arm_selector_expiry(job, job.attached_worker_selectors)
        return job.status
