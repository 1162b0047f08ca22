"""Drives the real `azure-communication-jobrouter==1.0.0b1` client (API 2022-07-18-preview)
against a router, in its own virtualenv (it cannot share one with 1.0.0).

    python driver.py SCENARIO ENDPOINT ACCESS_KEY [--async] [PARAMS_JSON]

prints one JSON object: what the client's typed models held after the scenario's calls (or
`{"error": {...}}` with the exception type, status and ACS error code when a call raised). Each
scenario is written once as a coroutine over `Clients`; `--async` runs it on the `aio` clients,
otherwise on the synchronous ones, so both put their own bytes on the wire. The tests in
tests/test_api_preview.py run it through tests/preview_client.py and assert on the output.
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
from datetime import datetime, timedelta, timezone
from typing import Any, Awaitable, Callable

from azure.communication.jobrouter import (
    BestWorkerMode,
    CancelExceptionAction,
    ChannelConfiguration,
    ClassificationPolicy,
    ConditionalQueueSelectorAttachment,
    ConditionalWorkerSelectorAttachment,
    DirectMapRouterRule,
    DistributionPolicy,
    ExceptionPolicy,
    ExceptionRule,
    ExpressionRouterRule,
    FunctionRouterRule,
    FunctionRouterRuleCredential,
    JobMatchingMode,
    LabelOperator,
    LongestIdleMode,
    ManualReclassifyExceptionAction,
    PassThroughQueueSelectorAttachment,
    PassThroughWorkerSelectorAttachment,
    QueueLengthExceptionTrigger,
    QueueWeightedAllocation,
    ReclassifyExceptionAction,
    RoundRobinMode,
    RouterJob,
    RouterJobStatus,
    RouterQueue,
    RouterQueueSelector,
    RouterWorker,
    RouterWorkerSelector,
    RuleEngineQueueSelectorAttachment,
    RuleEngineWorkerSelectorAttachment,
    ScheduleAndSuspendMode,
    ScoringRuleOptions,
    StaticQueueSelectorAttachment,
    StaticRouterRule,
    StaticWorkerSelectorAttachment,
    WaitTimeExceptionTrigger,
    WeightedAllocationQueueSelectorAttachment,
    WeightedAllocationWorkerSelectorAttachment,
    WorkerWeightedAllocation,
)
from azure.communication.jobrouter._models import Oauth2ClientCredential, WebhookRouterRule
from azure.core.credentials import AzureKeyCredential
from azure.core.exceptions import HttpResponseError

Json = dict[str, Any]
SCENARIOS: dict[str, Callable[["Clients", Json], Awaitable[Json]]] = {}


def scenario(fn):
    SCENARIOS[fn.__name__] = fn
    return fn


class _Calls:
    """One client, sync or async, with every method awaitable; `list_*` return the pages
    (lists of items) the client fetched by following `nextLink`."""

    def __init__(self, client: Any, is_async: bool) -> None:
        self._client = client
        self._async = is_async

    def __getattr__(self, name: str) -> Callable[..., Awaitable[Any]]:
        method = getattr(self._client, name)

        async def call(*args: Any, **kwargs: Any) -> Any:
            result = method(*args, **kwargs)
            if name.startswith("list_"):
                if self._async:
                    return [[item async for item in page] async for page in result.by_page()]
                return [list(page) for page in result.by_page()]
            return await result if self._async else result

        return call


class Clients:
    def __init__(self, endpoint: str, key: str, is_async: bool, api_version: str | None = None) -> None:
        if is_async:
            from azure.communication.jobrouter.aio import JobRouterAdministrationClient, JobRouterClient
        else:
            from azure.communication.jobrouter import JobRouterAdministrationClient, JobRouterClient
        extra = {"api_version": api_version} if api_version else {}
        # The plain constructor: from_connection_string would force https:// (seed 001 defect).
        self._admin = JobRouterAdministrationClient(endpoint, AzureKeyCredential(key), retry_total=0, **extra)
        self._client = JobRouterClient(endpoint, AzureKeyCredential(key), retry_total=0, **extra)
        self.admin = _Calls(self._admin, is_async)
        self.client = _Calls(self._client, is_async)
        self.is_async = is_async

    async def close(self) -> None:
        for raw in (self._admin, self._client):
            result = raw.close()
            if self.is_async:
                await result


async def eventually(check: Callable[[], Awaitable[Any]], timeout: float = 15.0) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = await check()
        if value or time.monotonic() > deadline:
            return value
        await asyncio.sleep(0.1)


def error_of(exc: HttpResponseError) -> Json:
    error = getattr(exc, "error", None)
    return {
        "type": type(exc).__name__,
        "status": exc.status_code,
        "code": getattr(error, "code", None),
        "message": getattr(error, "message", None) or str(exc),
    }


async def raises(call: Awaitable[Any]) -> Json | None:
    try:
        await call
    except HttpResponseError as exc:
        return error_of(exc)
    return None


def kind_names(values: Any) -> Any:
    return [type(value).__name__ for value in values]


# --- what the typed models held -------------------------------------------------------------------


def dt(value: datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


def selector(s: Any) -> Json:
    return {"key": s.key, "label_operator": s.label_operator, "value": s.value,
            "type": type(s).__name__, **({"expedite": s.expedite} if hasattr(s, "expedite") else {})}


def worker_view(w: Any) -> Json:
    return {
        "id": w.id, "state": w.state, "total_capacity": w.total_capacity,
        "queue_assignments": w.queue_assignments, "labels": w.labels, "tags": w.tags,
        "channel_configurations": {
            k: {"capacity_cost_per_job": c.capacity_cost_per_job, "max_number_of_jobs": c.max_number_of_jobs,
                "type": type(c).__name__}
            for k, c in (w.channel_configurations or {}).items()
        },
        "offers": [{"offer_id": o.offer_id, "job_id": o.job_id, "capacity_cost": o.capacity_cost,
                    "offered_at": dt(o.offered_at), "expires_at": dt(o.expires_at)} for o in w.offers or []],
        "assigned_jobs": [{"assignment_id": a.assignment_id, "job_id": a.job_id, "capacity_cost": a.capacity_cost,
                           "assigned_at": dt(a.assigned_at)} for a in w.assigned_jobs or []],
        "load_ratio": w.load_ratio, "available_for_offers": w.available_for_offers,
    }


def job_view(j: Any) -> Json:
    mode = j.matching_mode
    return {
        "id": j.id, "status": j.status, "channel_reference": j.channel_reference, "channel_id": j.channel_id,
        "queue_id": j.queue_id, "classification_policy_id": j.classification_policy_id, "priority": j.priority,
        "disposition_code": j.disposition_code, "enqueued_at": dt(j.enqueued_at), "scheduled_at": dt(j.scheduled_at),
        "labels": j.labels, "tags": j.tags, "notes": {str(k): v for k, v in (j.notes or {}).items()},
        "requested_worker_selectors": [selector(s) for s in j.requested_worker_selectors or []],
        "attached_worker_selectors": [selector(s) for s in j.attached_worker_selectors or []],
        "assignments": {
            k: {"assignment_id": a.assignment_id, "worker_id": a.worker_id, "assigned_at": dt(a.assigned_at),
                "completed_at": dt(a.completed_at), "closed_at": dt(a.closed_at)}
            for k, a in (j.assignments or {}).items()
        },
        "matching_mode": None if mode is None else {
            "type": type(mode).__name__, "mode_type": mode.mode_type,
            "schedule_at": dt(mode.schedule_and_suspend_mode.schedule_at) if mode.schedule_and_suspend_mode else None,
        },
    }


def rule_view(rule: Any) -> Json | None:
    if rule is None:
        return None
    out = {"type": type(rule).__name__, "kind": rule.kind}
    for attr in ("value", "expression", "language", "function_uri", "webhook_uri", "authorization_server_uri"):
        if getattr(rule, attr, None) is not None:
            out[attr] = getattr(rule, attr)
    return out


def mode_view(mode: Any) -> Json:
    out = {"type": type(mode).__name__, "kind": mode.kind, "min": mode.min_concurrent_offers,
           "max": mode.max_concurrent_offers, "bypass_selectors": mode.bypass_selectors}
    if isinstance(mode, BestWorkerMode):
        out["scoring_rule"] = rule_view(mode.scoring_rule)
        options = mode.scoring_rule_options
        out["scoring_rule_options"] = None if options is None else {
            "batch_size": options.batch_size, "scoring_parameters": options.scoring_parameters,
            "allow_scoring_batch_of_workers": options.allow_scoring_batch_of_workers,
            "descending_order": options.descending_order,
        }
    return out


def distribution_policy_view(p: Any) -> Json:
    return {"id": p.id, "name": p.name, "offer_expires_after_seconds": p.offer_expires_after_seconds,
            "mode": mode_view(p.mode)}


def attachment_view(a: Any) -> Json:
    out: Json = {"type": type(a).__name__, "kind": a.kind}
    for attr in ("condition", "rule"):
        if getattr(a, attr, None) is not None:
            out[attr] = rule_view(getattr(a, attr))
    for attr in ("queue_selector", "worker_selector"):
        if getattr(a, attr, None) is not None:
            out[attr] = selector(getattr(a, attr))
    for attr in ("queue_selectors", "worker_selectors"):
        if getattr(a, attr, None) is not None:
            out[attr] = [selector(s) for s in getattr(a, attr)]
    if getattr(a, "label_operator", None) is not None:
        out["key"], out["label_operator"] = a.key, a.label_operator
    if getattr(a, "allocations", None) is not None:
        out["allocations"] = [
            {"weight": x.weight, "selectors": [selector(s) for s in (getattr(x, "queue_selectors", None)
                                                                      or getattr(x, "worker_selectors", None) or [])]}
            for x in a.allocations
        ]
    return out


def classification_policy_view(p: Any) -> Json:
    return {"id": p.id, "name": p.name, "fallback_queue_id": p.fallback_queue_id,
            "queue_selectors": [attachment_view(a) for a in p.queue_selectors or []],
            "worker_selectors": [attachment_view(a) for a in p.worker_selectors or []],
            "prioritization_rule": rule_view(p.prioritization_rule)}


def exception_policy_view(p: Any) -> Json:
    rules = {}
    for rule_id, rule in (p.exception_rules or {}).items():
        trigger = rule.trigger
        rules[rule_id] = {
            "trigger": {"type": type(trigger).__name__, "kind": trigger.kind,
                        "threshold": getattr(trigger, "threshold", None),
                        "threshold_seconds": getattr(trigger, "threshold_seconds", None)},
            "actions": {
                action_id: {"type": type(a).__name__, "kind": a.kind,
                            **{k: getattr(a, k) for k in ("note", "disposition_code", "queue_id", "priority",
                                                           "classification_policy_id", "labels_to_upsert")
                               if getattr(a, k, None) is not None},
                            **({"worker_selectors": [selector(s) for s in a.worker_selectors]}
                               if getattr(a, "worker_selectors", None) else {})}
                for action_id, a in (rule.actions or {}).items()
            },
        }
    return {"id": p.id, "name": p.name, "exception_rules": rules}


def queue_view(q: Any) -> Json:
    return {"id": q.id, "name": q.name, "distribution_policy_id": q.distribution_policy_id, "labels": q.labels,
            "exception_policy_id": q.exception_policy_id}


def items_view(pages: list[list[Any]], attr: str, view: Callable[[Any], Json]) -> Json:
    """List pages: the wrapped items' resources (by the wrapper attribute) and their etags."""
    return {
        "page_sizes": [len(page) for page in pages],
        "items": [view(getattr(item, attr)) for page in pages for item in page],
        "etags": [item.etag for page in pages for item in page],
        "types": sorted({type(item).__name__ for page in pages for item in page}),
    }


# --- scenarios --------------------------------------------------------------------------------------


async def _seed_001_setup(c: Clients, out: Json) -> None:
    """Seed 001 up to the worker's registration: the policy, the queue, the job, the worker."""
    admin, client = c.admin, c.client
    policy = await admin.create_distribution_policy(
        distribution_policy_id="distribution-policy-1",
        distribution_policy=DistributionPolicy(
            offer_expires_after_seconds=24 * 60 * 60,
            mode=LongestIdleMode(min_concurrent_offers=1, max_concurrent_offers=1),
        ),
    )
    out["policy"] = distribution_policy_view(policy)
    queue = await admin.create_queue(queue_id="queue-1", queue=RouterQueue(distribution_policy_id="distribution-policy-1"))
    out["queue"] = queue_view(queue)
    job = await client.create_job(
        job_id="jobId-1",
        router_job=RouterJob(
            channel_id="my-channel", queue_id="queue-1", channel_reference="12345", priority=1,
            requested_worker_selectors=[
                RouterWorkerSelector(key="Some-Skill", label_operator=LabelOperator.GREATER_THAN, value=10)
            ],
        ),
    )
    out["job_created"] = job_view(job)
    worker = await client.create_worker(
        worker_id="worker-1",
        router_worker=RouterWorker(
            total_capacity=1, queue_assignments={"queue-1": {}}, labels={"Some-Skill": 11},
            channel_configurations={"my-channel": ChannelConfiguration(capacity_cost_per_job=1)},
            available_for_offers=True,
        ),
    )
    out["worker_created"] = worker_view(worker)


async def _seed_001_finish(c: Clients, out: Json, offer_id: str) -> None:
    """Seed 001 from the offer on: accept it, complete and close the job."""
    client = c.client
    accept = await client.accept_job_offer(worker_id="worker-1", offer_id=offer_id)
    out["accept"] = {"assignment_id": accept.assignment_id, "job_id": accept.job_id, "worker_id": accept.worker_id}
    updated_job = await client.get_job(job_id="jobId-1")
    out["assigned"] = updated_job.status == RouterJobStatus.Assigned and accept.assignment_id in updated_job.assignments
    await client.complete_job(job_id="jobId-1", assignment_id=accept.assignment_id,
                              note=f"Job has been completed by worker-1 at {datetime.utcnow()}")
    out["completed_status"] = (await client.get_job(job_id="jobId-1")).status
    await client.close_job(job_id="jobId-1", assignment_id=accept.assignment_id,
                           note=f"Job has been closed by worker-1 at {datetime.utcnow()}")
    closed = await client.get_job(job_id="jobId-1")
    out["closed"] = job_view(closed)
    out["closed_is_closed"] = closed.status == RouterJobStatus.CLOSED
    out["worker_after"] = worker_view(await client.get_worker(worker_id="worker-1"))


@scenario
async def seed_001(c: Clients, params: Json) -> Json:
    """The seed 001 README flow, in its working form: Some-Skill GREATER_THAN 10 (the README's
    prose; its code says EQUAL, which a worker labelled 11 never matches) and the constructor
    with an http:// endpoint (from_connection_string forces https://). `job.status` for the
    README's non-existent `job.job_status`; `asyncio.sleep` for `time.sleep(secs=2)`. The offer
    is found by polling the worker (the seed's alternative to the event)."""
    out: Json = {}
    await _seed_001_setup(c, out)

    async def offered() -> Any:
        w = await c.client.get_worker(worker_id="worker-1")
        return w if w.offers else None

    router_worker = await eventually(offered)
    out["worker_offered"] = worker_view(router_worker)
    job_offer = [offer for offer in router_worker.offers if offer.job_id == "jobId-1"][0]
    await _seed_001_finish(c, out, job_offer.offer_id)
    return out


@scenario
async def seed_001_setup(c: Clients, params: Json) -> Json:
    """Seed 001's first half; the test then waits for RouterWorkerOfferIssued on its webhook."""
    out: Json = {}
    await _seed_001_setup(c, out)
    return out


@scenario
async def seed_001_finish(c: Clients, params: Json) -> Json:
    """Seed 001's second half, with the offer id taken from the received event (`offer_id`)."""
    out: Json = {}
    await _seed_001_finish(c, out, params["offer_id"])
    return out


@scenario
async def seed_001_close_later(c: Clients, params: Json) -> Json:
    """The README's last block on a second job: close_at two seconds ahead (a naive UTC
    datetime, as the README passes it), then the job is closed once that time has passed."""
    client = c.client
    await client.create_job(job_id="jobId-2", router_job=RouterJob(
        channel_id="my-channel", queue_id="queue-1", channel_reference="12346", priority=1))

    async def offered() -> Any:
        w = await client.get_worker(worker_id="worker-1")
        return [o for o in w.offers if o.job_id == "jobId-2"]

    offer = (await eventually(offered))[0]
    accept = await client.accept_job_offer(worker_id="worker-1", offer_id=offer.offer_id)
    await client.complete_job(job_id="jobId-2", assignment_id=accept.assignment_id)
    close_at = datetime.utcnow() + timedelta(seconds=2)
    await client.close_job(job_id="jobId-2", assignment_id=accept.assignment_id,
                           note=f"Job has been closed by worker-1 at {datetime.utcnow()}", close_at=close_at)
    out: Json = {"status_before": (await client.get_job(job_id="jobId-2")).status}
    await asyncio.sleep(2)

    async def closed() -> Any:
        return (await client.get_job(job_id="jobId-2")).status == RouterJobStatus.CLOSED

    out["closed"] = await eventually(closed, timeout=5)
    job = await client.get_job(job_id="jobId-2")
    out["closed_at"] = dt(job.assignments[accept.assignment_id].closed_at)
    out["close_at"] = close_at.replace(tzinfo=timezone.utc).isoformat()
    return out


@scenario
async def administration(c: Clients, params: Json) -> Json:
    """Every administration operation: create/update/get/list/delete of distribution,
    classification and exception policies and queues, every discriminator the preview has."""
    admin = c.admin
    out: Json = {}
    # Distribution policies: the three modes, BestWorkerMode with its scoring rule and options.
    best = await admin.create_distribution_policy(
        distribution_policy_id="dp-best",
        distribution_policy=DistributionPolicy(
            name="Best", offer_expires_after_seconds=60,
            mode=BestWorkerMode(
                min_concurrent_offers=1, max_concurrent_offers=2, bypass_selectors=True,
                scoring_rule=ExpressionRouterRule(expression="If(worker.Skill > 5, 10, 1)"),
                scoring_rule_options=ScoringRuleOptions(
                    batch_size=5, scoring_parameters=["jobLabels", "workerSelectors"],
                    allow_scoring_batch_of_workers=True, descending_order=False),
            ),
        ),
    )
    out["best"] = distribution_policy_view(best)
    out["round_robin"] = distribution_policy_view(await admin.create_distribution_policy(
        distribution_policy_id="dp-rr",
        distribution_policy=DistributionPolicy(offer_expires_after_seconds=30, mode=RoundRobinMode())))
    out["longest_idle"] = distribution_policy_view(await admin.create_distribution_policy(
        distribution_policy_id="dp-li",
        distribution_policy=DistributionPolicy(offer_expires_after_seconds=30, mode=LongestIdleMode())))
    out["best_updated"] = distribution_policy_view(
        await admin.update_distribution_policy("dp-best", name="Best 2", offer_expires_after_seconds=90))
    out["best_got"] = distribution_policy_view(await admin.get_distribution_policy(distribution_policy_id="dp-best"))
    out["dp_list"] = items_view(
        await admin.list_distribution_policies(results_per_page=2), "distribution_policy", distribution_policy_view)

    # Queues.
    out["queue"] = queue_view(await admin.create_queue(
        queue_id="q-a", queue=RouterQueue(name="A", distribution_policy_id="dp-li", labels={"Region": "EU"})))
    await admin.create_queue(queue_id="q-b", queue=RouterQueue(distribution_policy_id="dp-rr"))
    out["queue_updated"] = queue_view(await admin.update_queue("q-a", labels={"Region": None, "Tier": 2}))
    out["queue_got"] = queue_view(await admin.get_queue(queue_id="q-a"))
    out["queue_list"] = items_view(await admin.list_queues(results_per_page=1), "queue", queue_view)

    # Exception policies: both triggers, the three actions, dictionaries keyed by id.
    exception = await admin.create_exception_policy(
        exception_policy_id="ep-1",
        exception_policy=ExceptionPolicy(name="Escalate", exception_rules={
            "long-queue": ExceptionRule(
                trigger=QueueLengthExceptionTrigger(threshold=10),
                actions={"give-up": CancelExceptionAction(note="too many", disposition_code="Busy")}),
            "slow": ExceptionRule(
                trigger=WaitTimeExceptionTrigger(threshold_seconds=30),
                actions={
                    "move": ManualReclassifyExceptionAction(
                        queue_id="q-b", priority=5,
                        worker_selectors=[RouterWorkerSelector(key="Tier", label_operator=LabelOperator.GREATER_THAN_EQUAL, value=2)]),
                    "reclassify": ReclassifyExceptionAction(classification_policy_id="cp-1", labels_to_upsert={"Escalated": True}),
                }),
        }),
    )
    out["exception"] = exception_policy_view(exception)
    # A null rule removes that rule; a new key adds one; the others stay (per-key merge).
    out["exception_updated"] = exception_policy_view(await admin.update_exception_policy("ep-1", exception_rules={
        "long-queue": None,
        "very-slow": ExceptionRule(trigger=WaitTimeExceptionTrigger(threshold_seconds=300),
                                   actions={"drop": CancelExceptionAction()}),
    }))
    out["exception_got"] = exception_policy_view(await admin.get_exception_policy(exception_policy_id="ep-1"))
    out["exception_list"] = items_view(await admin.list_exception_policies(), "exception_policy", exception_policy_view)

    # Classification policies: every attachment kind and every rule kind.
    classification = await admin.create_classification_policy(
        classification_policy_id="cp-1",
        classification_policy=ClassificationPolicy(
            name="Route", fallback_queue_id="q-a",
            queue_selectors=[
                StaticQueueSelectorAttachment(queue_selector=RouterQueueSelector(
                    key="Region", label_operator=LabelOperator.NOT_EQUAL, value="US")),
                ConditionalQueueSelectorAttachment(
                    condition=ExpressionRouterRule(expression='job.Lang = "fr"'),
                    queue_selectors=[RouterQueueSelector(key="Id", label_operator=LabelOperator.EQUAL, value="q-b")]),
                RuleEngineQueueSelectorAttachment(rule=StaticRouterRule(
                    value=[{"key": "Id", "labelOperator": "equal", "value": "q-a"}])),
                PassThroughQueueSelectorAttachment(key="Region", label_operator=LabelOperator.EQUAL),
                WeightedAllocationQueueSelectorAttachment(allocations=[
                    QueueWeightedAllocation(weight=0.5, queue_selectors=[
                        RouterQueueSelector(key="Id", label_operator=LabelOperator.EQUAL, value="q-a")]),
                    QueueWeightedAllocation(weight=0.5, queue_selectors=[
                        RouterQueueSelector(key="Id", label_operator=LabelOperator.EQUAL, value="q-b")]),
                ]),
            ],
            worker_selectors=[
                StaticWorkerSelectorAttachment(worker_selector=RouterWorkerSelector(
                    key="Skill", label_operator=LabelOperator.LESS_THAN_EQUAL, value=9, expires_after_seconds=60)),
                ConditionalWorkerSelectorAttachment(
                    condition=StaticRouterRule(value=True),
                    worker_selectors=[RouterWorkerSelector(key="Lang", label_operator=LabelOperator.EQUAL, value="fr")]),
                RuleEngineWorkerSelectorAttachment(rule=DirectMapRouterRule()),
                PassThroughWorkerSelectorAttachment(key="Tier", label_operator=LabelOperator.GREATER_THAN,
                                                    expires_after_seconds=30),
                WeightedAllocationWorkerSelectorAttachment(allocations=[
                    WorkerWeightedAllocation(weight=1.0, worker_selectors=[
                        RouterWorkerSelector(key="Lang", label_operator=LabelOperator.LESS_THAN, value=3)]),
                ]),
            ],
            prioritization_rule=FunctionRouterRule(
                function_uri="https://example.invalid/api/priority",
                credential=FunctionRouterRuleCredential(function_key="secret")),
        ),
    )
    out["classification"] = classification_policy_view(classification)
    updated = await admin.update_classification_policy(
        "cp-1", prioritization_rule=WebhookRouterRule(
            authorization_server_uri="https://example.invalid/token", webhook_uri="https://example.invalid/hook",
            client_credential=Oauth2ClientCredential(client_id="id", client_secret="secret")))
    out["classification_updated"] = classification_policy_view(updated)
    out["classification_got"] = classification_policy_view(
        await admin.get_classification_policy(classification_policy_id="cp-1"))
    out["classification_list"] = items_view(
        await admin.list_classification_policies(results_per_page=5), "classification_policy", classification_policy_view)

    # Deletes (204) and the preview error body on what is gone.
    await admin.create_queue(queue_id="q-gone", queue=RouterQueue(distribution_policy_id="dp-rr"))
    await admin.delete_queue(queue_id="q-gone")
    out["queue_gone"] = await raises(admin.get_queue(queue_id="q-gone"))
    await admin.create_exception_policy(exception_policy_id="ep-gone", exception_policy=ExceptionPolicy(exception_rules={}))
    await admin.delete_exception_policy(exception_policy_id="ep-gone")
    out["exception_gone"] = await raises(admin.get_exception_policy(exception_policy_id="ep-gone"))
    await admin.create_classification_policy(classification_policy_id="cp-gone", classification_policy=ClassificationPolicy(name="x"))
    await admin.delete_classification_policy(classification_policy_id="cp-gone")
    out["classification_gone"] = await raises(admin.get_classification_policy(classification_policy_id="cp-gone"))
    await admin.create_distribution_policy(distribution_policy_id="dp-gone", distribution_policy=DistributionPolicy(
        offer_expires_after_seconds=1, mode=RoundRobinMode()))
    await admin.delete_distribution_policy(distribution_policy_id="dp-gone")
    out["distribution_gone"] = await raises(admin.get_distribution_policy(distribution_policy_id="dp-gone"))
    return out


@scenario
async def jobs_and_workers(c: Clients, params: Json) -> Json:
    """Every job and worker operation (policies dp-li and queues q-a / q-b from
    `administration`)."""
    client = c.client
    out: Json = {}
    worker = await client.create_worker(worker_id="w-1", router_worker=RouterWorker(
        total_capacity=2, queue_assignments={"q-a": {}}, labels={"Skill": 7}, tags={"Team": "blue"},
        channel_configurations={"voice": ChannelConfiguration(capacity_cost_per_job=1, max_number_of_jobs=2)},
        available_for_offers=False))
    out["worker_created"] = worker_view(worker)
    # Per-key merges: q-b is added and q-a kept; then q-a removed by null; a second channel.
    await client.update_worker("w-1", queue_assignments={"q-b": {}},
                               channel_configurations={"chat": ChannelConfiguration(capacity_cost_per_job=1)})
    out["worker_merged"] = worker_view(await client.get_worker(worker_id="w-1"))
    await client.update_worker("w-1", queue_assignments={"q-a": None}, labels={"Skill": 8})
    out["worker_removed_queue"] = worker_view(await client.get_worker(worker_id="w-1"))
    await client.create_worker(worker_id="w-2", router_worker=RouterWorker(
        total_capacity=1, queue_assignments={"q-a": {}}, labels={"Skill": 3},
        channel_configurations={"voice": ChannelConfiguration(capacity_cost_per_job=1)}, available_for_offers=True))
    await client.create_worker(worker_id="w-3", router_worker=RouterWorker(
        total_capacity=1, queue_assignments={"q-b": {}},
        channel_configurations={"voice": ChannelConfiguration(capacity_cost_per_job=1)}, available_for_offers=True))
    out["workers_all"] = items_view(await client.list_workers(results_per_page=2), "worker", worker_view)
    out["workers_active_in_q_a"] = items_view(
        await client.list_workers(state="active", queue_id="q-a", channel_id="voice", has_capacity=True,
                                  results_per_page=1), "worker", worker_view)

    # Jobs: create with notes and a schedule, update notes per key, filters and paging.
    schedule_at = datetime(2030, 1, 2, 3, 4, 5, tzinfo=timezone.utc)
    scheduled = await client.create_job(job_id="job-scheduled", router_job=RouterJob(
        channel_id="voice", queue_id="q-b", priority=2, labels={"Lang": "fr"}, tags={"Source": "web"},
        notes={datetime(2024, 1, 1, tzinfo=timezone.utc): "first", "2024-01-02T00:00:00Z": "second"},
        matching_mode=JobMatchingMode(schedule_and_suspend_mode=ScheduleAndSuspendMode(schedule_at=schedule_at))))
    out["job_scheduled"] = job_view(scheduled)
    await client.update_job("job-scheduled", notes={"2024-01-01T00:00:00Z": None, "2024-01-03T00:00:00Z": "third"})
    out["job_notes_merged"] = job_view(await client.get_job(job_id="job-scheduled"))
    suspended = await client.create_job(job_id="job-suspended", router_job=RouterJob(
        channel_id="voice", queue_id="q-a", matching_mode=JobMatchingMode(suspend_mode={})))
    out["job_suspended"] = job_view(suspended)
    await client.create_job(job_id="job-1", router_job=RouterJob(
        channel_id="voice", queue_id="q-a", priority=5,
        requested_worker_selectors=[RouterWorkerSelector(key="Skill", label_operator=LabelOperator.GREATER_THAN_EQUAL,
                                                         value=1, expedite=True)]))
    await client.create_job(job_id="job-2", router_job=RouterJob(channel_id="voice", queue_id="q-a", priority=1))
    out["jobs_all"] = items_view(await client.list_jobs(results_per_page=2), "job", job_view)
    out["jobs_scheduled_filter"] = items_view(await client.list_jobs(
        status="scheduled", queue_id="q-b", channel_id="voice",
        scheduled_after=datetime(2029, 1, 1, tzinfo=timezone.utc), scheduled_before=datetime(2031, 1, 1, tzinfo=timezone.utc),
        results_per_page=1), "job", job_view)
    out["jobs_in_q_a"] = items_view(await client.list_jobs(status="active", queue_id="q-a", results_per_page=1), "job", job_view)

    # Offers: w-2 serves q-a; both jobs are offered in turn.
    async def offer_for(job_id: str) -> Any:
        w = await client.get_worker(worker_id="w-2")
        return next((o for o in w.offers if o.job_id == job_id), None)

    first = await eventually(lambda: offer_for("job-1"))
    out["position_job_2"] = await position(client, "job-2")
    out["statistics"] = await statistics(client, "q-a")
    await client.decline_job_offer(worker_id="w-2", offer_id=first.offer_id,
                                   retry_offer_at=datetime.now(timezone.utc) + timedelta(hours=1))
    second = await eventually(lambda: offer_for("job-2"))
    accepted = await client.accept_job_offer(worker_id="w-2", offer_id=second.offer_id)
    out["accept"] = {"assignment_id": accepted.assignment_id, "job_id": accepted.job_id, "worker_id": accepted.worker_id}
    out["accept_again"] = await raises(client.accept_job_offer(worker_id="w-2", offer_id=second.offer_id))
    unassigned = await client.unassign_job("job-2", accepted.assignment_id, suspend_matching=True)
    out["unassign"] = {"job_id": unassigned.job_id, "unassignment_count": unassigned.unassignment_count,
                       "type": type(unassigned).__name__}
    out["job_2_after_unassign"] = job_view(await client.get_job(job_id="job-2"))
    await client.update_job("job-2", matching_mode=JobMatchingMode(queue_and_match_mode={}))
    third = await eventually(lambda: offer_for("job-2"))
    accepted = await client.accept_job_offer(worker_id="w-2", offer_id=third.offer_id)
    await client.complete_job(job_id="job-2", assignment_id=accepted.assignment_id, note="done")
    await client.close_job(job_id="job-2", assignment_id=accepted.assignment_id, disposition_code="Resolved", note="bye")
    out["job_2_closed"] = job_view(await client.get_job(job_id="job-2"))
    out["complete_unknown_assignment"] = await raises(client.complete_job(job_id="job-2", assignment_id="nope"))
    await client.reclassify_job(job_id="job-1")
    await client.cancel_job(job_id="job-1", disposition_code="Abandoned", note="caller hung up")
    out["job_1_cancelled"] = job_view(await client.get_job(job_id="job-1"))
    await client.cancel_job(job_id="job-suspended")
    await client.delete_job(job_id="job-suspended")
    out["job_gone"] = await raises(client.get_job(job_id="job-suspended"))
    await client.update_worker("w-3", available_for_offers=False)
    await client.delete_worker(worker_id="w-3")
    out["worker_gone"] = await raises(client.get_worker(worker_id="w-3"))
    return out


async def position(client: Any, job_id: str) -> Json:
    p = await client.get_queue_position(job_id=job_id)
    return {"job_id": p.job_id, "position": p.position, "queue_id": p.queue_id, "queue_length": p.queue_length,
            "estimated_wait_time_minutes": p.estimated_wait_time_minutes, "type": type(p).__name__}


async def statistics(client: Any, queue_id: str) -> Json:
    s = await client.get_queue_statistics(queue_id=queue_id)
    return {"queue_id": s.queue_id, "length": s.length, "estimated_wait_time_minutes": s.estimated_wait_time_minutes,
            "longest_job_wait_time_minutes": s.longest_job_wait_time_minutes, "type": type(s).__name__}


@scenario
async def register_worker(c: Clients, params: Json) -> Json:
    """A preview worker on `params.queue_id` / `params.channel_id` (capacity 1)."""
    worker = await c.client.create_worker(worker_id=params["worker_id"], router_worker=RouterWorker(
        total_capacity=1, queue_assignments={params["queue_id"]: {}}, labels=params.get("labels") or {},
        channel_configurations={params["channel_id"]: ChannelConfiguration(capacity_cost_per_job=1)},
        available_for_offers=True))
    return worker_view(worker)


@scenario
async def take_offer(c: Clients, params: Json) -> Json:
    """Wait for the worker's offer of `params.job_id`, accept, complete and close it."""
    client = c.client

    async def offer() -> Any:
        w = await client.get_worker(worker_id=params["worker_id"])
        return next((o for o in w.offers if o.job_id == params["job_id"]), None)

    found = await eventually(offer)
    if found is None:
        return {"offer": None}
    accepted = await client.accept_job_offer(worker_id=params["worker_id"], offer_id=found.offer_id)
    assigned = job_view(await client.get_job(job_id=params["job_id"]))
    await client.complete_job(job_id=params["job_id"], assignment_id=accepted.assignment_id, note="preview done")
    await client.close_job(job_id=params["job_id"], assignment_id=accepted.assignment_id)
    return {"offer": found.offer_id, "assignment_id": accepted.assignment_id, "assigned": assigned,
            "closed": job_view(await client.get_job(job_id=params["job_id"]))}


@scenario
async def read_everything(c: Clients, params: Json) -> Json:
    """The typed views of the resources named in params (GA-written ones, for round trips)."""
    out: Json = {}
    if "distribution_policy_id" in params:
        out["distribution_policy"] = distribution_policy_view(
            await c.admin.get_distribution_policy(distribution_policy_id=params["distribution_policy_id"]))
    if "classification_policy_id" in params:
        out["classification_policy"] = classification_policy_view(
            await c.admin.get_classification_policy(classification_policy_id=params["classification_policy_id"]))
    if "exception_policy_id" in params:
        out["exception_policy"] = exception_policy_view(
            await c.admin.get_exception_policy(exception_policy_id=params["exception_policy_id"]))
    if "job_id" in params:
        out["job"] = job_view(await c.client.get_job(job_id=params["job_id"]))
    if "worker_id" in params:
        out["worker"] = worker_view(await c.client.get_worker(worker_id=params["worker_id"]))
    return out


@scenario
async def update_ga_resources(c: Clients, params: Json) -> Json:
    """Preview updates of GA-written resources: a distribution policy's expiry, a
    classification policy's worker selectors, one exception rule replaced and one removed, one
    job note added and one deleted by key, a worker's queue added by key."""
    admin, client = c.admin, c.client
    out: Json = {}
    out["distribution_policy"] = distribution_policy_view(await admin.update_distribution_policy(
        params["distribution_policy_id"], offer_expires_after_seconds=120))
    out["classification_policy"] = classification_policy_view(await admin.update_classification_policy(
        params["classification_policy_id"], worker_selectors=[StaticWorkerSelectorAttachment(
            worker_selector=RouterWorkerSelector(key="Lang", label_operator=LabelOperator.GREATER_THAN_EQUAL, value=2))]))
    out["exception_policy"] = exception_policy_view(await admin.update_exception_policy(
        params["exception_policy_id"], exception_rules={
            params["remove_rule"]: None,
            "from-preview": ExceptionRule(trigger=QueueLengthExceptionTrigger(threshold=3),
                                          actions={"preview-cancel": CancelExceptionAction(note="full")}),
        }))
    out["job"] = job_view(await client.update_job(params["job_id"], notes={
        params["remove_note"]: None, "2025-06-01T12:00:00Z": "added by preview"}))
    out["worker"] = worker_view(await client.update_worker(params["worker_id"], queue_assignments={params["add_queue"]: {}}))
    return out


@scenario
async def write_back_unchanged(c: Clients, params: Json) -> Json:
    """Fetch each named resource and send the fetched model straight back as the update (the
    client strips read-only fields): a lossless translation leaves the resource as it was."""
    admin, client = c.admin, c.client
    await admin.update_distribution_policy(
        params["distribution_policy_id"],
        await admin.get_distribution_policy(distribution_policy_id=params["distribution_policy_id"]))
    await admin.update_classification_policy(
        params["classification_policy_id"],
        await admin.get_classification_policy(classification_policy_id=params["classification_policy_id"]))
    await admin.update_exception_policy(
        params["exception_policy_id"],
        await admin.get_exception_policy(exception_policy_id=params["exception_policy_id"]))
    await client.update_job(params["job_id"], await client.get_job(job_id=params["job_id"]))
    await client.update_worker(params["worker_id"], await client.get_worker(worker_id=params["worker_id"]))
    return {"written": True}


@scenario
async def unsupported_version(c: Clients, params: Json) -> Json:
    """The preview client sent with an api-version the router does not know."""
    bad = Clients(params["endpoint"], params["key"], c.is_async, api_version="2099-01-01-preview")
    try:
        return {"error": await raises(bad.client.get_job(job_id="any"))}
    finally:
        await bad.close()


async def main(argv: list[str]) -> Json:
    args = [a for a in argv if a != "--async"]
    name, endpoint, key = args[:3]
    params = json.loads(args[3]) if len(args) > 3 else {}
    params.setdefault("endpoint", endpoint)
    params.setdefault("key", key)
    clients = Clients(endpoint, key, "--async" in argv)
    try:
        return await SCENARIOS[name](clients, params)
    except HttpResponseError as exc:
        return {"error": error_of(exc)}
    finally:
        await clients.close()


if __name__ == "__main__":
    print(json.dumps(asyncio.run(main(sys.argv[1:])), default=str))
