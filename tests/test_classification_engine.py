"""Unit tests of the classification engine (`routing/engine/rules.py`, ACS 2023-11-01 §3.3 and
§4.4): rules, queue and worker selector attachments, `classify` and best-worker `batch_scores`.

No database, no HTTP: function and webhook rules go through `FakeRemote`, a test double that
stands in for the external endpoint and records what it was sent."""

from __future__ import annotations

import random
from collections import Counter
from typing import Any, Callable, Mapping

import pytest

from routing.engine.rules import (
    Classification,
    RuleError,
    attachment_selectors,
    batch_scores,
    classify,
    evaluate_rule,
)


class FakeRemote:
    """A RemoteRuleCaller double: records (rule, payload) and answers with `answer(rule, payload)`."""

    def __init__(self, answer: Callable[[Mapping[str, Any], Mapping[str, Any]], Any]) -> None:
        self.answer = answer
        self.calls: list[tuple[dict, dict]] = []

    def __call__(self, rule, payload):
        self.calls.append((dict(rule), payload))
        return self.answer(rule, payload)


def failing_remote(rule, payload):
    raise RuleError("POST http://fn answered HTTP 500")


FUNCTION = {"kind": "function", "functionUri": "https://fn.example/api/rule", "credential": {"functionKey": "k"}}
QUEUES = [
    ("q-a", {"Id": "q-a", "Region": "EU", "Tier": 1}),
    ("q-b", {"Id": "q-b", "Region": "US", "Tier": 2}),
    ("q-c", {"Id": "q-c", "Region": "EU", "Tier": 2}),
]


def queue_selector(key, value, op="equal"):
    return {"key": key, "labelOperator": op, "value": value}


def q_attach(attachment):
    return lambda labels, **kw: attachment_selectors(
        attachment, labels, selectors_key="queueSelectors", single_key="queueSelector", **kw
    )


def w_attach(attachment):
    return lambda labels, **kw: attachment_selectors(
        attachment, labels, selectors_key="workerSelectors", single_key="workerSelector", **kw
    )


# --- evaluate_rule -------------------------------------------------------------------------------


def test_static_rule_returns_its_value_of_any_json_shape():
    assert evaluate_rule({"kind": "static", "value": 7}, {}) == 7
    selectors = [queue_selector("Id", "q-a")]
    assert evaluate_rule({"kind": "static", "value": selectors}, {"x": 1}) == selectors


def test_expression_rule_reads_job_labels():
    rule = {"kind": "expression", "language": "powerFx", "expression": "If(job.vip = true, 10, 1)"}
    assert evaluate_rule(rule, {"vip": True}) == 10
    assert evaluate_rule(rule, {"vip": False}) == 1
    assert evaluate_rule(rule, {}) == 1


def test_broken_expression_raises_rule_error_naming_the_expression():
    with pytest.raises(RuleError, match="If\\(job.x"):
        evaluate_rule({"kind": "expression", "expression": "If(job.x = "}, {"x": 1})


def test_direct_map_rule_returns_the_labels():
    assert evaluate_rule({"kind": "directMap"}, {"Lang": "en", "Skill": 3}) == {"Lang": "en", "Skill": 3}


def test_function_rule_posts_job_labels_to_the_remote_caller():
    remote = FakeRemote(lambda rule, payload: 42)
    assert evaluate_rule(FUNCTION, {"Lang": "en"}, remote=remote) == 42
    assert remote.calls == [(FUNCTION, {"job": {"Lang": "en"}})]


def test_webhook_rule_goes_through_the_remote_caller_too():
    webhook = {"kind": "webhook", "webhookUri": "https://hook", "authorizationServerUri": "https://auth"}
    remote = FakeRemote(lambda rule, payload: "ok")
    assert evaluate_rule(webhook, {"a": 1}, remote=remote) == "ok"
    assert remote.calls[0][1] == {"job": {"a": 1}}


def test_remote_rule_without_a_caller_is_a_rule_error():
    with pytest.raises(RuleError, match="function"):
        evaluate_rule(FUNCTION, {})


def test_unknown_rule_kind_is_a_rule_error():
    with pytest.raises(RuleError, match="unknown rule kind"):
        evaluate_rule({"kind": "magic"}, {})


def test_remote_failure_propagates_as_rule_error():
    with pytest.raises(RuleError, match="HTTP 500"):
        evaluate_rule(FUNCTION, {}, remote=failing_remote)


# --- attachment_selectors ------------------------------------------------------------------------


def test_static_attachment_always_gives_its_selector():
    s = queue_selector("Region", "EU")
    assert q_attach({"kind": "static", "queueSelector": s})({}) == [s]
    ws = {"key": "Skill", "labelOperator": "greaterThan", "value": 5}
    assert w_attach({"kind": "static", "workerSelector": ws})({"anything": 1}) == [ws]


def test_conditional_attachment_applies_only_when_condition_is_true():
    attach = q_attach(
        {
            "kind": "conditional",
            "condition": {"kind": "expression", "expression": "job.Region = \"EU\""},
            "queueSelectors": [queue_selector("Region", "EU"), queue_selector("Tier", 2)],
        }
    )
    assert attach({"Region": "EU"}) == [queue_selector("Region", "EU"), queue_selector("Tier", 2)]
    assert attach({"Region": "US"}) == []
    assert attach({}) == []


def test_conditional_attachment_accepts_string_true_from_a_static_condition():
    attachment = {"kind": "conditional", "queueSelectors": [queue_selector("Id", "q-a")]}
    assert q_attach({**attachment, "condition": {"kind": "static", "value": "True"}})({}) == [queue_selector("Id", "q-a")]
    assert q_attach({**attachment, "condition": {"kind": "static", "value": "false"}})({}) == []
    assert q_attach({**attachment, "condition": {"kind": "static", "value": False}})({}) == []


def test_pass_through_attachment_copies_the_job_label_value():
    attach = q_attach({"kind": "passThrough", "key": "Region", "labelOperator": "equal"})
    assert attach({"Region": "US", "Other": 1}) == [queue_selector("Region", "US")]


def test_pass_through_attachment_gives_nothing_when_the_job_lacks_the_label():
    assert q_attach({"kind": "passThrough", "key": "Region", "labelOperator": "equal"})({"Other": 1}) == []


def test_pass_through_worker_attachment_carries_expires_after_seconds():
    attach = w_attach({"kind": "passThrough", "key": "Lang", "labelOperator": "equal", "expiresAfterSeconds": 30})
    assert attach({"Lang": "fr"}) == [{"key": "Lang", "labelOperator": "equal", "value": "fr", "expiresAfterSeconds": 30}]


def test_rule_engine_attachment_with_static_list_of_selectors():
    selectors = [queue_selector("Tier", 2, "greaterThanOrEqual"), queue_selector("Region", "EU")]
    assert q_attach({"kind": "ruleEngine", "rule": {"kind": "static", "value": selectors}})({}) == selectors


def test_rule_engine_attachment_with_direct_map_gives_equal_selectors_per_label():
    got = w_attach({"kind": "ruleEngine", "rule": {"kind": "directMap"}})({"Lang": "en", "Level": 3})
    assert sorted(got, key=lambda s: s["key"]) == [
        {"key": "Lang", "labelOperator": "equal", "value": "en"},
        {"key": "Level", "labelOperator": "equal", "value": 3},
    ]


def test_rule_engine_attachment_keeps_expiry_and_expedite_from_the_rule_answer():
    answer = [{"key": "Id", "labelOperator": "equal", "value": "w1", "expiresAfterSeconds": 5, "expedite": True}]
    got = w_attach({"kind": "ruleEngine", "rule": FUNCTION})({"x": 1}, remote=FakeRemote(lambda r, p: answer))
    assert got == answer


def test_rule_engine_attachment_rejects_an_answer_that_is_not_selectors():
    with pytest.raises(RuleError, match="list of selectors"):
        q_attach({"kind": "ruleEngine", "rule": {"kind": "static", "value": 5}})({})
    with pytest.raises(RuleError, match="list of selectors"):
        q_attach({"kind": "ruleEngine", "rule": {"kind": "static", "value": ["q-a"]}})({})


def test_weighted_allocation_with_weights_one_and_zero_always_picks_the_first():
    attachment = {
        "kind": "weightedAllocation",
        "allocations": [
            {"weight": 1.0, "queueSelectors": [queue_selector("Id", "q-a")]},
            {"weight": 0.0, "queueSelectors": [queue_selector("Id", "q-b")]},
        ],
    }
    rng = random.Random(1)
    assert all(q_attach(attachment)({}, rng=rng) == [queue_selector("Id", "q-a")] for _ in range(200))


def test_weighted_allocation_with_weights_zero_and_one_always_picks_the_second():
    attachment = {
        "kind": "weightedAllocation",
        "allocations": [
            {"weight": 0.0, "workerSelectors": [queue_selector("Id", "w-a")]},
            {"weight": 1.0, "workerSelectors": [queue_selector("Id", "w-b")]},
        ],
    }
    rng = random.Random(2)
    assert all(w_attach(attachment)({}, rng=rng) == [queue_selector("Id", "w-b")] for _ in range(200))


def test_weighted_allocation_draws_in_proportion_to_the_weights():
    attachment = {
        "kind": "weightedAllocation",
        "allocations": [
            {"weight": 0.25, "queueSelectors": [queue_selector("Id", "q-a")]},
            {"weight": 0.75, "queueSelectors": [queue_selector("Id", "q-b")]},
        ],
    }
    rng = random.Random(12345)
    counts = Counter(q_attach(attachment)({}, rng=rng)[0]["value"] for _ in range(4000))
    assert 800 <= counts["q-a"] <= 1200
    assert counts["q-a"] + counts["q-b"] == 4000


def test_unknown_attachment_kind_is_a_rule_error():
    with pytest.raises(RuleError, match="unknown attachment kind"):
        q_attach({"kind": "bogus"})({})


# --- classify ------------------------------------------------------------------------------------


def test_classify_picks_the_queue_matching_all_selectors_including_the_automatic_id():
    policy = {"queueSelectorAttachments": [{"kind": "static", "queueSelector": queue_selector("Id", "q-b")}]}
    result = classify(policy, labels={}, current_queue_id=None, queues=QUEUES)
    assert result == Classification(queue_id="q-b", priority=None, worker_selectors=[], error=None)


def test_classify_combines_selectors_of_all_attachments():
    policy = {
        "queueSelectorAttachments": [
            {"kind": "passThrough", "key": "Region", "labelOperator": "equal"},
            {"kind": "static", "queueSelector": queue_selector("Tier", 2)},
        ]
    }
    assert classify(policy, labels={"Region": "EU"}, current_queue_id=None, queues=QUEUES).queue_id == "q-c"
    assert classify(policy, labels={"Region": "US"}, current_queue_id=None, queues=QUEUES).queue_id == "q-b"


def test_classify_chooses_the_first_matching_queue_by_id_order():
    policy = {"queueSelectorAttachments": [{"kind": "static", "queueSelector": queue_selector("Region", "EU")}]}
    assert classify(policy, labels={}, current_queue_id=None, queues=QUEUES).queue_id == "q-a"


def test_classify_uses_fallback_queue_when_nothing_matches():
    policy = {
        "fallbackQueueId": "q-fallback",
        "queueSelectorAttachments": [{"kind": "static", "queueSelector": queue_selector("Region", "APAC")}],
    }
    result = classify(policy, labels={}, current_queue_id=None, queues=QUEUES)
    assert result.queue_id == "q-fallback" and result.error is None


def test_classify_keeps_the_jobs_own_queue_before_the_fallback():
    policy = {"fallbackQueueId": "q-fallback", "queueSelectorAttachments": []}
    assert classify(policy, labels={}, current_queue_id="q-b", queues=QUEUES).queue_id == "q-b"


def test_classify_without_queue_or_fallback_is_an_error_with_a_reason():
    policy = {"queueSelectorAttachments": [{"kind": "static", "queueSelector": queue_selector("Region", "APAC")}]}
    result = classify(policy, labels={}, current_queue_id=None, queues=QUEUES)
    assert result.queue_id is None
    assert result.error and "queue" in result.error.lower()


def test_classify_sets_priority_from_static_and_expression_rules():
    static = {"fallbackQueueId": "q-a", "prioritizationRule": {"kind": "static", "value": 10}}
    assert classify(static, labels={}, current_queue_id=None, queues=QUEUES).priority == 10
    expression = {
        "fallbackQueueId": "q-a",
        "prioritizationRule": {"kind": "expression", "expression": "If(job.vip = true, 10, 1)"},
    }
    assert classify(expression, labels={"vip": True}, current_queue_id=None, queues=QUEUES).priority == 10
    assert classify(expression, labels={"vip": False}, current_queue_id=None, queues=QUEUES).priority == 1


def test_classify_rejects_a_priority_that_is_not_a_number():
    for value in ("high", True, None, [1]):
        policy = {"fallbackQueueId": "q-a", "prioritizationRule": {"kind": "static", "value": value}}
        result = classify(policy, labels={}, current_queue_id=None, queues=QUEUES)
        assert result.error and "priorit" in result.error, value


def test_classify_collects_worker_selectors_from_all_attachments():
    policy = {
        "fallbackQueueId": "q-a",
        "workerSelectorAttachments": [
            {"kind": "static", "workerSelector": {"key": "Skill", "labelOperator": "greaterThan", "value": 5}},
            {"kind": "passThrough", "key": "Lang", "labelOperator": "equal", "expiresAfterSeconds": 10},
            {
                "kind": "conditional",
                "condition": {"kind": "expression", "expression": "job.vip = true"},
                "workerSelectors": [{"key": "Senior", "labelOperator": "equal", "value": True}],
            },
        ],
    }
    result = classify(policy, labels={"Lang": "de", "vip": True}, current_queue_id=None, queues=QUEUES)
    assert result.error is None
    assert result.worker_selectors == [
        {"key": "Skill", "labelOperator": "greaterThan", "value": 5},
        {"key": "Lang", "labelOperator": "equal", "value": "de", "expiresAfterSeconds": 10},
        {"key": "Senior", "labelOperator": "equal", "value": True},
    ]


def test_classify_queue_from_a_function_rule_answer():
    remote = FakeRemote(lambda rule, payload: [queue_selector("Id", "q-c")])
    policy = {"queueSelectorAttachments": [{"kind": "ruleEngine", "rule": FUNCTION}]}
    result = classify(policy, labels={"Lang": "en"}, current_queue_id=None, queues=QUEUES, remote=remote)
    assert result.queue_id == "q-c"
    assert remote.calls == [(FUNCTION, {"job": {"Lang": "en"}})]


def test_classify_reports_a_failing_function_as_an_error():
    policy = {"fallbackQueueId": "q-a", "prioritizationRule": FUNCTION}
    result = classify(policy, labels={}, current_queue_id=None, queues=QUEUES, remote=failing_remote)
    assert result.error == "POST http://fn answered HTTP 500"


def test_classify_reports_a_malformed_policy_as_an_error_rather_than_raising():
    policy = {"queueSelectorAttachments": [{"kind": "static"}]}  # no queueSelector
    result = classify(policy, labels={}, current_queue_id=None, queues=QUEUES)
    assert result.error and result.queue_id is None


def test_classify_weighted_allocation_spreads_over_two_queues():
    policy = {
        "queueSelectorAttachments": [
            {
                "kind": "weightedAllocation",
                "allocations": [
                    {"weight": 0.5, "queueSelectors": [queue_selector("Id", "q-a")]},
                    {"weight": 0.5, "queueSelectors": [queue_selector("Id", "q-b")]},
                ],
            }
        ]
    }
    rng = random.Random(7)
    counts = Counter(classify(policy, labels={}, current_queue_id=None, queues=QUEUES, rng=rng).queue_id for _ in range(400))
    assert set(counts) == {"q-a", "q-b"}
    assert 140 <= counts["q-a"] <= 260


# --- batch_scores --------------------------------------------------------------------------------


WORKERS = [{"Id": "w1", "Skill": 3}, {"Id": "w2", "Skill": 9}, {"Id": "w3", "Skill": 5}]
SELECTORS = [{"key": "Skill", "labelOperator": "greaterThan", "value": 1}]


def test_scores_one_call_per_worker_with_job_selectors_and_worker():
    remote = FakeRemote(lambda rule, payload: payload["worker"]["Skill"] * 10)
    scores = batch_scores(FUNCTION, job_labels={"Lang": "en"}, selectors=SELECTORS, workers=WORKERS, options={}, remote=remote)
    assert scores == [30.0, 90.0, 50.0]
    assert [p for _, p in remote.calls] == [
        {"job": {"Lang": "en"}, "selectors": SELECTORS, "worker": w} for w in WORKERS
    ]


def test_scores_respect_scoring_parameters():
    remote = FakeRemote(lambda rule, payload: 1)
    batch_scores(
        FUNCTION, job_labels={"Lang": "en"}, selectors=SELECTORS, workers=WORKERS[:1],
        options={"scoringParameters": ["jobLabels"]}, remote=remote,
    )
    assert remote.calls[0][1] == {"job": {"Lang": "en"}, "worker": WORKERS[0]}
    remote = FakeRemote(lambda rule, payload: 1)
    batch_scores(
        FUNCTION, job_labels={"Lang": "en"}, selectors=SELECTORS, workers=WORKERS[:1],
        options={"scoringParameters": ["workerSelectors"]}, remote=remote,
    )
    assert remote.calls[0][1] == {"selectors": SELECTORS, "worker": WORKERS[0]}


def test_batch_scoring_sends_workers_lists_in_batches_and_reads_score_lists():
    remote = FakeRemote(lambda rule, payload: [w["Skill"] for w in payload["workers"]])
    scores = batch_scores(
        FUNCTION, job_labels={}, selectors=[], workers=WORKERS,
        options={"isBatchScoringEnabled": True, "batchSize": 2}, remote=remote,
    )
    assert scores == [3.0, 9.0, 5.0]
    assert [p["workers"] for _, p in remote.calls] == [WORKERS[:2], WORKERS[2:]]
    assert all("worker" not in p for _, p in remote.calls)


def test_batch_scoring_default_batch_size_is_twenty():
    workers = [{"Id": f"w{i}"} for i in range(45)]
    remote = FakeRemote(lambda rule, payload: [1] * len(payload["workers"]))
    scores = batch_scores(FUNCTION, job_labels={}, selectors=[], workers=workers, options={"isBatchScoringEnabled": True}, remote=remote)
    assert len(scores) == 45
    assert [len(p["workers"]) for _, p in remote.calls] == [20, 20, 5]


def test_batch_scoring_accepts_wrapped_answers():
    remote = FakeRemote(lambda rule, payload: {"scores": [1, 2, 3]})
    assert batch_scores(FUNCTION, job_labels={}, selectors=[], workers=WORKERS, options={"isBatchScoringEnabled": True}, remote=remote) == [1.0, 2.0, 3.0]
    remote = FakeRemote(lambda rule, payload: {"score": 4})
    assert batch_scores(FUNCTION, job_labels={}, selectors=[], workers=WORKERS[:1], options={}, remote=remote) == [4.0]


def test_batch_scoring_with_the_wrong_number_of_scores_is_a_rule_error():
    remote = FakeRemote(lambda rule, payload: [1, 2])
    with pytest.raises(RuleError, match="expected 3 scores"):
        batch_scores(FUNCTION, job_labels={}, selectors=[], workers=WORKERS, options={"isBatchScoringEnabled": True}, remote=remote)


def test_a_score_that_is_not_a_number_is_a_rule_error():
    for answer in ("high", True, None):
        with pytest.raises(RuleError, match="score"):
            batch_scores(FUNCTION, job_labels={}, selectors=[], workers=WORKERS[:1], options={}, remote=FakeRemote(lambda r, p: answer))
