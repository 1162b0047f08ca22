"""Policies and queues: create, update (JSON merge patch) and delete (ACS 2023-11-01 §2.1)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from django.db import transaction
from django.db.models import ProtectedError

from routing import validation as v
from routing.errors import Conflict, InvalidRequest, NotFound
from routing.models import (
    ACTIVE_JOB_STATUSES,
    ClassificationPolicy,
    DistributionPolicy,
    ExceptionPolicy,
    Job,
    Queue,
)
from routing.services.common import Precondition, after_commit, clock, locked_get, upsert


def distribution_policy_upsert(
    *, policy_id: str, patch: dict[str, Any], precondition: Precondition | None = None, now: datetime | None = None
) -> tuple[DistributionPolicy, bool]:
    """Create or merge-patch a DistributionPolicy. `patch` is the 2023-11-01 wire shape
    (`name`, `offerExpiresAfterSeconds` in seconds, `mode`). Raises InvalidRequest (400),
    PreconditionFailed (412). Returns (policy, created)."""
    now = clock(now)

    def apply(policy: DistributionPolicy, created: bool) -> None:
        if "name" in patch:
            policy.name = v.optional_string(patch["name"], "name") or ""
        if "offerExpiresAfterSeconds" in patch:
            policy.offer_expires_after_seconds = v.optional_number(
                patch["offerExpiresAfterSeconds"], "offerExpiresAfterSeconds", minimum=0
            )
        if "mode" in patch and patch["mode"] is not None:
            policy.mode = v.distribution_mode(v.merge_polymorphic(policy.mode, patch["mode"]))
        elif created:
            raise InvalidRequest("mode is required.", target="mode")

    return upsert(DistributionPolicy, pk=policy_id, now=now, precondition=precondition, apply=apply)


def classification_policy_upsert(
    *, policy_id: str, patch: dict[str, Any], precondition: Precondition | None = None, now: datetime | None = None
) -> tuple[ClassificationPolicy, bool]:
    """Create or merge-patch a ClassificationPolicy (lists replace whole). Raises InvalidRequest
    (400) with the field path, including an expression's syntax error position."""
    now = clock(now)

    def apply(policy: ClassificationPolicy, created: bool) -> None:
        if "name" in patch:
            policy.name = v.optional_string(patch["name"], "name") or ""
        if "fallbackQueueId" in patch:
            policy.fallback_queue_id = v.optional_string(patch["fallbackQueueId"], "fallbackQueueId")
        if "queueSelectorAttachments" in patch:
            policy.queue_selector_attachments = [
                v.queue_selector_attachment(a, f"queueSelectorAttachments[{i}]")
                for i, a in enumerate(v.require_list(patch["queueSelectorAttachments"] or [], "queueSelectorAttachments"))
            ]
        if "workerSelectorAttachments" in patch:
            policy.worker_selector_attachments = [
                v.worker_selector_attachment(a, f"workerSelectorAttachments[{i}]")
                for i, a in enumerate(
                    v.require_list(patch["workerSelectorAttachments"] or [], "workerSelectorAttachments")
                )
            ]
        if "prioritizationRule" in patch:
            raw = patch["prioritizationRule"]
            policy.prioritization_rule = (
                None if raw is None else v.rule(v.merge_polymorphic(policy.prioritization_rule, raw), "prioritizationRule")
            )

    return upsert(ClassificationPolicy, pk=policy_id, now=now, precondition=precondition, apply=apply)


def exception_policy_upsert(
    *, policy_id: str, patch: dict[str, Any], precondition: Precondition | None = None, now: datetime | None = None
) -> tuple[ExceptionPolicy, bool]:
    """Create or merge-patch an ExceptionPolicy; `exceptionRules` is a list that replaces whole."""
    now = clock(now)

    def apply(policy: ExceptionPolicy, created: bool) -> None:
        if "name" in patch:
            policy.name = v.optional_string(patch["name"], "name") or ""
        if "exceptionRules" in patch:
            rules = [
                v.exception_rule(r, f"exceptionRules[{i}]")
                for i, r in enumerate(v.require_list(patch["exceptionRules"] or [], "exceptionRules"))
            ]
            ids = [r["id"] for r in rules]
            if len(set(ids)) != len(ids):
                raise InvalidRequest("exceptionRules ids must be unique.", target="exceptionRules")
            policy.exception_rules = rules

    return upsert(ExceptionPolicy, pk=policy_id, now=now, precondition=precondition, apply=apply)


def queue_upsert(
    *, queue_id: str, patch: dict[str, Any], precondition: Precondition | None = None, now: datetime | None = None
) -> tuple[Queue, bool]:
    """Create or merge-patch a RouterQueue. `labels` merge per key and always carry
    `Id = queue_id` (as the service adds it). `priority` (int) is the seed 002 extension.
    Raises InvalidRequest when a referenced policy does not exist."""
    now = clock(now)

    def apply(queue: Queue, created: bool) -> None:
        if "name" in patch:
            queue.name = v.optional_string(patch["name"], "name") or ""
        if "distributionPolicyId" in patch:
            policy_id = v.optional_string(patch["distributionPolicyId"], "distributionPolicyId")
            if policy_id is not None and not DistributionPolicy.objects.filter(pk=policy_id).exists():
                raise InvalidRequest(
                    f"distributionPolicyId: distribution policy {policy_id!r} does not exist.",
                    target="distributionPolicyId",
                )
            queue.distribution_policy_id = policy_id
        if created and queue.distribution_policy_id is None:
            raise InvalidRequest("distributionPolicyId is required.", target="distributionPolicyId")
        if "exceptionPolicyId" in patch:
            policy_id = v.optional_string(patch["exceptionPolicyId"], "exceptionPolicyId")
            if policy_id is not None and not ExceptionPolicy.objects.filter(pk=policy_id).exists():
                raise InvalidRequest(
                    f"exceptionPolicyId: exception policy {policy_id!r} does not exist.", target="exceptionPolicyId"
                )
            queue.exception_policy_id = policy_id
        if "labels" in patch and patch["labels"] is not None:
            queue.labels = v.merge_label_map(queue.labels or {}, patch["labels"], "labels")
        queue.labels = {**(queue.labels or {}), "Id": queue.id}
        if "priority" in patch:
            queue.priority = v.optional_int(patch["priority"], "priority") or 0
        if not created:
            # A different policy or priority can change who is offered what.
            from routing.services.matching import match_queue

            after_commit(match_queue, queue_id=queue.id)

    return upsert(Queue, pk=queue_id, now=now, precondition=precondition, apply=apply)


def _delete(model, pk: str, what: str, guard=None) -> None:
    with transaction.atomic():
        obj = locked_get(model, pk, what=what)
        if guard is not None:
            guard(obj)
        try:
            obj.delete()
        except ProtectedError as exc:
            raise Conflict(f"{what} {pk!r} is still in use by a queue.") from exc


def distribution_policy_delete(*, policy_id: str) -> None:
    """Delete; NotFound (404) if unknown, Conflict (409) while a queue uses it."""
    _delete(DistributionPolicy, policy_id, "Distribution policy")


def exception_policy_delete(*, policy_id: str) -> None:
    """Delete; NotFound (404) if unknown, Conflict (409) while a queue uses it."""
    _delete(ExceptionPolicy, policy_id, "Exception policy")


def classification_policy_delete(*, policy_id: str) -> None:
    """Delete; NotFound (404) if unknown, Conflict (409) while an active job uses it."""

    def guard(policy: ClassificationPolicy) -> None:
        if Job.objects.filter(classification_policy_id=policy.pk, status__in=ACTIVE_JOB_STATUSES).exists():
            raise Conflict(f"Classification policy {policy.pk!r} is used by an active job.")

    _delete(ClassificationPolicy, policy_id, "Classification policy", guard)


def queue_delete(*, queue_id: str) -> None:
    """Delete; NotFound (404) if unknown, Conflict (409) while it has an active job (ACS [REC])."""

    def guard(queue: Queue) -> None:
        if Job.objects.filter(queue_id=queue.pk, status__in=ACTIVE_JOB_STATUSES).exists():
            raise Conflict("There is an active job in this queue.")

    _delete(Queue, queue_id, "Queue", guard)


def get_or_404(model, pk: str, what: str):
    obj = model.objects.filter(pk=pk).first()
    if obj is None:
        raise NotFound(f"{what} {pk!r} was not found.")
    return obj
