"""Administration API through the official SDK (azure-communication-jobrouter 1.0.0) against the
in-process app: distribution, classification and exception policies and queues (ACS 2023-11-01
§2.1), their response defaults (§3.6), validation, conflicts and conditional requests."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from email.utils import parsedate_to_datetime

import pytest
from azure.core import MatchConditions
from azure.core.exceptions import (
    HttpResponseError,
    ResourceExistsError,
    ResourceModifiedError,
    ResourceNotFoundError,
)
from azure.communication.jobrouter.models import (
    BestWorkerMode,
    CancelExceptionAction,
    ClassificationPolicy,
    ConditionalQueueSelectorAttachment,
    DistributionPolicy,
    ExceptionPolicy,
    ExceptionRule,
    ExpressionRouterRule,
    LabelOperator,
    LongestIdleMode,
    ManualReclassifyExceptionAction,
    PassThroughQueueSelectorAttachment,
    PassThroughWorkerSelectorAttachment,
    QueueLengthExceptionTrigger,
    ReclassifyExceptionAction,
    RoundRobinMode,
    RouterChannel,
    RouterJob,
    RouterQueue,
    RouterQueueSelector,
    RouterWorker,
    RouterWorkerSelector,
    RuleEngineQueueSelectorAttachment,
    ScoringRuleOptions,
    StaticQueueSelectorAttachment,
    StaticRouterRule,
    StaticWorkerSelectorAttachment,
    WaitTimeExceptionTrigger,
)


def with_response(pipeline_response, deserialized, headers):
    """`cls=` hook: keep the HTTP status and headers next to the model."""
    return pipeline_response.http_response.status_code, deserialized, headers, pipeline_response.http_response.headers


def _dp(admin_client, pid="dp-1", **kw):
    return admin_client.upsert_distribution_policy(
        pid, DistributionPolicy(offer_expires_after_seconds=600, mode=kw.pop("mode", LongestIdleMode()), **kw)
    )


def _queue(admin_client, qid="q-1", dp="dp-1", **kw):
    return admin_client.upsert_queue(qid, RouterQueue(distribution_policy_id=dp, **kw))


# --- distribution policies -------------------------------------------------------------------


def test_distribution_policy_upsert_is_201_then_200_with_mode_defaults(admin_client):
    status, created, headers, raw = admin_client.upsert_distribution_policy(
        "dp-crud",
        DistributionPolicy(name="first", offer_expires_after_seconds=600, mode=LongestIdleMode()),
        cls=with_response,
    )
    assert status == 201
    assert created.id == "dp-crud" and created.name == "first"
    assert created.offer_expires_after_seconds == 600
    assert type(created.mode) is LongestIdleMode and created.mode.kind == "longestIdle"
    # §3.6: the mode always carries bypassSelectors and both concurrency limits.
    assert created.mode.bypass_selectors is False
    assert created.mode.min_concurrent_offers == 1 and created.mode.max_concurrent_offers == 1
    assert created.etag

    status, updated, _, _ = admin_client.upsert_distribution_policy(
        "dp-crud", name="second", offer_expires_after_seconds=30, cls=with_response
    )
    assert status == 200
    assert updated.name == "second" and updated.offer_expires_after_seconds == 30
    assert type(updated.mode) is LongestIdleMode  # untouched by a patch without mode
    assert updated.etag != created.etag

    fetched = admin_client.get_distribution_policy("dp-crud")
    assert (fetched.name, fetched.offer_expires_after_seconds, fetched.etag) == ("second", 30, updated.etag)


def test_distribution_policy_modes_come_back_as_their_sdk_subclasses(admin_client):
    best = admin_client.upsert_distribution_policy(
        "dp-best",
        DistributionPolicy(
            offer_expires_after_seconds=60,
            mode=BestWorkerMode(
                min_concurrent_offers=1,
                max_concurrent_offers=3,
                bypass_selectors=True,
                scoring_rule=ExpressionRouterRule(expression="worker.skill * 2"),
                scoring_rule_options=ScoringRuleOptions(descending_order=False, batch_size=5),
            ),
        ),
    )
    assert type(best.mode) is BestWorkerMode
    assert (best.mode.min_concurrent_offers, best.mode.max_concurrent_offers) == (1, 3)
    assert best.mode.bypass_selectors is True
    assert type(best.mode.scoring_rule) is ExpressionRouterRule
    assert best.mode.scoring_rule.language == "powerFx"
    assert best.mode.scoring_rule.expression == "worker.skill * 2"
    assert best.mode.scoring_rule_options.descending_order is False
    assert best.mode.scoring_rule_options.batch_size == 5

    rr = _dp(admin_client, "dp-rr", mode=RoundRobinMode(max_concurrent_offers=2))
    assert type(rr.mode) is RoundRobinMode and rr.mode.kind == "roundRobin"
    assert rr.mode.min_concurrent_offers == 1 and rr.mode.max_concurrent_offers == 2
    assert rr.mode.bypass_selectors is False
    assert type(admin_client.get_distribution_policy("dp-rr").mode) is RoundRobinMode


def test_changing_the_mode_kind_replaces_the_whole_mode(admin_client):
    admin_client.upsert_distribution_policy(
        "dp-k",
        DistributionPolicy(
            offer_expires_after_seconds=60,
            mode=BestWorkerMode(scoring_rule=StaticRouterRule(value=1), max_concurrent_offers=2),
        ),
    )
    updated = admin_client.upsert_distribution_policy("dp-k", mode=RoundRobinMode())
    assert type(updated.mode) is RoundRobinMode
    assert updated.mode.max_concurrent_offers == 1
    assert "scoringRule" not in updated.mode


# --- classification policies ------------------------------------------------------------------


def test_classification_policy_without_attachments_returns_empty_lists(admin_client):
    status, policy, _, _ = admin_client.upsert_classification_policy(
        "cp-empty", ClassificationPolicy(name="empty"), cls=with_response
    )
    assert status == 201
    assert policy.queue_selector_attachments == []
    assert policy.worker_selector_attachments == []
    assert policy.prioritization_rule is None
    assert policy.fallback_queue_id is None
    fetched = admin_client.get_classification_policy("cp-empty")
    assert fetched.queue_selector_attachments == [] and fetched.worker_selector_attachments == []


def test_classification_policy_attachments_and_rules_round_trip_with_their_types(admin_client):
    _dp(admin_client)
    _queue(admin_client, "q-fallback")
    expected_qsa = [
        StaticQueueSelectorAttachment(
            queue_selector=RouterQueueSelector(key="Id", label_operator=LabelOperator.EQUAL, value="q-fallback")
        ),
        ConditionalQueueSelectorAttachment(
            condition=ExpressionRouterRule(expression="job.vip = true"),
            queue_selectors=[RouterQueueSelector(key="tier", label_operator=LabelOperator.EQUAL, value="gold")],
        ),
        PassThroughQueueSelectorAttachment(key="region", label_operator=LabelOperator.EQUAL),
        RuleEngineQueueSelectorAttachment(rule=StaticRouterRule(value=[{"key": "x", "labelOperator": "equal", "value": 1}])),
    ]
    expected_wsa = [
        StaticWorkerSelectorAttachment(
            worker_selector=RouterWorkerSelector(key="skill", label_operator=LabelOperator.GREATER_THAN, value=5)
        ),
        PassThroughWorkerSelectorAttachment(key="lang", label_operator=LabelOperator.EQUAL, expires_after_seconds=30),
    ]
    status, policy, _, _ = admin_client.upsert_classification_policy(
        "cp-full",
        ClassificationPolicy(
            name="full",
            fallback_queue_id="q-fallback",
            queue_selector_attachments=expected_qsa,
            worker_selector_attachments=expected_wsa,
            prioritization_rule=StaticRouterRule(value=10),
        ),
        cls=with_response,
    )
    assert status == 201
    for got in (policy, admin_client.get_classification_policy("cp-full")):
        assert got.fallback_queue_id == "q-fallback"
        assert [type(a) for a in got.queue_selector_attachments] == [type(a) for a in expected_qsa]
        static_qs = got.queue_selector_attachments[0].queue_selector
        assert (static_qs.key, static_qs.label_operator, static_qs.value) == ("Id", "equal", "q-fallback")
        cond = got.queue_selector_attachments[1]
        assert type(cond.condition) is ExpressionRouterRule and cond.condition.language == "powerFx"
        assert cond.queue_selectors[0].value == "gold"
        assert (got.queue_selector_attachments[2].key, got.queue_selector_attachments[2].label_operator) == (
            "region",
            "equal",
        )
        assert type(got.queue_selector_attachments[3].rule) is StaticRouterRule
        # §3.6: selectors inside a static rule value come back exactly as given.
        assert got.queue_selector_attachments[3].rule.value == [{"key": "x", "labelOperator": "equal", "value": 1}]
        assert [type(a) for a in got.worker_selector_attachments] == [type(a) for a in expected_wsa]
        ws = got.worker_selector_attachments[0].worker_selector
        assert (ws.key, ws.label_operator, ws.value) == ("skill", "greaterThan", 5)
        assert ws.expedite is False and ws.expires_at is None
        assert got.worker_selector_attachments[1].expires_after_seconds == 30
        assert type(got.prioritization_rule) is StaticRouterRule and got.prioritization_rule.value == 10


def test_expression_rule_syntax_error_is_400_naming_the_position(admin_client):
    with pytest.raises(HttpResponseError) as err:
        admin_client.upsert_classification_policy(
            "cp-bad", ClassificationPolicy(prioritization_rule=ExpressionRouterRule(expression="If(job.x = 1, 10"))
        )
    assert err.value.status_code == 400
    assert "line 1, column" in str(err.value)
    with pytest.raises(ResourceNotFoundError):
        admin_client.get_classification_policy("cp-bad")


def test_scoring_rule_syntax_error_in_distribution_policy_is_400(admin_client):
    with pytest.raises(HttpResponseError) as err:
        _dp(admin_client, "dp-bad", mode=BestWorkerMode(scoring_rule=ExpressionRouterRule(expression="worker.a +* 2")))
    assert err.value.status_code == 400
    assert "line 1, column" in str(err.value)


# --- exception policies ------------------------------------------------------------------------


def test_exception_policy_actions_get_ids_and_response_defaults(admin_client):
    status, policy, _, _ = admin_client.upsert_exception_policy(
        "ep-1",
        ExceptionPolicy(
            name="escalation",
            exception_rules=[
                ExceptionRule(
                    id="too-long",
                    trigger=QueueLengthExceptionTrigger(threshold=5),
                    actions=[CancelExceptionAction(), ManualReclassifyExceptionAction(queue_id="q-x", priority=3)],
                ),
                ExceptionRule(
                    id="waited",
                    trigger=WaitTimeExceptionTrigger(threshold_seconds=90),
                    actions=[ReclassifyExceptionAction(classification_policy_id="cp-x")],
                ),
            ],
        ),
        cls=with_response,
    )
    assert status == 201
    for got in (policy, admin_client.get_exception_policy("ep-1")):
        assert [r.id for r in got.exception_rules] == ["too-long", "waited"]
        first, second = got.exception_rules
        assert type(first.trigger) is QueueLengthExceptionTrigger and first.trigger.threshold == 5
        assert type(second.trigger) is WaitTimeExceptionTrigger and second.trigger.threshold_seconds == 90
        cancel, manual = first.actions
        assert type(cancel) is CancelExceptionAction
        assert cancel.id  # generated by the service
        # §3.6/§5: no defaults filled into the stored cancel action.
        assert cancel.note is None and cancel.disposition_code is None
        assert type(manual) is ManualReclassifyExceptionAction
        assert (manual.queue_id, manual.priority) == ("q-x", 3)
        assert manual.worker_selectors == []
        (reclassify,) = second.actions
        assert type(reclassify) is ReclassifyExceptionAction
        assert reclassify.classification_policy_id == "cp-x"
        assert reclassify.labels_to_upsert == {}
    ids = [a.id for a in policy.exception_rules[0].actions] + [policy.exception_rules[1].actions[0].id]
    assert len(set(ids)) == 3
    # The generated ids are stable across reads.
    again = admin_client.get_exception_policy("ep-1")
    assert [a.id for a in again.exception_rules[0].actions] == ids[:2]


def test_exception_policy_update_replaces_the_rule_list(admin_client):
    admin_client.upsert_exception_policy(
        "ep-2",
        ExceptionPolicy(
            exception_rules=[
                ExceptionRule(id="a", trigger=QueueLengthExceptionTrigger(threshold=1), actions=[CancelExceptionAction()])
            ]
        ),
    )
    status, updated, _, _ = admin_client.upsert_exception_policy(
        "ep-2",
        exception_rules=[
            ExceptionRule(
                id="b",
                trigger=WaitTimeExceptionTrigger(threshold_seconds=10),
                actions=[CancelExceptionAction(id="c1", note="late", disposition_code="Timeout")],
            )
        ],
        cls=with_response,
    )
    assert status == 200
    assert [r.id for r in updated.exception_rules] == ["b"]
    action = updated.exception_rules[0].actions[0]
    assert (action.id, action.note, action.disposition_code) == ("c1", "late", "Timeout")


# --- queues --------------------------------------------------------------------------------------


def test_queue_upsert_adds_the_id_label_and_is_201_then_200(admin_client):
    _dp(admin_client)
    status, queue, _, _ = admin_client.upsert_queue(
        "q-main", RouterQueue(name="Main", distribution_policy_id="dp-1", labels={"lang": "en", "tier": 2}),
        cls=with_response,
    )
    assert status == 201
    assert queue.labels == {"lang": "en", "tier": 2, "Id": "q-main"}
    assert (queue.name, queue.distribution_policy_id, queue.exception_policy_id) == ("Main", "dp-1", None)

    admin_client.upsert_exception_policy("ep-q", ExceptionPolicy(exception_rules=[]))
    status, queue, _, _ = admin_client.upsert_queue(
        "q-main", RouterQueue(name="Main 2", distribution_policy_id="dp-1", labels={"lang": "en", "tier": 2},
                              exception_policy_id="ep-q"),
        cls=with_response,
    )
    assert status == 200
    assert queue.name == "Main 2" and queue.exception_policy_id == "ep-q"
    assert admin_client.get_queue("q-main").labels == {"lang": "en", "tier": 2, "Id": "q-main"}


def test_queue_with_unknown_distribution_policy_is_400(admin_client):
    with pytest.raises(HttpResponseError) as err:
        _queue(admin_client, "q-orphan", dp="no-such-policy")
    assert err.value.status_code == 400


# --- generic CRUD: get/list/delete across the four admin resources ------------------------------

RESOURCES = ["distribution_policy", "classification_policy", "exception_policy", "queue"]


def _create(admin_client, kind: str, rid: str):
    if kind == "distribution_policy":
        return _dp(admin_client, rid)
    if kind == "classification_policy":
        return admin_client.upsert_classification_policy(rid, ClassificationPolicy(name=rid))
    if kind == "exception_policy":
        return admin_client.upsert_exception_policy(rid, ExceptionPolicy(name=rid, exception_rules=[]))
    _dp(admin_client, "dp-for-queues")
    return _queue(admin_client, rid, dp="dp-for-queues")


def _plural(kind: str) -> str:
    return {"distribution_policy": "distribution_policies", "classification_policy": "classification_policies",
            "exception_policy": "exception_policies", "queue": "queues"}[kind]


@pytest.mark.parametrize("kind", RESOURCES)
def test_list_pages_hold_at_most_two_and_cover_every_item(admin_client, kind):
    ids = {f"{kind}-{i}" for i in range(5)}
    for rid in sorted(ids):
        _create(admin_client, kind, rid)
    lister = getattr(admin_client, f"list_{_plural(kind)}")
    pages = [list(page) for page in lister(results_per_page=2).by_page()]
    assert len(pages) >= 3
    assert all(len(page) <= 2 for page in pages)
    seen = [item.id for page in pages for item in page]
    assert len(seen) == len(set(seen))  # no item twice
    assert ids <= set(seen)


@pytest.mark.parametrize("kind", RESOURCES)
def test_get_returns_the_stored_resource_and_unknown_id_is_404(admin_client, kind):
    created = _create(admin_client, kind, f"{kind}-get")
    fetched = getattr(admin_client, f"get_{kind}")(f"{kind}-get")
    assert fetched.id == created.id and fetched.etag == created.etag
    with pytest.raises(ResourceNotFoundError) as err:
        getattr(admin_client, f"get_{kind}")("does-not-exist")
    assert err.value.status_code == 404 and err.value.reason == "Not Found"


@pytest.mark.parametrize("kind", RESOURCES)
def test_delete_answers_204_then_get_is_404(admin_client, kind):
    _create(admin_client, kind, f"{kind}-del")
    status = getattr(admin_client, f"delete_{kind}")(f"{kind}-del", cls=lambda resp, *_: resp.http_response.status_code)
    assert status == 204
    with pytest.raises(ResourceNotFoundError) as err:
        getattr(admin_client, f"get_{kind}")(f"{kind}-del")
    assert err.value.status_code == 404 and err.value.reason == "Not Found"


@pytest.mark.parametrize("kind", RESOURCES)
def test_delete_of_unknown_id_is_404(admin_client, kind):
    with pytest.raises(ResourceNotFoundError):
        getattr(admin_client, f"delete_{kind}")("never-existed")


@pytest.mark.parametrize("kind", RESOURCES)
def test_upsert_and_get_carry_etag_and_rfc1123_last_modified(admin_client, kind):
    _create(admin_client, kind, f"{kind}-hdr")
    _, body, headers, raw = getattr(admin_client, f"get_{kind}")(f"{kind}-hdr", cls=with_response)
    assert raw["ETag"].strip('"') == body.etag
    assert headers["ETag"] and isinstance(headers["Last-Modified"], datetime)
    last_modified = parsedate_to_datetime(raw["Last-Modified"])
    assert abs(last_modified - datetime.now(timezone.utc)) < timedelta(minutes=1)


# --- validation --------------------------------------------------------------------------------


def test_unknown_distribution_mode_kind_is_400(admin_client):
    with pytest.raises(HttpResponseError) as err:
        admin_client.upsert_distribution_policy(
            "dp-weird", {"offerExpiresAfterSeconds": 10, "mode": {"kind": "randomPick"}}
        )
    assert err.value.status_code == 400


def test_unknown_rule_kind_is_400(admin_client):
    with pytest.raises(HttpResponseError) as err:
        admin_client.upsert_classification_policy("cp-weird", {"prioritizationRule": {"kind": "magic", "value": 1}})
    assert err.value.status_code == 400


def test_unknown_trigger_kind_is_400(admin_client):
    with pytest.raises(HttpResponseError) as err:
        admin_client.upsert_exception_policy(
            "ep-weird",
            {"exceptionRules": [{"id": "r", "trigger": {"kind": "moonPhase"}, "actions": [{"kind": "cancel"}]}]},
        )
    assert err.value.status_code == 400


def test_negative_worker_capacity_is_400(client):
    with pytest.raises(HttpResponseError) as err:
        client.upsert_worker("w-neg", RouterWorker(capacity=-1, available_for_offers=False))
    assert err.value.status_code == 400
    with pytest.raises(ResourceNotFoundError):
        client.get_worker("w-neg")


def test_negative_offer_expiry_is_400(admin_client):
    with pytest.raises(HttpResponseError) as err:
        admin_client.upsert_distribution_policy(
            "dp-neg", DistributionPolicy(offer_expires_after_seconds=-5, mode=LongestIdleMode())
        )
    assert err.value.status_code == 400


def test_max_concurrent_offers_below_min_is_400(admin_client):
    with pytest.raises(HttpResponseError) as err:
        _dp(admin_client, "dp-minmax", mode=LongestIdleMode(min_concurrent_offers=3, max_concurrent_offers=2))
    assert err.value.status_code == 400


# --- conflicts -----------------------------------------------------------------------------------


def test_deleting_a_queue_with_an_active_job_is_409(admin_client, client):
    _dp(admin_client)
    _queue(admin_client, "q-busy")
    client.upsert_job("job-busy", RouterJob(channel_id="voice", queue_id="q-busy"))
    with pytest.raises(ResourceExistsError) as err:
        admin_client.delete_queue("q-busy")
    assert err.value.status_code == 409
    assert admin_client.get_queue("q-busy").id == "q-busy"
    # Once the job is cancelled the queue can go.
    client.cancel_job("job-busy")
    admin_client.delete_queue("q-busy")
    with pytest.raises(ResourceNotFoundError):
        admin_client.get_queue("q-busy")


def test_deleting_a_distribution_policy_used_by_a_queue_is_409(admin_client):
    _dp(admin_client, "dp-used")
    _queue(admin_client, "q-user", dp="dp-used")
    with pytest.raises(ResourceExistsError) as err:
        admin_client.delete_distribution_policy("dp-used")
    assert err.value.status_code == 409
    assert admin_client.get_distribution_policy("dp-used").id == "dp-used"


def test_deleting_a_classification_policy_used_by_an_active_job_is_409(admin_client, client):
    _dp(admin_client)
    _queue(admin_client)
    admin_client.upsert_classification_policy("cp-used", ClassificationPolicy(name="x"))
    client.upsert_job("job-cp", RouterJob(channel_id="voice", queue_id="q-1", classification_policy_id="cp-used"))
    with pytest.raises(ResourceExistsError):
        admin_client.delete_classification_policy("cp-used")
    client.cancel_job("job-cp")
    admin_client.delete_classification_policy("cp-used")


def test_deleting_an_exception_policy_used_by_a_queue_is_409(admin_client):
    _dp(admin_client)
    admin_client.upsert_exception_policy("ep-used", ExceptionPolicy(exception_rules=[]))
    _queue(admin_client, "q-ep", exception_policy_id="ep-used")
    with pytest.raises(ResourceExistsError):
        admin_client.delete_exception_policy("ep-used")


# --- conditional requests ------------------------------------------------------------------------


def test_if_match_with_a_stale_etag_is_412_resource_modified(admin_client):
    first = _dp(admin_client, "dp-etag")
    second = admin_client.upsert_distribution_policy("dp-etag", name="changed")
    assert second.etag != first.etag
    with pytest.raises(ResourceModifiedError) as err:
        admin_client.upsert_distribution_policy(
            "dp-etag", name="lost update", etag=first.etag, match_condition=MatchConditions.IfNotModified
        )
    assert err.value.status_code == 412
    assert admin_client.get_distribution_policy("dp-etag").name == "changed"
    # With the current etag the update goes through.
    third = admin_client.upsert_distribution_policy(
        "dp-etag", name="ok", etag=second.etag, match_condition=MatchConditions.IfNotModified
    )
    assert third.name == "ok"


def test_weak_or_quoted_etags_are_compared_by_value(admin_client):
    policy = _dp(admin_client, "dp-weak")
    updated = admin_client.upsert_distribution_policy(
        "dp-weak", name="w", etag=f'W/"{policy.etag}"', match_condition=MatchConditions.IfNotModified
    )
    assert updated.name == "w"
    updated = admin_client.upsert_distribution_policy(
        "dp-weak", name="q", etag=f'"{updated.etag}"', match_condition=MatchConditions.IfNotModified
    )
    assert updated.name == "q"


def test_if_none_match_star_on_an_existing_resource_is_resource_exists(admin_client):
    _dp(admin_client)
    _queue(admin_client, "q-once")
    with pytest.raises(ResourceExistsError) as err:
        admin_client.upsert_queue("q-once", name="again", match_condition=MatchConditions.IfMissing)
    assert err.value.status_code == 412
    assert admin_client.get_queue("q-once").name is None


def test_if_none_match_star_on_a_missing_resource_creates_it(admin_client):
    _dp(admin_client)
    status, queue, _, _ = admin_client.upsert_queue(
        "q-new", RouterQueue(distribution_policy_id="dp-1"), match_condition=MatchConditions.IfMissing,
        cls=with_response,
    )
    assert status == 201 and queue.id == "q-new"


def test_if_match_star_on_a_missing_resource_is_resource_not_found(admin_client):
    with pytest.raises(ResourceNotFoundError) as err:
        admin_client.upsert_exception_policy(
            "ep-missing", ExceptionPolicy(exception_rules=[]), match_condition=MatchConditions.IfPresent
        )
    assert err.value.status_code == 412
    with pytest.raises(ResourceNotFoundError):
        admin_client.get_exception_policy("ep-missing")


def test_if_match_star_on_an_existing_resource_updates_it(admin_client):
    admin_client.upsert_classification_policy("cp-present", ClassificationPolicy(name="a"))
    updated = admin_client.upsert_classification_policy(
        "cp-present", name="b", match_condition=MatchConditions.IfPresent
    )
    assert updated.name == "b"


def test_if_unmodified_since_before_the_last_change_is_412(admin_client):
    _dp(admin_client, "dp-since")
    with pytest.raises(HttpResponseError) as err:
        admin_client.upsert_distribution_policy(
            "dp-since", name="x", if_unmodified_since=datetime.now(timezone.utc) - timedelta(hours=1)
        )
    assert err.value.status_code == 412
    ok = admin_client.upsert_distribution_policy(
        "dp-since", name="y", if_unmodified_since=datetime.now(timezone.utc) + timedelta(minutes=1)
    )
    assert ok.name == "y"


def test_conditional_update_applies_to_workers_and_jobs_too(admin_client, client):
    _dp(admin_client)
    _queue(admin_client)
    worker = client.upsert_worker(
        "w-cond", RouterWorker(capacity=1, channels=[RouterChannel(channel_id="voice", capacity_cost_per_job=1)])
    )
    client.upsert_worker("w-cond", labels={"x": 1})
    with pytest.raises(ResourceModifiedError):
        client.upsert_worker("w-cond", labels={"x": 2}, etag=worker.etag, match_condition=MatchConditions.IfNotModified)
    with pytest.raises(ResourceExistsError):
        client.upsert_worker("w-cond", labels={"x": 3}, match_condition=MatchConditions.IfMissing)
    assert client.get_worker("w-cond").labels == {"x": 1, "Id": "w-cond"}
    with pytest.raises(ResourceNotFoundError):
        client.upsert_job("job-missing", channel_id="voice", queue_id="q-1", match_condition=MatchConditions.IfPresent)
    with pytest.raises(ResourceNotFoundError):
        client.get_job("job-missing")
