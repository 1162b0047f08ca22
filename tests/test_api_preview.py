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
