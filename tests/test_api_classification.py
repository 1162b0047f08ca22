"""Classification through the official SDK (azure-communication-jobrouter 1.0.0) against the
in-process app (ACS 2023-11-01 §3.3, §4.4): queue selector attachments of every kind, fallback
queue, classificationFailed, prioritization rules, worker selector attachments and their effect
on matching, reclassification, and function / webhook rules answered by real local HTTP servers
(also as best-worker scoring rules). What needs the background worker process (classification
while it is down, overlapping classifications) is in tests/test_api_live_smoke.py."""

from __future__ import annotations

import time
from collections import Counter
from datetime import datetime, timedelta, timezone

import pytest
from azure.communication.jobrouter.models import (
    BestWorkerMode,
    ConditionalQueueSelectorAttachment,
    ConditionalWorkerSelectorAttachment,
    DirectMapRouterRule,
    ExpressionRouterRule,
    LabelOperator,
    LongestIdleMode,
    OAuth2WebhookClientCredential,
    PassThroughQueueSelectorAttachment,
    PassThroughWorkerSelectorAttachment,
    QueueWeightedAllocation,
    RouterJob,
    RouterJobStatus,
    RouterQueueSelector,
    RouterWorkerSelector,
    RouterWorkerSelectorStatus,
    RuleEngineQueueSelectorAttachment,
    RuleEngineWorkerSelectorAttachment,
    ScoringRuleOptions,
    StaticQueueSelectorAttachment,
    StaticRouterRule,
    StaticWorkerSelectorAttachment,
    WebhookRouterRule,
    WeightedAllocationQueueSelectorAttachment,
    WeightedAllocationWorkerSelectorAttachment,
    WorkerWeightedAllocation,
)

from tests.inprocess import eventually
from tests.remote_endpoint import function_rule, oauth_routes
from tests.sdk import (
    add_worker,
    job_in_policy,
    make_distribution_policy,
    make_queue,
    offered_jobs,
    policy,
    region_queues,
)

CHANNEL = "voice"


# --- helpers -------------------------------------------------------------------------------------






@pytest.fixture
def queues(admin_client):
    """dp-1 and three queues: q-eu (Region EU, Tier 1), q-us (Region US, Tier 2), q-fallback."""
    return region_queues(admin_client)






def settled(client, job_id, timeout=10.0):
    """The job once classification is over (queued or classificationFailed)."""
    try:
        return eventually(
            lambda: (j := client.get_job(job_id)).status
            in (RouterJobStatus.QUEUED, RouterJobStatus.CLASSIFICATION_FAILED)
            and j,
            timeout=timeout,
        )
    except AssertionError as exc:
        raise AssertionError(f"{exc}; job now: {dict(client.get_job(job_id))}") from None


def queued(client, job_id, timeout=10.0):
    job = settled(client, job_id, timeout)
    assert job.status == RouterJobStatus.QUEUED, (job.status, job.get("classificationError"))
    return job


def failed(client, job_id, timeout=10.0):
    job = settled(client, job_id, timeout)
    assert job.status == RouterJobStatus.CLASSIFICATION_FAILED, (job.status, job.queue_id)
    return job






def sel(key, value, op=LabelOperator.EQUAL, **kwargs):
    return RouterWorkerSelector(key=key, label_operator=op, value=value, **kwargs)


def qsel(key, value, op=LabelOperator.EQUAL):
    return RouterQueueSelector(key=key, label_operator=op, value=value)


def plain(selectors) -> list[tuple]:
    return sorted((s.key, str(s.label_operator), s.value) for s in selectors)


# --- queue selection -----------------------------------------------------------------------------


def test_job_with_policy_answers_pending_classification_then_is_queued_by_static_id_selector(admin_client, client, queues):
    policy(admin_client, "cp", queue_selector_attachments=[StaticQueueSelectorAttachment(queue_selector=qsel("Id", "q-us"))])
    job = job_in_policy(client, "j1", "cp")
    assert job.status == RouterJobStatus.PENDING_CLASSIFICATION
    job = queued(client, "j1")
    assert job.queue_id == "q-us"
    assert job.enqueued_at is not None
    assert "classificationError" not in job


def test_conditional_attachment_with_expression_condition_selects_queue_by_job_label(admin_client, client, queues):
    policy(
        admin_client,
        "cp",
        fallback_queue_id="q-fallback",
        queue_selector_attachments=[
            ConditionalQueueSelectorAttachment(
                condition=ExpressionRouterRule(expression='job.Country = "FR"'),
                queue_selectors=[qsel("Region", "EU")],
            )
        ],
    )
    job_in_policy(client, "fr", "cp", {"Country": "FR"})
    job_in_policy(client, "br", "cp", {"Country": "BR"})
    assert queued(client, "fr").queue_id == "q-eu"
    assert queued(client, "br").queue_id == "q-fallback"


def test_pass_through_attachment_matches_queue_label_with_job_label_value(admin_client, client, queues):
    policy(
        admin_client,
        "cp",
        queue_selector_attachments=[PassThroughQueueSelectorAttachment(key="Region", label_operator=LabelOperator.EQUAL)],
    )
    job_in_policy(client, "j-us", "cp", {"Region": "US"})
    job_in_policy(client, "j-eu", "cp", {"Region": "EU"})
    assert queued(client, "j-us").queue_id == "q-us"
    assert queued(client, "j-eu").queue_id == "q-eu"


def test_rule_engine_attachment_with_static_rule_returning_selectors(admin_client, client, queues):
    policy(
        admin_client,
        "cp",
        queue_selector_attachments=[
            RuleEngineQueueSelectorAttachment(
                rule=StaticRouterRule(
                    value=[
                        {"key": "Tier", "labelOperator": "greaterThan", "value": 1},
                        {"key": "Region", "labelOperator": "notEqual", "value": "EU"},
                    ]
                )
            )
        ],
    )
    job_in_policy(client, "j1", "cp")
    assert queued(client, "j1").queue_id == "q-us"


def test_weighted_allocation_with_weights_one_and_zero_is_deterministic(admin_client, client, queues):
    policy(
        admin_client,
        "cp",
        queue_selector_attachments=[
            WeightedAllocationQueueSelectorAttachment(
                allocations=[
                    QueueWeightedAllocation(weight=0.0, queue_selectors=[qsel("Id", "q-eu")]),
                    QueueWeightedAllocation(weight=1.0, queue_selectors=[qsel("Id", "q-us")]),
                ]
            )
        ],
    )
    for i in range(6):
        job_in_policy(client, f"j{i}", "cp")
    assert {queued(client, f"j{i}").queue_id for i in range(6)} == {"q-us"}


def test_weighted_allocation_half_and_half_uses_both_queues(admin_client, client, queues):
    policy(
        admin_client,
        "cp",
        queue_selector_attachments=[
            WeightedAllocationQueueSelectorAttachment(
                allocations=[
                    QueueWeightedAllocation(weight=0.5, queue_selectors=[qsel("Id", "q-eu")]),
                    QueueWeightedAllocation(weight=0.5, queue_selectors=[qsel("Id", "q-us")]),
                ]
            )
        ],
    )
    for i in range(40):
        job_in_policy(client, f"j{i}", "cp")
    eventually(
        lambda: sum(1 for j in client.list_jobs(status="queued", classification_policy_id="cp")) == 40, timeout=20
    )
    counts = Counter(j.queue_id for j in client.list_jobs(status="queued"))
    # P(a queue gets fewer than 5 of 40 at p=0.5) is about 1e-7.
    assert set(counts) == {"q-eu", "q-us"}
    assert min(counts.values()) >= 5, counts


def test_fallback_queue_is_used_when_no_queue_matches(admin_client, client, queues):
    policy(
        admin_client,
        "cp",
        fallback_queue_id="q-fallback",
        queue_selector_attachments=[StaticQueueSelectorAttachment(queue_selector=qsel("Region", "APAC"))],
    )
    job_in_policy(client, "j1", "cp")
    assert queued(client, "j1").queue_id == "q-fallback"


def test_no_matching_queue_and_no_fallback_fails_classification_with_a_reason(admin_client, client, queues):
    policy(
        admin_client,
        "cp",
        queue_selector_attachments=[StaticQueueSelectorAttachment(queue_selector=qsel("Region", "APAC"))],
    )
    job = job_in_policy(client, "j1", "cp")
    assert job.status == RouterJobStatus.PENDING_CLASSIFICATION
    job = failed(client, "j1")
    assert job.get("queueId") is None
    assert "queue" in job["classificationError"].lower()


def test_classification_failed_job_can_be_deleted(admin_client, client, queues):
    policy(admin_client, "cp", queue_selector_attachments=[StaticQueueSelectorAttachment(queue_selector=qsel("Id", "nope"))])
    job_in_policy(client, "j1", "cp")
    failed(client, "j1")
    client.delete_job("j1")
    assert [j.id for j in client.list_jobs()] == []


# --- prioritization ------------------------------------------------------------------------------


def test_static_prioritization_rule_sets_priority(admin_client, client, queues):
    policy(admin_client, "cp", fallback_queue_id="q-eu", prioritization_rule=StaticRouterRule(value=10))
    job_in_policy(client, "j1", "cp", priority=3)
    job = queued(client, "j1")
    assert (job.queue_id, job.priority) == ("q-eu", 10)


def test_expression_prioritization_rule_reads_job_labels(admin_client, client, queues):
    policy(
        admin_client,
        "cp",
        fallback_queue_id="q-eu",
        prioritization_rule=ExpressionRouterRule(expression="If(job.vip = true, 10, 1)"),
    )
    job_in_policy(client, "vip", "cp", {"vip": True})
    job_in_policy(client, "regular", "cp", {"vip": False})
    assert queued(client, "vip").priority == 10
    assert queued(client, "regular").priority == 1


def test_prioritization_rule_giving_text_fails_classification(admin_client, client, queues):
    policy(admin_client, "cp", fallback_queue_id="q-eu", prioritization_rule=StaticRouterRule(value="high"))
    job_in_policy(client, "j1", "cp")
    assert "priorit" in failed(client, "j1")["classificationError"]


# --- worker selectors ----------------------------------------------------------------------------


def test_worker_selector_attachments_of_all_kinds_become_attached_selectors(admin_client, client, queues):
    policy(
        admin_client,
        "cp",
        fallback_queue_id="q-eu",
        worker_selector_attachments=[
            StaticWorkerSelectorAttachment(worker_selector=sel("Skill", 5, LabelOperator.GREATER_THAN)),
            ConditionalWorkerSelectorAttachment(
                condition=ExpressionRouterRule(expression="job.vip = true"),
                worker_selectors=[sel("Senior", True)],
            ),
            ConditionalWorkerSelectorAttachment(
                condition=ExpressionRouterRule(expression="job.vip = false"),
                worker_selectors=[sel("Junior", True)],
            ),
            PassThroughWorkerSelectorAttachment(key="Lang", label_operator=LabelOperator.EQUAL),
            RuleEngineWorkerSelectorAttachment(
                rule=StaticRouterRule(value=[{"key": "Tier", "labelOperator": "lessThan", "value": 3}])
            ),
            WeightedAllocationWorkerSelectorAttachment(
                allocations=[
                    WorkerWeightedAllocation(weight=1.0, worker_selectors=[sel("Site", "Oslo")]),
                    WorkerWeightedAllocation(weight=0.0, worker_selectors=[sel("Site", "Rome")]),
                ]
            ),
        ],
    )
    job_in_policy(client, "j1", "cp", {"vip": True, "Lang": "de"})
    job = queued(client, "j1")
    assert plain(job.attached_worker_selectors) == sorted(
        [
            ("Lang", "equal", "de"),
            ("Senior", "equal", True),
            ("Site", "equal", "Oslo"),
            ("Skill", "greaterThan", 5),
            ("Tier", "lessThan", 3),
        ]
    )
    assert all(s.status == RouterWorkerSelectorStatus.ACTIVE for s in job.attached_worker_selectors)
    assert all(s.expires_at is None for s in job.attached_worker_selectors)
    assert job.requested_worker_selectors == []


def test_attached_worker_selectors_keep_a_worker_without_the_label_from_being_offered(admin_client, client, queues):
    make_distribution_policy(admin_client, "dp-2", LongestIdleMode(min_concurrent_offers=1, max_concurrent_offers=2))
    make_queue(admin_client, "q-two", policy_id="dp-2")
    policy(
        admin_client,
        "cp",
        fallback_queue_id="q-two",
        worker_selector_attachments=[PassThroughWorkerSelectorAttachment(key="Lang", label_operator=LabelOperator.EQUAL)],
    )
    add_worker(client, "w-none", ["q-two"], {})
    add_worker(client, "w-fr", ["q-two"], {"Lang": "fr"})
    add_worker(client, "w-de", ["q-two"], {"Lang": "de"})
    job_in_policy(client, "j1", "cp", {"Lang": "de"})
    eventually(lambda: offered_jobs(client, "w-de") == ["j1"])
    # Two offers were allowed: the other workers were skipped because they fail the selector.
    assert offered_jobs(client, "w-none") == []
    assert offered_jobs(client, "w-fr") == []


def test_pass_through_worker_selector_with_expiry_gets_expires_at(admin_client, client, queues):
    policy(
        admin_client,
        "cp",
        fallback_queue_id="q-eu",
        worker_selector_attachments=[
            PassThroughWorkerSelectorAttachment(key="Lang", label_operator=LabelOperator.EQUAL, expires_after_seconds=120)
        ],
    )
    before = datetime.now(timezone.utc)
    job_in_policy(client, "j1", "cp", {"Lang": "en"})
    job = queued(client, "j1")
    (selector,) = job.attached_worker_selectors
    assert (selector.key, selector.value, selector.expires_after_seconds) == ("Lang", "en", 120)
    assert selector.status == RouterWorkerSelectorStatus.ACTIVE
    assert before + timedelta(seconds=119) <= selector.expires_at <= datetime.now(timezone.utc) + timedelta(seconds=121)


def test_direct_map_rule_turns_job_labels_into_equal_worker_selectors(admin_client, client, queues):
    policy(
        admin_client,
        "cp",
        fallback_queue_id="q-eu",
        worker_selector_attachments=[RuleEngineWorkerSelectorAttachment(rule=DirectMapRouterRule())],
    )
    job_in_policy(client, "j1", "cp", {"Lang": "en", "Level": 3})
    assert plain(queued(client, "j1").attached_worker_selectors) == [("Lang", "equal", "en"), ("Level", "equal", 3)]


def test_direct_map_rule_as_queue_selector_finds_queue_by_labels(admin_client, client, queues):
    policy(admin_client, "cp", queue_selector_attachments=[RuleEngineQueueSelectorAttachment(rule=DirectMapRouterRule())])
    job_in_policy(client, "j1", "cp", {"Region": "US", "Tier": 2})
    assert queued(client, "j1").queue_id == "q-us"


# --- reclassification ----------------------------------------------------------------------------


def pass_through_region_policy(admin_client, policy_id="cp"):
    policy(
        admin_client,
        policy_id,
        queue_selector_attachments=[PassThroughQueueSelectorAttachment(key="Region", label_operator=LabelOperator.EQUAL)],
    )


def test_label_change_reclassifies_into_another_queue(admin_client, client, queues):
    pass_through_region_policy(admin_client)
    job_in_policy(client, "j1", "cp", {"Region": "EU"})
    assert queued(client, "j1").queue_id == "q-eu"
    updated = client.upsert_job("j1", labels={"Region": "US"})
    assert updated.status == RouterJobStatus.PENDING_CLASSIFICATION
    job = queued(client, "j1")
    assert job.queue_id == "q-us"
    assert job.labels == {"Region": "US"}


def test_label_change_revokes_the_offer_made_in_the_old_queue(admin_client, client, queues):
    pass_through_region_policy(admin_client)
    add_worker(client, "w-eu", ["q-eu"])
    add_worker(client, "w-us", ["q-us"])
    job_in_policy(client, "j1", "cp", {"Region": "EU"})
    eventually(lambda: offered_jobs(client, "w-eu") == ["j1"])
    client.upsert_job("j1", labels={"Region": "US"})
    eventually(lambda: offered_jobs(client, "w-us") == ["j1"])
    assert offered_jobs(client, "w-eu") == []


def test_changing_classification_policy_reclassifies(admin_client, client, queues):
    policy(admin_client, "cp-eu", queue_selector_attachments=[StaticQueueSelectorAttachment(queue_selector=qsel("Id", "q-eu"))])
    policy(admin_client, "cp-us", queue_selector_attachments=[StaticQueueSelectorAttachment(queue_selector=qsel("Id", "q-us"))])
    job_in_policy(client, "j1", "cp-eu")
    assert queued(client, "j1").queue_id == "q-eu"
    updated = client.upsert_job("j1", classification_policy_id="cp-us")
    assert updated.status == RouterJobStatus.PENDING_CLASSIFICATION
    job = queued(client, "j1")
    assert (job.queue_id, job.classification_policy_id) == ("q-us", "cp-us")


def test_reclassify_job_applies_the_updated_policy(admin_client, client, queues):
    policy(admin_client, "cp", queue_selector_attachments=[StaticQueueSelectorAttachment(queue_selector=qsel("Id", "q-eu"))])
    job_in_policy(client, "j1", "cp")
    assert queued(client, "j1").queue_id == "q-eu"
    policy(
        admin_client,
        "cp",
        queue_selector_attachments=[StaticQueueSelectorAttachment(queue_selector=qsel("Id", "q-us"))],
        prioritization_rule=StaticRouterRule(value=7),
    )
    assert client.get_job("j1").queue_id == "q-eu"  # a policy update alone does not move the job
    assert client.reclassify_job("j1") is None
    job = eventually(lambda: (j := client.get_job("j1")).queue_id == "q-us" and j)
    assert (job.status, job.priority) == (RouterJobStatus.QUEUED, 7)


def test_reclassify_after_failure_can_succeed(admin_client, client, queues):
    pass_through_region_policy(admin_client)
    job_in_policy(client, "j1", "cp", {"Region": "APAC"})
    failed(client, "j1")
    make_queue(admin_client, "q-apac", {"Region": "APAC"})
    client.reclassify_job("j1")
    job = queued(client, "j1")
    assert job.queue_id == "q-apac"
    assert "classificationError" not in job


# --- function rules against a real local HTTP server ---------------------------------------------


def test_function_rule_receives_job_labels_and_function_key(admin_client, client, queues, http_endpoint):
    http_endpoint.routes["/api/queue"] = lambda rec: (200, [{"key": "Id", "labelOperator": "equal", "value": "q-us"}])
    http_endpoint.routes["/api/priority"] = lambda rec: (200, {"value": 42})
    policy(
        admin_client,
        "cp",
        queue_selector_attachments=[RuleEngineQueueSelectorAttachment(rule=function_rule(http_endpoint, "/api/queue"))],
        prioritization_rule=function_rule(http_endpoint, "/api/priority", key="fn-key-2"),
    )
    job = job_in_policy(client, "j1", "cp", {"Lang": "en", "vip": True, "Level": 3})
    assert job.status == RouterJobStatus.PENDING_CLASSIFICATION
    job = queued(client, "j1")
    assert (job.queue_id, job.priority) == ("q-us", 42)
    (queue_call,) = http_endpoint.calls("/api/queue")
    (priority_call,) = http_endpoint.calls("/api/priority")
    assert queue_call.headers["x-functions-key"] == "fn-key-1"
    assert priority_call.headers["x-functions-key"] == "fn-key-2"
    assert queue_call.headers["content-type"].startswith("application/json")
    assert queue_call.json() == {"job": {"Lang": "en", "vip": True, "Level": 3}}
    assert priority_call.json() == {"job": {"Lang": "en", "vip": True, "Level": 3}}


def test_function_condition_answering_bare_boolean(admin_client, client, queues, http_endpoint):
    http_endpoint.routes["/cond"] = lambda rec: (200, rec.json()["job"].get("Country") == "US")
    policy(
        admin_client,
        "cp",
        fallback_queue_id="q-fallback",
        queue_selector_attachments=[
            ConditionalQueueSelectorAttachment(
                condition=function_rule(http_endpoint, "/cond"), queue_selectors=[qsel("Region", "US")]
            )
        ],
    )
    job_in_policy(client, "us", "cp", {"Country": "US"})
    job_in_policy(client, "no", "cp", {"Country": "NO"})
    assert queued(client, "us").queue_id == "q-us"
    assert queued(client, "no").queue_id == "q-fallback"


def test_function_answering_500_fails_classification_with_the_status_in_the_reason(admin_client, client, queues, http_endpoint):
    http_endpoint.routes["/boom"] = lambda rec: (500, {"error": "kaput"})
    policy(admin_client, "cp", fallback_queue_id="q-eu", prioritization_rule=function_rule(http_endpoint, "/boom"))
    job_in_policy(client, "j1", "cp", {"a": 1})
    job = failed(client, "j1")
    assert len(http_endpoint.calls("/boom")) >= 1
    assert "500" in job["classificationError"]
    assert http_endpoint.url("/boom") in job["classificationError"]


def test_function_that_times_out_fails_classification(admin_client, client, queues, http_endpoint):
    def slow(rec):
        time.sleep(3.5)  # longer than JOBROUTER_RULE_TIMEOUT_SECONDS=2
        return 200, 5

    http_endpoint.routes["/slow"] = slow
    policy(admin_client, "cp", fallback_queue_id="q-eu", prioritization_rule=function_rule(http_endpoint, "/slow"))
    started = time.monotonic()
    job_in_policy(client, "j1", "cp")
    job = failed(client, "j1", timeout=15)
    elapsed = time.monotonic() - started
    assert elapsed >= 1.9
    assert "timeout" in job["classificationError"].lower() or "timed out" in job["classificationError"].lower()


def test_function_answering_non_json_fails_classification(admin_client, client, queues, http_endpoint):
    http_endpoint.routes["/text"] = lambda rec: (200, b"<html>not json</html>")
    policy(
        admin_client,
        "cp",
        fallback_queue_id="q-eu",
        queue_selector_attachments=[RuleEngineQueueSelectorAttachment(rule=function_rule(http_endpoint, "/text"))],
    )
    job_in_policy(client, "j1", "cp")
    assert "JSON" in failed(client, "j1")["classificationError"]


def test_function_answering_json_that_is_not_selectors_fails_classification(admin_client, client, queues, http_endpoint):
    http_endpoint.routes["/num"] = lambda rec: (200, 12)
    policy(
        admin_client,
        "cp",
        fallback_queue_id="q-eu",
        queue_selector_attachments=[RuleEngineQueueSelectorAttachment(rule=function_rule(http_endpoint, "/num"))],
    )
    job_in_policy(client, "j1", "cp")
    assert "selectors" in failed(client, "j1")["classificationError"]


# --- webhook rules with OAuth2 client credentials ------------------------------------------------


def test_webhook_rule_gets_a_client_credentials_token_and_sends_it_as_bearer(admin_client, client, queues, http_endpoint):
    rule = oauth_routes(http_endpoint)
    policy(admin_client, "cp", queue_selector_attachments=[RuleEngineQueueSelectorAttachment(rule=rule)])
    job_in_policy(client, "j1", "cp", {"Region": "US"})
    assert queued(client, "j1").queue_id == "q-us"
    job_in_policy(client, "j2", "cp", {"Region": "EU"})
    assert queued(client, "j2").queue_id == "q-eu"

    token_calls = http_endpoint.calls("/oauth/token")
    assert len(token_calls) == 1
    assert token_calls[0].headers["content-type"].startswith("application/x-www-form-urlencoded")
    assert token_calls[0].form()["grant_type"] == "client_credentials"
    hooks = http_endpoint.calls("/hook")
    assert [h.json() for h in hooks] == [{"job": {"Region": "US"}}, {"job": {"Region": "EU"}}]
    assert all(h.headers["authorization"] == "Bearer tok-1" for h in hooks)
    assert all(h.headers["content-type"].startswith("application/json") for h in hooks)


def test_webhook_with_rejected_client_credentials_fails_classification(admin_client, client, queues, http_endpoint):
    http_endpoint.routes["/oauth/token"] = lambda rec: (401, {"error": "invalid_client"})
    http_endpoint.routes["/hook"] = lambda rec: (200, 1)
    rule = WebhookRouterRule(
        authorization_server_uri=http_endpoint.url("/oauth/token"),
        client_credential=OAuth2WebhookClientCredential(client_id="bad", client_secret="wrong"),
        webhook_uri=http_endpoint.url("/hook"),
    )
    policy(admin_client, "cp", fallback_queue_id="q-eu", prioritization_rule=rule)
    job_in_policy(client, "j1", "cp")
    job = failed(client, "j1")
    assert "token" in job["classificationError"]
    assert http_endpoint.calls("/hook") == []


# --- best-worker scoring with function rules -----------------------------------------------------


def scoring_queue(admin_client, rule, options=None):
    make_distribution_policy(
        admin_client,
        "dp-best",
        BestWorkerMode(scoring_rule=rule, scoring_rule_options=options, min_concurrent_offers=1, max_concurrent_offers=1),
    )
    make_queue(admin_client, "q-best", policy_id="dp-best")


def test_best_worker_function_scoring_offers_the_highest_scored_worker(admin_client, client, http_endpoint):
    http_endpoint.routes["/score"] = lambda rec: (200, rec.json()["worker"]["Skill"] * 10)
    scoring_queue(admin_client, function_rule(http_endpoint, "/score", key="score-key"))
    for worker_id, skill in (("w-low", 1), ("w-top", 9), ("w-mid", 5)):
        add_worker(client, worker_id, ["q-best"], {"Skill": skill})
    client.upsert_job(
        "j1",
        RouterJob(channel_id=CHANNEL, queue_id="q-best", labels={"Lang": "en"}, requested_worker_selectors=[sel("Skill", 0, LabelOperator.GREATER_THAN)]),
    )
    eventually(lambda: offered_jobs(client, "w-top") == ["j1"])
    assert offered_jobs(client, "w-low") == offered_jobs(client, "w-mid") == []
    calls = http_endpoint.calls("/score")
    assert {c.json()["worker"]["Id"] for c in calls} == {"w-low", "w-top", "w-mid"}
    payload = next(c.json() for c in calls if c.json()["worker"]["Id"] == "w-top")
    assert payload["job"] == {"Lang": "en"}
    assert payload["worker"] == {"Skill": 9, "Id": "w-top"}
    assert [(s["key"], s["labelOperator"], s["value"]) for s in payload["selectors"]] == [("Skill", "greaterThan", 0)]
    assert all(c.headers["x-functions-key"] == "score-key" for c in calls)


def test_best_worker_batch_scoring_sends_a_workers_list_and_reads_a_score_list(admin_client, client, http_endpoint):
    http_endpoint.routes["/batch"] = lambda rec: (200, [100 - w["Skill"] for w in rec.json()["workers"]])
    scoring_queue(
        admin_client,
        function_rule(http_endpoint, "/batch"),
        ScoringRuleOptions(is_batch_scoring_enabled=True, batch_size=10),
    )
    for worker_id, skill in (("w-a", 7), ("w-b", 2), ("w-c", 4)):
        add_worker(client, worker_id, ["q-best"], {"Skill": skill})
    client.upsert_job("j1", RouterJob(channel_id=CHANNEL, queue_id="q-best", labels={"x": 1}))
    # Lowest skill gets the highest score (98).
    eventually(lambda: offered_jobs(client, "w-b") == ["j1"])
    assert offered_jobs(client, "w-a") == offered_jobs(client, "w-c") == []
    calls = http_endpoint.calls("/batch")
    assert calls, "the batch scoring function was not called"
    for call in calls:
        body = call.json()
        assert "worker" not in body
        assert isinstance(body["workers"], list)
        assert body["job"] == {"x": 1}
    assert any({w["Id"] for w in c.json()["workers"]} == {"w-a", "w-b", "w-c"} for c in calls)


def test_expiring_attached_selector_from_classification_widens_the_pool(admin_client, client, queues):
    policy(
        admin_client,
        "cp",
        fallback_queue_id="q-eu",
        worker_selector_attachments=[
            PassThroughWorkerSelectorAttachment(key="Lang", label_operator=LabelOperator.EQUAL, expires_after_seconds=1.5)
        ],
    )
    add_worker(client, "w-fr", ["q-eu"], {"Lang": "fr"})
    job_in_policy(client, "j1", "cp", {"Lang": "de"})
    (selector,) = queued(client, "j1").attached_worker_selectors
    assert selector.status == RouterWorkerSelectorStatus.ACTIVE
    expires_at = selector.expires_at
    assert offered_jobs(client, "w-fr") == []
    eventually(lambda: offered_jobs(client, "w-fr") == ["j1"], timeout=5)
    assert client.get_worker("w-fr").offers[0].offered_at >= expires_at
    (selector,) = client.get_job("j1").attached_worker_selectors
    assert selector.status == RouterWorkerSelectorStatus.EXPIRED


