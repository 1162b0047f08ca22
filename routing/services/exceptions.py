"""Exception policies (ACS Job Router 2023-11-01 §4.5): triggers and actions on queued jobs.

When a job starts a visit to a queue (`enter_queue`), its queue's exception rules are armed:
`queueLength` rules are checked right after commit (does the queue, this job included, now hold
more than `threshold` queued jobs?), `waitTime` rules become stored timers at
enqueue time + `thresholdSeconds`. A rule fires at most once per job per queue visit, and only
while the job is still queued in that visit. Firing records the rule on the job
(`exception_triggers`) and runs its actions in order: cancel, manualReclassify (queue, priority,
worker selectors, then a new visit), reclassify (labelsToUpsert merged, then classification).
"""

from __future__ import annotations

from datetime import datetime, timedelta

from django.db import transaction
from django.db.models import Q

from routing import validation as v
from routing.models import Job, JobStatus, Queue, RouterTimer, TimerKind
from routing.services.common import after_commit, clock
from routing.services.matching import match_job, revoke_offers


def _rules_for(queue_id: str | None) -> tuple[str | None, list[dict]]:
    queue = Queue.objects.select_related("exception_policy").filter(pk=queue_id).first() if queue_id else None
    if queue is None or queue.exception_policy is None:
        return None, []
    return queue.exception_policy.pk, queue.exception_policy.exception_rules or []


def arm_exception_rules(job: Job, now: datetime) -> None:
    """Arm the rules of the job's queue for its current visit (job locked; saved by the caller)."""
    _policy_id, rules = _rules_for(job.queue_id)
    for rule in rules:
        trigger = rule["trigger"]
        if trigger["kind"] == "queueLength":
            after_commit(exception_rule_fire, job_id=job.pk, rule_id=rule["id"], visit=job.queue_visit)
        elif trigger["kind"] == "waitTime":
            RouterTimer.objects.create(
                kind=TimerKind.EXCEPTION_WAIT_TIME,
                target_id=wait_time_target(job.pk, rule["id"], job.queue_visit),
                due_at=(job.enqueued_at or now) + timedelta(seconds=trigger["thresholdSeconds"]),
            )


def wait_time_target(job_id: str, rule_id: str, visit: int) -> str:
    # Job ids may contain "|"; they go last so the split stays unambiguous.
    return f"{visit}|{rule_id}|{job_id}"


def parse_wait_time_target(target: str) -> tuple[str, str, int]:
    visit, rule_id, job_id = target.split("|", 2)
    return job_id, rule_id, int(visit)


def exception_rule_fire(*, job_id: str, rule_id: str, visit: int, now: datetime | None = None) -> bool:
    """Fire one exception rule for one queue visit of a job, if it still applies; returns
    whether it fired. Idempotent: a second call for the same visit does nothing."""
    from routing.services.classification import request_classification
    from routing.services.jobs import cancel_locked, enter_queue, stamp_selectors, refresh_expedite, _arm_selector_expiry

    now = clock(now)
    with transaction.atomic():
        job = Job.objects.select_for_update().filter(pk=job_id, status=JobStatus.QUEUED, queue_visit=visit).first()
        if job is None:
            return False
        if any(t.get("ruleId") == rule_id and t.get("visit") == visit for t in job.exception_triggers):
            return False
        policy_id, rules = _rules_for(job.queue_id)
        rule = next((r for r in rules if r["id"] == rule_id), None)
        if rule is None:
            return False
        trigger = rule["trigger"]
        if trigger["kind"] == "queueLength":
            length = Job.objects.filter(queue_id=job.queue_id, status=JobStatus.QUEUED).count()
            if length <= trigger["threshold"]:
                return False
        job.exception_triggers = [
            *job.exception_triggers,
            {"ruleId": rule_id, "exceptionPolicyId": policy_id, "queueId": job.queue_id, "visit": visit,
             "firedAt": v.format_datetime(now)},
        ]
        for action in rule["actions"]:
            kind = action["kind"]
            if kind == "cancel":
                cancel_locked(job, note=action.get("note"), disposition_code=action.get("dispositionCode"), now=now)
                return True
            if kind == "manualReclassify":
                revoke_offers(Q(job_id=job.pk), now)
                previous_queue = job.queue_id
                if action.get("queueId"):
                    if not Queue.objects.filter(pk=action["queueId"]).exists():
                        continue
                    job.queue_id = action["queueId"]
                if action.get("priority") is not None:
                    job.priority = action["priority"]
                if action.get("workerSelectors"):
                    job.attached_worker_selectors = stamp_selectors(
                        v.worker_selectors(action["workerSelectors"], "workerSelectors"), now
                    )
                    _arm_selector_expiry(job, job.attached_worker_selectors)
                refresh_expedite(job, now)
                enter_queue(job, now, same_queue=job.queue_id == previous_queue)
            elif kind == "reclassify":
                job.labels = {**job.labels, **(action.get("labelsToUpsert") or {})}
                if action.get("classificationPolicyId"):
                    job.classification_policy_id = action["classificationPolicyId"]
                if job.classification_policy_id:
                    request_classification(job, now)
            if job.status != JobStatus.QUEUED:
                break
        job.touch(now)
        job.save()
        if job.status == JobStatus.QUEUED:
            after_commit(match_job, job_id=job.pk)
    return True


def exception_wait_time_due(*, target: str, now: datetime | None = None) -> bool:
    """Timer: a waitTime trigger's threshold passed for one queue visit."""
    job_id, rule_id, visit = parse_wait_time_target(target)
    return exception_rule_fire(job_id=job_id, rule_id=rule_id, visit=visit, now=now)
