"""Exception policies (ACS Job Router 2023-11-01 §4.5): triggers and actions on queued jobs.

When a job starts a visit to a queue (`queueing.enter_queue`), its queue's exception rules are
armed as stored timers: `queueLength` rules due at once (does the queue, this job included, now
hold more than `threshold` queued jobs?), `waitTime` rules at enqueue time + `thresholdSeconds`.
A rule fires at most once per job per queue visit, and only while the job is still queued in that
visit. Firing records the rule on the job (`exception_triggers`) and runs its actions in order:
cancel, manualReclassify (queue, priority, worker selectors, then a new visit), reclassify
(labelsToUpsert merged, then classification).
"""

from __future__ import annotations

from datetime import datetime

from django.db import transaction
from django.db.models import Q

from routing import validation as v
from routing.clock import clock
from routing.models import Job, JobStatus, Queue, TimerKind
from routing.services import events
from routing.services.common import owe
from routing.services.matching import revoke_offers
from routing.services.queueing import (
    arm_selector_expiry,
    cancel_locked,
    enter_queue,
    exception_rules_of,
    parse_rule_target,
    refresh_expedite,
    request_classification,
    stamp_selectors,
)


def _manual_reclassify(job: Job, action: dict, now: datetime) -> None:
    revoke_offers(Q(job_id=job.pk), now)
    previous_queue = job.queue_id
    if action.get("queueId"):
        if not Queue.objects.filter(pk=action["queueId"]).exists():
            return
        job.queue_id = action["queueId"]
    if action.get("priority") is not None:
        job.priority = action["priority"]
    if action.get("workerSelectors"):
        job.attached_worker_selectors = stamp_selectors(
            v.worker_selectors(action["workerSelectors"], "workerSelectors"), now
        )
        arm_selector_expiry(job, job.attached_worker_selectors)
    refresh_expedite(job, now)
    enter_queue(job, now, same_queue=job.queue_id == previous_queue)


def _reclassify(job: Job, action: dict, now: datetime) -> None:
    job.labels = {**job.labels, **(action.get("labelsToUpsert") or {})}
    if action.get("classificationPolicyId"):
        job.classification_policy_id = action["classificationPolicyId"]
    if job.classification_policy_id:
        request_classification(job, now)


def _run_actions(job: Job, actions: list[dict], now: datetime) -> None:
    """Run a fired rule's actions in order on the locked job, stopping once it left the queue."""
    for action in actions:
        if action["kind"] == "cancel":
            cancel_locked(job, note=action.get("note"), disposition_code=action.get("dispositionCode"), now=now)
            return
        if action["kind"] == "manualReclassify":
            _manual_reclassify(job, action, now)
        elif action["kind"] == "reclassify":
            _reclassify(job, action, now)
        if job.status != JobStatus.QUEUED:
            break
    job.touch(now)
    job.save()
    if job.status == JobStatus.QUEUED:
        owe(TimerKind.MATCH_JOB, job.pk, now)


def _triggered(job: Job, rule: dict) -> bool:
    trigger = rule["trigger"]
    if trigger["kind"] != "queueLength":
        return True  # waitTime: the timer came due
    return Job.objects.queued_in(job.queue_id).count() > trigger["threshold"]


def exception_rule_fire(*, job_id: str, rule_id: str, visit: int, now: datetime | None = None) -> bool:
    """Fire one exception rule for one queue visit of a job, if it still applies; returns
    whether it fired. Idempotent: a second call for the same visit does nothing."""
    now = clock(now)
    with transaction.atomic():
        job = Job.objects.select_for_update().filter(pk=job_id, status=JobStatus.QUEUED, queue_visit=visit).first()
        if job is None:
            return False
        if any(t.get("ruleId") == rule_id and t.get("visit") == visit for t in job.exception_triggers):
            return False
        policy_id, rules = exception_rules_of(job.queue_id)
        rule = next((r for r in rules if r["id"] == rule_id), None)
        if rule is None or not _triggered(job, rule):
            return False
        job.exception_triggers = [
            *job.exception_triggers,
            {"ruleId": rule_id, "exceptionPolicyId": policy_id, "queueId": job.queue_id, "visit": visit,
             "firedAt": v.format_datetime(now)},
        ]
        events.job_exception_triggered(job, rule_id, policy_id, now)
        _run_actions(job, rule["actions"], now)
    return True


def exception_rule_due(*, target: str, now: datetime | None = None) -> bool:
    """Timer: a waitTime threshold passed, or a queueLength check is owed, for one queue visit."""
    job_id, rule_id, visit = parse_rule_target(target)
    return exception_rule_fire(job_id=job_id, rule_id=rule_id, visit=visit, now=now)
