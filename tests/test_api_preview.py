"""The 2022-07-18-preview API beside 2023-11-01 (issue 11), driven by the real
`azure-communication-jobrouter==1.0.0b1` client (tests/preview_client.py: its own virtualenv,
a subprocess per scenario) against the live server, synchronously and asynchronously; the
2023-11-01 side through the official 1.0.0 client in this process. One domain, one database:
what either version writes, the other reads in its own shape."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest
from azure.communication.jobrouter.models import (
    BestWorkerMode,
    CancelExceptionAction,
    ClassificationPolicy,
    DistributionPolicy,
    ExceptionPolicy,
    ExceptionRule,
    ExpressionRouterRule,
    LabelOperator,
    LongestIdleMode,
    ManualReclassifyExceptionAction,
    PassThroughQueueSelectorAttachment,
    QueueLengthExceptionTrigger,
    RouterChannel,
    RouterJob,
    RouterJobNote,
    RouterJobStatus,
    RouterQueue,
    RouterQueueSelector,
    RouterWorker,
    RouterWorkerSelector,
    ScoringRuleOptions,
    StaticQueueSelectorAttachment,
    WaitTimeExceptionTrigger,
)

from tests.preview_client import run_scenario

MODES = [pytest.param(False, id="sync"), pytest.param(True, id="async")]


@pytest.fixture
def preview(router, transactional_db, access_key):
    """`preview(scenario, use_async=..., **params)`: the 1.0.0b1 client's view after the scenario."""

    def run(name: str, *, use_async: bool = False, **params):
        return run_scenario(name, router.endpoint, access_key, use_async=use_async, **params)

    return run


# --- seed 001 ---------------------------------------------------------------------------------


@pytest.mark.parametrize("use_async", MODES)
def test_seed_001_flow_offer_accept_complete_close(preview, use_async):
    out = preview("seed_001", use_async=use_async)
    assert "error" not in out, out
    assert out["policy"]["mode"] == {
        "type": "LongestIdleMode", "kind": "longest-idle", "min": 1, "max": 1, "bypass_selectors": False,
    }
    assert out["policy"]["offer_expires_after_seconds"] == 86400
    assert out["queue"]["distribution_policy_id"] == "distribution-policy-1"
    assert out["job_created"]["status"] == "created"
    assert out["job_created"]["requested_worker_selectors"][0]["label_operator"] == "greaterThan"
    assert out["job_created"]["matching_mode"]["mode_type"] == "queueAndMatchMode"
    worker = out["worker_created"]
    assert worker["total_capacity"] == 1
    assert worker["queue_assignments"] == {"queue-1": {}}
    assert worker["channel_configurations"] == {
        "my-channel": {"capacity_cost_per_job": 1, "max_number_of_jobs": None, "type": "ChannelConfiguration"}
    }
    assert worker["labels"] == {"Some-Skill": 11, "Id": "worker-1"}
    offer = out["worker_offered"]["offers"][0]
    assert offer["job_id"] == "jobId-1" and offer["capacity_cost"] == 1 and offer["expires_at"]
    assert out["accept"]["job_id"] == "jobId-1" and out["accept"]["worker_id"] == "worker-1"
    assert out["assigned"] is True
    assert out["completed_status"] == "completed"
    closed = out["closed"]
    assert out["closed_is_closed"] is True
    assert closed["disposition_code"] == "Closed"
    assignment = closed["assignments"][out["accept"]["assignment_id"]]
    assert assignment["assigned_at"] and assignment["completed_at"] and assignment["closed_at"]
    assert [text.split(" by ")[0] for text in closed["notes"].values()] == [
        "Job has been completed", "Job has been closed",
    ]
    assert out["worker_after"]["load_ratio"] == 0


def test_seed_001_close_in_the_future(preview):
    assert "error" not in preview("seed_001")
    out = preview("seed_001_close_later")
    assert "error" not in out, out
    assert out["status_before"] == "completed"
    assert out["closed"] is True
    closed_at = datetime.fromisoformat(out["closed_at"])
    close_at = datetime.fromisoformat(out["close_at"])
    assert close_at <= closed_at < close_at + timedelta(seconds=1)



# --- every operation ----------------------------------------------------------------------------


@pytest.mark.parametrize("use_async", MODES)
def test_every_operation_of_the_preview_client(preview, use_async):
    admin = preview("administration", use_async=use_async)
    assert "error" not in admin, admin
    best = admin["best"]["mode"]
    assert best["type"] == "BestWorkerMode" and best["kind"] == "best-worker"
    assert (best["min"], best["max"], best["bypass_selectors"]) == (1, 2, True)
    assert best["scoring_rule"] == {"type": "ExpressionRouterRule", "kind": "expression-rule",
                                    "expression": "If(worker.Skill > 5, 10, 1)", "language": "powerFx"}
    assert best["scoring_rule_options"] == {"batch_size": 5, "scoring_parameters": ["jobLabels", "workerSelectors"],
                                            "allow_scoring_batch_of_workers": True, "descending_order": False}
    assert admin["round_robin"]["mode"]["type"] == "RoundRobinMode"
    assert admin["longest_idle"]["mode"]["kind"] == "longest-idle"
    assert admin["best_updated"]["name"] == "Best 2" and admin["best_updated"]["offer_expires_after_seconds"] == 90
    assert admin["best_got"] == admin["best_updated"]
    # Lists: wrapped items with their etag, paged by results_per_page through nextLink.
    assert admin["dp_list"]["page_sizes"] == [2, 1] and admin["dp_list"]["types"] == ["DistributionPolicyItem"]
    assert [i["id"] for i in admin["dp_list"]["items"]] == ["dp-best", "dp-li", "dp-rr"]
    assert all(admin["dp_list"]["etags"])
    assert admin["queue_updated"]["labels"] == {"Id": "q-a", "Tier": 2}
    assert admin["queue_got"] == admin["queue_updated"]
    assert admin["queue_list"]["page_sizes"] == [1, 1] and admin["queue_list"]["types"] == ["RouterQueueItem"]

    rules = admin["exception"]["exception_rules"]
    assert rules["long-queue"]["trigger"] == {"type": "QueueLengthExceptionTrigger", "kind": "queue-length",
                                              "threshold": 10, "threshold_seconds": None}
    assert rules["long-queue"]["actions"] == {"give-up": {"type": "CancelExceptionAction", "kind": "cancel",
                                                          "note": "too many", "disposition_code": "Busy"}}
    move = rules["slow"]["actions"]["move"]
    assert move["type"] == "ManualReclassifyExceptionAction" and move["kind"] == "manual-reclassify"
    assert move["worker_selectors"][0]["label_operator"] == "greaterThanEqual"
    assert rules["slow"]["actions"]["reclassify"]["labels_to_upsert"] == {"Escalated": True}
    # Per-key merge: the null rule went, the new one came, the untouched one stayed.
    assert sorted(admin["exception_updated"]["exception_rules"]) == ["slow", "very-slow"]
    assert admin["exception_updated"]["exception_rules"]["slow"] == rules["slow"]
    assert admin["exception_got"] == admin["exception_updated"]
    assert admin["exception_list"]["types"] == ["ExceptionPolicyItem"]

    policy = admin["classification"]
    assert [(a["type"], a["kind"]) for a in policy["queue_selectors"]] == [
        ("StaticQueueSelectorAttachment", "static"),
        ("ConditionalQueueSelectorAttachment", "conditional"),
        ("RuleEngineQueueSelectorAttachment", "rule-engine"),
        ("PassThroughQueueSelectorAttachment", "pass-through"),
        ("WeightedAllocationQueueSelectorAttachment", "weighted-allocation-queue-selector"),
    ]
    assert [(a["type"], a["kind"]) for a in policy["worker_selectors"]] == [
        ("StaticWorkerSelectorAttachment", "static"),
        ("ConditionalWorkerSelectorAttachment", "conditional"),
        ("RuleEngineWorkerSelectorAttachment", "rule-engine"),
        ("PassThroughWorkerSelectorAttachment", "pass-through"),
        ("WeightedAllocationWorkerSelectorAttachment", "weighted-allocation-worker-selector"),
    ]
    assert policy["queue_selectors"][0]["queue_selector"]["label_operator"] == "notEqual"
    assert policy["queue_selectors"][1]["condition"]["kind"] == "expression-rule"
    assert policy["queue_selectors"][2]["rule"]["kind"] == "static-rule"
    assert [a["weight"] for a in policy["queue_selectors"][4]["allocations"]] == [0.5, 0.5]
    assert policy["worker_selectors"][0]["worker_selector"]["label_operator"] == "lessThanEqual"
    assert policy["worker_selectors"][1]["condition"] == {"type": "StaticRouterRule", "kind": "static-rule", "value": True}
    assert policy["worker_selectors"][2]["rule"] == {"type": "DirectMapRouterRule", "kind": "direct-map-rule"}
    assert policy["prioritization_rule"]["type"] == "FunctionRouterRule"
    assert policy["prioritization_rule"]["kind"] == "azure-function-rule"
    updated = admin["classification_updated"]
    assert updated["prioritization_rule"]["type"] == "WebhookRouterRule"
    assert updated["prioritization_rule"]["kind"] == "webhook-rule"
    assert updated["queue_selectors"] == policy["queue_selectors"]
    assert admin["classification_got"] == updated
    for gone in ("queue_gone", "exception_gone", "classification_gone", "distribution_gone"):
        assert admin[gone]["type"] == "ResourceNotFoundError" and admin[gone]["code"] == "NotFound", gone

    out = preview("jobs_and_workers", use_async=use_async)
    assert "error" not in out, out
    assert out["worker_created"]["state"] == "inactive" and out["worker_created"]["total_capacity"] == 2
    assert out["worker_created"]["channel_configurations"]["voice"]["max_number_of_jobs"] == 2
    assert out["worker_merged"]["queue_assignments"] == {"q-a": {}, "q-b": {}}
    assert sorted(out["worker_merged"]["channel_configurations"]) == ["chat", "voice"]
    assert out["worker_removed_queue"]["queue_assignments"] == {"q-b": {}}
    assert out["worker_removed_queue"]["labels"] == {"Skill": 8, "Id": "w-1"}
    assert out["workers_all"]["page_sizes"] == [2, 1] and out["workers_all"]["types"] == ["RouterWorkerItem"]
    assert [w["id"] for w in out["workers_active_in_q_a"]["items"]] == ["w-2"]

    scheduled = out["job_scheduled"]
    assert scheduled["matching_mode"] == {"type": "JobMatchingMode", "mode_type": "scheduleAndSuspendMode",
                                          "schedule_at": "2030-01-02T03:04:05+00:00"}
    assert scheduled["notes"] == {"2024-01-01T00:00:00Z": "first", "2024-01-02T00:00:00Z": "second"}
    assert out["job_notes_merged"]["notes"] == {"2024-01-02T00:00:00Z": "second", "2024-01-03T00:00:00Z": "third"}
    assert out["job_notes_merged"]["scheduled_at"] == "2030-01-02T03:04:05+00:00"
    assert out["job_suspended"]["matching_mode"]["mode_type"] == "suspendMode"
    assert out["job_suspended"]["status"] == "waitingForActivation"
    assert out["jobs_all"]["page_sizes"] == [2, 2] and out["jobs_all"]["types"] == ["RouterJobItem"]
    # nextLink carries the filters: every page holds only what they select.
    assert [j["id"] for j in out["jobs_scheduled_filter"]["items"]] == ["job-scheduled"]
    assert out["jobs_in_q_a"]["page_sizes"] == [1, 1, 1]
    assert {j["queue_id"] for j in out["jobs_in_q_a"]["items"]} == {"q-a"}
    first = out["jobs_in_q_a"]["items"][0]
    assert first["requested_worker_selectors"][0]["label_operator"] == "greaterThanEqual"
    assert first["requested_worker_selectors"][0]["expedite"] is True

    assert out["position_job_2"] == {"job_id": "job-2", "position": 2, "queue_id": "q-a", "queue_length": 2,
                                     "estimated_wait_time_minutes": 0.0, "type": "RouterJobPositionDetails"}
    assert out["statistics"]["length"] == 2 and out["statistics"]["type"] == "RouterQueueStatistics"
    assert set(out["statistics"]["estimated_wait_time_minutes"]) == {"5", "1"}
    assert out["accept"]["job_id"] == "job-2"
    assert out["accept_again"]["type"] == "ResourceExistsError" and out["accept_again"]["status"] == 409
    assert out["unassign"] == {"job_id": "job-2", "unassignment_count": 1, "type": "UnassignJobResult"}
    assert out["job_2_after_unassign"]["assignments"] == {}
    closed = out["job_2_closed"]
    assert closed["status"] == "closed" and closed["disposition_code"] == "Resolved"
    assert list(closed["notes"].values()) == ["done", "bye"]
    assert out["complete_unknown_assignment"]["type"] == "ResourceNotFoundError"
    cancelled = out["job_1_cancelled"]
    assert cancelled["status"] == "cancelled" and cancelled["disposition_code"] == "Abandoned"
    assert list(cancelled["notes"].values()) == ["caller hung up"]
    assert out["job_gone"]["code"] == "NotFound" and out["worker_gone"]["code"] == "NotFound"


def test_unknown_api_version_is_a_400_naming_the_supported_ones(preview):
    out = preview("unsupported_version")
    error = out["error"]
    assert (error["type"], error["status"], error["code"]) == ("HttpResponseError", 400, "UnsupportedApiVersion")
    assert "2023-11-01" in error["message"] and "2022-07-18-preview" in error["message"]
