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


@pytest.mark.parametrize("use_async", MODES)
def test_seed_001_flow_takes_the_offer_id_from_the_received_offer_issued_event(
    preview, live_client, http_endpoint, use_async
):
    # The seed's own ending: an Event Grid subscription delivers RouterWorkerOfferIssued, parsed
    # with azure.eventgrid, and the 1.0.0b1 client accepts the offer named in it.
    import json

    from azure.eventgrid import EventGridEvent

    from tests.conftest import eventually
    from tests.event_receiver import EventReceiver, rest, subscribe

    receiver = EventReceiver(http_endpoint)
    subscribe(live_client, "seed-001", receiver.url, includedEventTypes=["Microsoft.Communication.RouterWorkerOfferIssued"])
    eventually(lambda: rest(live_client, "GET", "/routing/eventSubscriptions/seed-001").json()["provisioningState"]
               == "Succeeded")
    assert "error" not in preview("seed_001_setup", use_async=use_async)
    issued = eventually(lambda: receiver.events())
    event = EventGridEvent.from_json(json.dumps(issued[0]))
    assert event.event_type == "Microsoft.Communication.RouterWorkerOfferIssued"
    assert event.subject == "worker/worker-1/job/jobId-1"
    out = preview("seed_001_finish", use_async=use_async, offer_id=event.data["offerId"])
    assert "error" not in out, out
    assert out["assigned"] is True and out["closed_is_closed"] is True


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


# --- both versions over one domain ----------------------------------------------------------------


def _ga_policies_and_queue(admin_client):
    admin_client.upsert_distribution_policy("dp-1", DistributionPolicy(
        offer_expires_after_seconds=600, mode=LongestIdleMode()))
    admin_client.upsert_queue("q-1", RouterQueue(distribution_policy_id="dp-1"))


@pytest.mark.parametrize("use_async", MODES)
def test_preview_worker_is_offered_a_ga_job(preview, live_admin_client, live_client, use_async):
    _ga_policies_and_queue(live_admin_client)
    worker = preview("register_worker", use_async=use_async, worker_id="w-preview", queue_id="q-1",
                     channel_id="voice", labels={"Skill": 5})
    assert worker["state"] == "active" and worker["queue_assignments"] == {"q-1": {}}
    # The GA client sees the same worker in its own shape.
    ga_worker = live_client.get_worker("w-preview")
    assert (ga_worker.capacity, ga_worker.queues) == (1, ["q-1"])
    assert [(c.channel_id, c.capacity_cost_per_job) for c in ga_worker.channels] == [("voice", 1)]

    live_client.upsert_job("job-ga", RouterJob(
        channel_id="voice", queue_id="q-1", priority=1,
        requested_worker_selectors=[RouterWorkerSelector(
            key="Skill", label_operator=LabelOperator.GREATER_THAN_OR_EQUAL, value=5)]))
    out = preview("take_offer", use_async=use_async, worker_id="w-preview", job_id="job-ga")
    assert out["offer"], out
    assert out["assigned"]["status"] == "assigned"
    assert out["assigned"]["requested_worker_selectors"][0]["label_operator"] == "greaterThanEqual"
    assert out["closed"]["status"] == "closed"
    job = live_client.get_job("job-ga")
    assert job.status == RouterJobStatus.CLOSED
    assert job.assignments[out["assignment_id"]].worker_id == "w-preview"
    assert [n.message for n in job.notes] == ["preview done"]


def _ga_resources(admin_client, client):
    """Resources written through 2023-11-01 with everything the preview must translate."""
    _ga_policies_and_queue(admin_client)
    admin_client.upsert_queue("q-2", RouterQueue(distribution_policy_id="dp-1"))
    admin_client.upsert_distribution_policy("dp-best", DistributionPolicy(
        offer_expires_after_seconds=60,
        mode=BestWorkerMode(
            scoring_rule=ExpressionRouterRule(expression="worker.Skill"),
            scoring_rule_options=ScoringRuleOptions(batch_size=3, is_batch_scoring_enabled=True,
                                                    descending_order=True))))
    admin_client.upsert_classification_policy("cp-1", ClassificationPolicy(
        fallback_queue_id="q-1",
        queue_selector_attachments=[
            StaticQueueSelectorAttachment(queue_selector=RouterQueueSelector(
                key="Region", label_operator=LabelOperator.LESS_THAN_OR_EQUAL, value=3)),
            PassThroughQueueSelectorAttachment(key="Region", label_operator=LabelOperator.EQUAL),
        ],
        prioritization_rule=ExpressionRouterRule(expression="5")))
    admin_client.upsert_exception_policy("ep-1", ExceptionPolicy(exception_rules=[
        ExceptionRule(id="full", trigger=QueueLengthExceptionTrigger(threshold=5),
                      actions=[CancelExceptionAction(note="queue full")]),  # no id: the server mints one
        ExceptionRule(id="slow", trigger=WaitTimeExceptionTrigger(threshold_seconds=60),
                      actions=[ManualReclassifyExceptionAction(
                          id="move", queue_id="q-2",
                          worker_selectors=[RouterWorkerSelector(
                              key="Tier", label_operator=LabelOperator.GREATER_THAN_OR_EQUAL, value=2)])]),
    ]))
    first = datetime(2024, 3, 1, 10, 0, tzinfo=timezone.utc)
    client.upsert_job("job-1", RouterJob(
        channel_id="voice", queue_id="q-1", matching_mode=None,
        notes=[RouterJobNote(message="first", added_at=first),
               RouterJobNote(message="same instant", added_at=first),
               RouterJobNote(message="later", added_at=first + timedelta(hours=1))]))
    client.upsert_worker("w-1", RouterWorker(
        capacity=3, queues=["q-1"], labels={"Skill": 1},
        channels=[RouterChannel(channel_id="voice", capacity_cost_per_job=1, max_number_of_jobs=2)]))


GA_IDS = dict(distribution_policy_id="dp-best", classification_policy_id="cp-1", exception_policy_id="ep-1",
              job_id="job-1", worker_id="w-1")


@pytest.mark.parametrize("use_async", MODES)
def test_ga_written_resources_read_in_the_preview_shape(preview, live_admin_client, live_client, use_async):
    _ga_resources(live_admin_client, live_client)
    out = preview("read_everything", use_async=use_async, **GA_IDS)
    assert "error" not in out, out
    mode = out["distribution_policy"]["mode"]
    assert mode["type"] == "BestWorkerMode" and mode["scoring_rule"]["kind"] == "expression-rule"
    assert mode["scoring_rule_options"]["allow_scoring_batch_of_workers"] is True
    assert mode["scoring_rule_options"]["batch_size"] == 3
    policy = out["classification_policy"]
    assert policy["queue_selectors"][0]["queue_selector"]["label_operator"] == "lessThanEqual"
    assert policy["queue_selectors"][1]["type"] == "PassThroughQueueSelectorAttachment"
    assert policy["prioritization_rule"]["kind"] == "expression-rule"
    rules = out["exception_policy"]["exception_rules"]
    minted = live_admin_client.get_exception_policy("ep-1").exception_rules[0].actions[0].id
    assert minted and rules["full"]["actions"] == {minted: {"type": "CancelExceptionAction", "kind": "cancel",
                                                            "note": "queue full"}}
    assert rules["slow"]["actions"]["move"]["worker_selectors"][0]["label_operator"] == "greaterThanEqual"
    assert rules["slow"]["trigger"]["threshold_seconds"] == 60
    # Notes: one key per note, the second of two at the same instant a microsecond later.
    assert out["job"]["notes"] == {
        "2024-03-01T10:00:00Z": "first", "2024-03-01T10:00:00.000001Z": "same instant",
        "2024-03-01T11:00:00Z": "later",
    }
    assert out["job"]["matching_mode"]["mode_type"] == "queueAndMatchMode"
    worker = out["worker"]
    assert (worker["total_capacity"], worker["queue_assignments"]) == (3, {"q-1": {}})
    assert worker["channel_configurations"]["voice"]["max_number_of_jobs"] == 2


@pytest.mark.parametrize("use_async", MODES)
def test_ga_written_resources_updated_through_the_preview(preview, live_admin_client, live_client, use_async):
    _ga_resources(live_admin_client, live_client)
    minted = live_admin_client.get_exception_policy("ep-1").exception_rules[0].actions[0].id
    out = preview("update_ga_resources", use_async=use_async, remove_rule="full",
                  remove_note="2024-03-01T11:00:00Z", add_queue="q-2", **GA_IDS)
    assert "error" not in out, out
    assert minted not in str(out["exception_policy"])

    policy = live_admin_client.get_distribution_policy("dp-best")
    assert policy.offer_expires_after_seconds == 120
    assert isinstance(policy.mode, BestWorkerMode) and policy.mode.scoring_rule_options.is_batch_scoring_enabled
    classification = live_admin_client.get_classification_policy("cp-1")
    assert [s.worker_selector.label_operator for s in classification.worker_selector_attachments] == [
        LabelOperator.GREATER_THAN_OR_EQUAL]
    assert len(classification.queue_selector_attachments) == 2
    rules = {r.id: r for r in live_admin_client.get_exception_policy("ep-1").exception_rules}
    assert sorted(rules) == ["from-preview", "slow"]
    assert [a.id for a in rules["slow"].actions] == ["move"]
    assert rules["slow"].actions[0].worker_selectors[0].label_operator == LabelOperator.GREATER_THAN_OR_EQUAL
    assert isinstance(rules["from-preview"].trigger, QueueLengthExceptionTrigger)
    assert [(a.id, a.note) for a in rules["from-preview"].actions] == [("preview-cancel", "full")]
    notes = live_client.get_job("job-1").notes
    assert [(n.message, n.added_at) for n in notes] == [
        ("first", datetime(2024, 3, 1, 10, 0, tzinfo=timezone.utc)),
        ("same instant", datetime(2024, 3, 1, 10, 0, 0, 1, tzinfo=timezone.utc)),
        ("added by preview", datetime(2025, 6, 1, 12, 0, tzinfo=timezone.utc)),
    ]
    worker = live_client.get_worker("w-1")
    assert worker.queues == ["q-1", "q-2"] and worker.capacity == 3


def test_preview_writing_back_what_it_read_changes_nothing(preview, live_admin_client, live_client):
    _ga_resources(live_admin_client, live_client)

    def snapshot():
        resources = [
            live_admin_client.get_distribution_policy("dp-best"), live_admin_client.get_classification_policy("cp-1"),
            live_admin_client.get_exception_policy("ep-1"), live_client.get_job("job-1"), live_client.get_worker("w-1"),
        ]
        return [{k: v for k, v in r.as_dict().items() if k != "etag"} for r in resources]

    before = snapshot()
    assert preview("write_back_unchanged", **GA_IDS) == {"written": True}
    after = snapshot()
    for old, new in zip(before, after, strict=True):
        assert new == old


def test_readme_seed_001_block_runs_as_written(router, transactional_db, access_key):
    """The README's "Seed 001 … working form" block, with the live server's endpoint and key."""
    import re
    import subprocess

    from tests.conftest import ROOT
    from tests.preview_client import preview_python

    readme = (ROOT / "README.md").read_text()
    section = readme[readme.index("### Seed 001"):]
    block = re.search(r"^```python\n(.*?)^```$", section, flags=re.M | re.S).group(1)
    endpoint_line = 'endpoint, key = "http://127.0.0.1:8000", "<the key scripts/start printed>"'
    assert endpoint_line in block
    block = block.replace(endpoint_line, f"endpoint, key = {router.endpoint!r}, {access_key!r}")
    done = subprocess.run([str(preview_python()), "-c", block], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.strip() == "seed 001 flow: closed"
