"""Policies and queues: create, update (JSON merge patch) and delete (ACS 2023-11-01 §2.1)."""

from __future__ import annotations

from datetime import datetime
from typing import Callable

from django.db import transaction
from django.db.models import ProtectedError

from routing.clock import clock
from routing.errors import Conflict, InvalidRequest, NotFound
from routing.models import (
    ACTIVE_JOB_STATUSES,
    ClassificationPolicy,
    DistributionPolicy,
    ExceptionPolicy,
    Job,
    Queue,
    TimerKind,
)
from routing.patches import (
    UNSET,
    ClassificationPolicyPatch,
    DistributionPolicyPatch,
    ExceptionPolicyPatch,
    QueuePatch,
    apply_labels,
)
from routing.services.common import Precondition, locked_get, owe, upsert
from routing.services.notify import notify_changed


def distribution_policy_upsert(
    *, policy_id: str, patch: DistributionPolicyPatch, precondition: Precondition | None = None,
    now: datetime | None = None,
) -> tuple[DistributionPolicy, bool]:
    """Create or merge-patch a DistributionPolicy (`offerExpiresAfterSeconds` in seconds; `mode`
    required on create). Raises InvalidRequest (400), PreconditionFailed (412). Returns
    (policy, created)."""
    now = clock(now)

    def apply(policy: DistributionPolicy, created: bool) -> None:
        if patch.name is not UNSET:
            policy.name = patch.name
        if patch.offer_expires_after_seconds is not UNSET:
            policy.offer_expires_after_seconds = patch.offer_expires_after_seconds
        mode = patch.resolve_mode(policy.mode or None, created=created)
        if mode is not None:
            policy.mode = mode

    return upsert(DistributionPolicy, pk=policy_id, now=now, precondition=precondition, apply=apply)


def classification_policy_upsert(
    *, policy_id: str, patch: ClassificationPolicyPatch, precondition: Precondition | None = None,
    now: datetime | None = None,
) -> tuple[ClassificationPolicy, bool]:
    """Create or merge-patch a ClassificationPolicy (lists replace whole). Raises InvalidRequest
    (400) with the field path, including an expression's syntax error position."""
    now = clock(now)

    def apply(policy: ClassificationPolicy, created: bool) -> None:
        if patch.name is not UNSET:
            policy.name = patch.name
        if patch.fallback_queue_id is not UNSET:
            policy.fallback_queue_id = patch.fallback_queue_id
        if patch.queue_selector_attachments is not UNSET:
            policy.queue_selector_attachments = patch.queue_selector_attachments
        if patch.worker_selector_attachments is not UNSET:
            policy.worker_selector_attachments = patch.worker_selector_attachments
        if patch.prioritization_rule is not UNSET:
            policy.prioritization_rule = patch.resolve_prioritization_rule(policy.prioritization_rule)

    return upsert(ClassificationPolicy, pk=policy_id, now=now, precondition=precondition, apply=apply)


def exception_policy_upsert(
    *, policy_id: str, patch: ExceptionPolicyPatch, precondition: Precondition | None = None,
    now: datetime | None = None,
) -> tuple[ExceptionPolicy, bool]:
    """Create or merge-patch an ExceptionPolicy; `exceptionRules` is a list that replaces whole."""
    now = clock(now)

    def apply(policy: ExceptionPolicy, created: bool) -> None:
        if patch.name is not UNSET:
            policy.name = patch.name
        if patch.exception_rules is not UNSET:
            policy.exception_rules = patch.exception_rules

    return upsert(ExceptionPolicy, pk=policy_id, now=now, precondition=precondition, apply=apply)


def _policy_ref(model: type[DistributionPolicy] | type[ExceptionPolicy], policy_id: str | None, field: str) -> str | None:
    if policy_id is not None and not model.objects.filter(pk=policy_id).exists():
        what = model._meta.verbose_name
        raise InvalidRequest(f"{field}: {what} {policy_id!r} does not exist.", target=field)
    return policy_id


def queue_upsert(
    *, queue_id: str, patch: QueuePatch, precondition: Precondition | None = None, now: datetime | None = None
) -> tuple[Queue, bool]:
    """Create or merge-patch a RouterQueue. `labels` merge per key and always carry
    `Id = queue_id` (as the service adds it). `priority` (int) is the seed 002 extension.
    Raises InvalidRequest when a referenced policy does not exist, or on create without a
    distribution policy. A changed queue is matched again after commit."""
    now = clock(now)

    def apply(queue: Queue, created: bool) -> Callable[[], None]:
        if patch.name is not UNSET:
            queue.name = patch.name
        if patch.description is not UNSET:
            queue.description = patch.description
        if patch.distribution_policy_id is not UNSET:
            queue.distribution_policy_id = _policy_ref(DistributionPolicy, patch.distribution_policy_id, "distributionPolicyId")
        if created and queue.distribution_policy_id is None:
            raise InvalidRequest("distributionPolicyId is required.", target="distributionPolicyId")
        if patch.exception_policy_id is not UNSET:
            queue.exception_policy_id = _policy_ref(ExceptionPolicy, patch.exception_policy_id, "exceptionPolicyId")
        queue.labels = {**apply_labels(queue.labels, patch.labels), "Id": queue.id}
        if patch.priority is not UNSET:
            queue.priority = patch.priority
        if not created:
            # A different policy or priority can change who is offered what.
            owe(TimerKind.MATCH_QUEUE, queue.pk, now)

        def after_save() -> None:
            notify_changed(queues=[queue.pk], now=now)

        return after_save

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


def queue_delete(*, queue_id: str, now: datetime | None = None) -> None:
    """Delete; NotFound (404) if unknown, Conflict (409) while it has an active job (ACS [REC])."""
    now = clock(now)

    def guard(queue: Queue) -> None:
        if Job.objects.filter(queue_id=queue.pk, status__in=ACTIVE_JOB_STATUSES).exists():
            raise Conflict("There is an active job in this queue.")
        notify_changed(queues=[queue.pk], now=now)

    _delete(Queue, queue_id, "Queue", guard)


def get_or_404(model, pk: str, what: str):
    obj = model.objects.filter(pk=pk).first()
    if obj is None:
        raise NotFound(f"{what} {pk!r} was not found.")
    return obj
