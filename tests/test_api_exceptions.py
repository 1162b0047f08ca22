"""Exception policies through the official SDK (azure-communication-jobrouter 1.0.0) against the
in-process app (ACS 2023-11-01 §3.3, §4.5): queueLength and waitTime triggers; cancel,
manualReclassify and reclassify actions; at most one firing per rule per queue visit; actions in
order. Wait times pass on the simulated clock (tests/inprocess.py); a waitTime trigger that falls
due while the background worker is down is in tests/test_api_live_smoke.py.

Which rules fired is read from the job's `exceptionTriggers` extension field."""

from __future__ import annotations

from datetime import datetime, timedelta


from azure.communication.jobrouter.models import (
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
    QueueLengthExceptionTrigger,
    ReclassifyExceptionAction,
    RouterChannel,
    RouterJob,
    RouterJobStatus,
    RouterQueue,
    RouterQueueSelector,
    RouterWorker,
    RouterWorkerSelector,
    WaitTimeExceptionTrigger,
)

from tests.inprocess import eventually, holds_for

CHANNEL = "voice"


# --- helpers -------------------------------------------------------------------------------------


def setup(admin_client, rules, queue_id="q-1", others=("q-2", "q-vip")):
    """dp-1; exception policy `ep` with `rules` on `queue_id`; plain queues `others`."""
    admin_client.upsert_distribution_policy(
        "dp-1", DistributionPolicy(offer_expires_after_seconds=600, mode=LongestIdleMode())
    )
    for other in others:
        admin_client.upsert_queue(other, RouterQueue(distribution_policy_id="dp-1", labels={"Kind": other}))
    admin_client.upsert_exception_policy("ep", ExceptionPolicy(exception_rules=rules))
    admin_client.upsert_queue(queue_id, RouterQueue(distribution_policy_id="dp-1", exception_policy_id="ep"))


def new_job(client, job_id, queue_id="q-1", **kwargs):
    client.upsert_job(job_id, RouterJob(channel_id=CHANNEL, queue_id=queue_id, **kwargs))
    return eventually(lambda: (j := client.get_job(job_id)).status != RouterJobStatus.CREATED and j)


def triggers(job) -> list[dict]:
    return list(job.get("exceptionTriggers") or [])


def fired_rules(job) -> list[str]:
    return [t["ruleId"] for t in triggers(job)]


def parse(value: str) -> datetime:
    return datetime.fromisoformat(value.replace("Z", "+00:00"))




def queue_length_rule(rule_id, *actions, threshold=1):
    return ExceptionRule(id=rule_id, trigger=QueueLengthExceptionTrigger(threshold=threshold), actions=list(actions))


def wait_time_rule(rule_id, seconds, *actions):
    return ExceptionRule(id=rule_id, trigger=WaitTimeExceptionTrigger(threshold_seconds=seconds), actions=list(actions))


# --- queueLength ---------------------------------------------------------------------------------


def test_queue_length_trigger_cancels_the_job_that_exceeds_the_threshold(admin_client, client):
    setup(admin_client, [queue_length_rule("too-long", CancelExceptionAction(note="Queue is full", disposition_code="Overflow"))])
    first = new_job(client, "j1")
    assert first.status == RouterJobStatus.QUEUED
    second = client.upsert_job("j2", RouterJob(channel_id=CHANNEL, queue_id="q-1"))
    assert second.status == RouterJobStatus.CREATED

    job = eventually(lambda: (j := client.get_job("j2")).status == RouterJobStatus.CANCELLED and j)
    assert job.disposition_code == "Overflow"
    assert [n.message for n in job.notes] == ["Queue is full"]
    assert fired_rules(job) == ["too-long"]
    (trigger,) = triggers(job)
    assert (trigger["exceptionPolicyId"], trigger["queueId"]) == ("ep", "q-1")

    first = client.get_job("j1")
    assert first.status == RouterJobStatus.QUEUED
    assert triggers(first) == []


def test_queue_length_trigger_does_not_fire_at_the_threshold(admin_client, client):
    setup(admin_client, [queue_length_rule("too-long", CancelExceptionAction(), threshold=2)])
    new_job(client, "j1")
    new_job(client, "j2")
    holds_for(lambda: client.get_job("j2").status == RouterJobStatus.QUEUED, 0.5)
    assert [triggers(client.get_job(j)) for j in ("j1", "j2")] == [[], []]
    job = new_job(client, "j3")
    job = eventually(lambda: (j := client.get_job("j3")).status == RouterJobStatus.CANCELLED and j)
    assert job.disposition_code == "Cancelled"


def test_manual_reclassify_moves_job_to_queue_with_priority_and_worker_selectors(admin_client, client):
    setup(
        admin_client,
        [
            queue_length_rule(
                "overflow",
                ManualReclassifyExceptionAction(
                    queue_id="q-2",
                    priority=50,
                    worker_selectors=[RouterWorkerSelector(key="Overflow", label_operator=LabelOperator.EQUAL, value=True)],
                ),
            )
        ],
    )
    client.upsert_worker(
        "w-plain",
        RouterWorker(capacity=1, queues=["q-2"], channels=[RouterChannel(channel_id=CHANNEL, capacity_cost_per_job=1)], available_for_offers=True),
    )
    new_job(client, "j1", priority=1)
    client.upsert_job("j2", RouterJob(channel_id=CHANNEL, queue_id="q-1", priority=1))
    job = eventually(lambda: (j := client.get_job("j2")).queue_id == "q-2" and j)
    assert job.status == RouterJobStatus.QUEUED
    assert job.priority == 50
    selectors = [(s.key, s.label_operator, s.value) for s in [*job.requested_worker_selectors, *job.attached_worker_selectors]]
    assert selectors == [("Overflow", "equal", True)]
    assert fired_rules(job) == ["overflow"]
    # The policy echoes the action's selectors as given (ACS §3.6).
    action = admin_client.get_exception_policy("ep").exception_rules[0].actions[0]
    assert [dict(s) for s in action.worker_selectors] == [{"key": "Overflow", "labelOperator": "equal", "value": True}]

    # The selector constrains matching in the new queue: only a worker labelled Overflow gets it.
    client.upsert_worker(
        "w-overflow",
        RouterWorker(
            capacity=1, queues=["q-2"], labels={"Overflow": True},
            channels=[RouterChannel(channel_id=CHANNEL, capacity_cost_per_job=1)], available_for_offers=True,
        ),
    )
    eventually(lambda: [o.job_id for o in client.get_worker("w-overflow").offers] == ["j2"])
    assert client.get_worker("w-plain").offers == []


def test_reclassify_action_merges_labels_and_classifies_with_the_given_policy(admin_client, client):
    setup(
        admin_client,
        [
            queue_length_rule(
                "escalate",
                ReclassifyExceptionAction(classification_policy_id="cp-escalation", labels_to_upsert={"Escalated": True, "Tier": "gold"}),
            )
        ],
    )
    admin_client.upsert_classification_policy(
        "cp-escalation",
        ClassificationPolicy(
            fallback_queue_id="q-2",
            queue_selector_attachments=[
                ConditionalQueueSelectorAttachment(
                    condition=ExpressionRouterRule(expression="job.Escalated = true"),
                    queue_selectors=[RouterQueueSelector(key="Kind", label_operator=LabelOperator.EQUAL, value="q-vip")],
                )
            ],
        ),
    )
    new_job(client, "j1", labels={"Lang": "en"})
    client.upsert_job("j2", RouterJob(channel_id=CHANNEL, queue_id="q-1", labels={"Lang": "fr", "Tier": "silver"}))
    job = eventually(lambda: (j := client.get_job("j2")).queue_id == "q-vip" and j)
    assert job.status == RouterJobStatus.QUEUED
    assert job.labels == {"Lang": "fr", "Tier": "gold", "Escalated": True}
    assert job.classification_policy_id == "cp-escalation"
    assert fired_rules(job) == ["escalate"]
    assert client.get_job("j1").queue_id == "q-1"


# --- waitTime ------------------------------------------------------------------------------------


def test_wait_time_trigger_fires_about_threshold_seconds_after_enqueue(admin_client, client):
    setup(admin_client, [wait_time_rule("waited", 1, ManualReclassifyExceptionAction(queue_id="q-2", priority=9))])
    job = new_job(client, "j1")
    assert job.queue_id == "q-1" and job.status == RouterJobStatus.QUEUED
    enqueued_at = job.enqueued_at
    job = eventually(lambda: (j := client.get_job("j1")).queue_id == "q-2" and j, timeout=5)
    assert job.priority == 9
    (trigger,) = triggers(job)
    fired_at = parse(trigger["firedAt"])
    assert enqueued_at + timedelta(seconds=1) <= fired_at <= enqueued_at + timedelta(seconds=2)


def test_wait_time_trigger_does_not_fire_for_a_job_that_left_the_queue(admin_client, client):
    setup(admin_client, [wait_time_rule("waited", 1, CancelExceptionAction(disposition_code="TooLong"))])
    client.upsert_worker(
        "w1",
        RouterWorker(capacity=1, queues=["q-1"], channels=[RouterChannel(channel_id=CHANNEL, capacity_cost_per_job=1)], available_for_offers=True),
    )
    new_job(client, "j1")
    offer = eventually(lambda: client.get_worker("w1").offers)[0]
    client.accept_job_offer("w1", offer.offer_id)
    holds_for(lambda: client.get_job("j1").status == RouterJobStatus.ASSIGNED, 1.8)
    assert triggers(client.get_job("j1")) == []


def test_each_rule_fires_at_most_once_per_queue_visit(admin_client, client):
    setup(
        admin_client,
        [
            queue_length_rule("length", ReclassifyExceptionAction(labels_to_upsert={"length": True})),
            wait_time_rule("wait", 1, ReclassifyExceptionAction(labels_to_upsert={"waited": True})),
        ],
    )
    new_job(client, "j1")
    new_job(client, "j2")
    new_job(client, "j3")
    job = eventually(lambda: (j := client.get_job("j3")).labels.get("waited") and j, timeout=5)
    assert job.labels == {"length": True, "waited": True}
    # Well past a second threshold: nothing fires again in the same visit.
    holds_for(lambda: sorted(fired_rules(client.get_job("j3"))) == ["length", "wait"], 1.5)
    assert sorted(fired_rules(client.get_job("j2"))) == ["length", "wait"]
    assert fired_rules(client.get_job("j1")) == ["wait"]
    visits = {t["visit"] for t in triggers(client.get_job("j3"))}
    assert len(visits) == 1
    assert client.get_job("j3").status == RouterJobStatus.QUEUED


def test_actions_run_in_order(admin_client, client):
    setup(
        admin_client,
        [
            queue_length_rule(
                "ordered",
                ReclassifyExceptionAction(labels_to_upsert={"step": "first", "a": 1}),
                ManualReclassifyExceptionAction(priority=7),
                ReclassifyExceptionAction(labels_to_upsert={"step": "second"}),
                CancelExceptionAction(note="done", disposition_code="Ordered"),
            )
        ],
    )
    new_job(client, "j1")
    client.upsert_job("j2", RouterJob(channel_id=CHANNEL, queue_id="q-1", priority=1))
    job = eventually(lambda: (j := client.get_job("j2")).status == RouterJobStatus.CANCELLED and j)
    assert job.labels == {"step": "second", "a": 1}
    assert job.priority == 7
    assert job.disposition_code == "Ordered"
    assert [n.message for n in job.notes] == ["done"]


def test_actions_after_a_cancel_do_not_requeue_the_job(admin_client, client):
    setup(
        admin_client,
        [queue_length_rule("cancel-first", CancelExceptionAction(), ManualReclassifyExceptionAction(queue_id="q-2", priority=99))],
    )
    new_job(client, "j1")
    client.upsert_job("j2", RouterJob(channel_id=CHANNEL, queue_id="q-1", priority=1))
    job = eventually(lambda: (j := client.get_job("j2")).status == RouterJobStatus.CANCELLED and j)
    holds_for(lambda: client.get_job("j2").status == RouterJobStatus.CANCELLED, 0.3)
    job = client.get_job("j2")
    assert (job.queue_id, job.priority) == ("q-1", 1)


def test_wait_time_cancel_revokes_an_open_offer(admin_client, client):
    setup(admin_client, [wait_time_rule("unanswered", 1, CancelExceptionAction(disposition_code="NoAnswer"))])
    client.upsert_worker(
        "w1",
        RouterWorker(capacity=1, queues=["q-1"], channels=[RouterChannel(channel_id=CHANNEL, capacity_cost_per_job=1)], available_for_offers=True),
    )
    new_job(client, "j1")
    eventually(lambda: [o.job_id for o in client.get_worker("w1").offers] == ["j1"])
    job = eventually(lambda: (j := client.get_job("j1")).status == RouterJobStatus.CANCELLED and j, timeout=5)
    assert job.disposition_code == "NoAnswer"
    worker = client.get_worker("w1")
    assert worker.offers == [] and worker.load_ratio == 0


def test_reclassify_action_without_policy_id_uses_the_jobs_current_policy(admin_client, client):
    setup(admin_client, [queue_length_rule("move", ReclassifyExceptionAction(labels_to_upsert={"Region": "US"}))], others=())
    admin_client.upsert_queue("q-1", RouterQueue(distribution_policy_id="dp-1", exception_policy_id="ep", labels={"Region": "EU"}))
    admin_client.upsert_queue("q-us", RouterQueue(distribution_policy_id="dp-1", labels={"Region": "US"}))
    admin_client.upsert_classification_policy(
        "cp-region",
        ClassificationPolicy(
            queue_selector_attachments=[PassThroughQueueSelectorAttachment(key="Region", label_operator=LabelOperator.EQUAL)]
        ),
    )
    client.upsert_job("j1", RouterJob(channel_id=CHANNEL, classification_policy_id="cp-region", labels={"Region": "EU"}))
    eventually(lambda: (j := client.get_job("j1")).status == RouterJobStatus.QUEUED and j.queue_id == "q-1")
    client.upsert_job("j2", RouterJob(channel_id=CHANNEL, classification_policy_id="cp-region", labels={"Region": "EU"}))
    job = eventually(lambda: (j := client.get_job("j2")).queue_id == "q-us" and j.status == RouterJobStatus.QUEUED and j)
    assert job.labels == {"Region": "US"}
    assert job.classification_policy_id == "cp-region"
    assert fired_rules(job) == ["move"]
    assert client.get_job("j1").queue_id == "q-1"


def test_wait_time_escalation_that_keeps_the_job_in_its_queue_fires_once(admin_client, client):
    # Escalation by priority only: the reclassify action's policy puts the job back in the same
    # queue with a higher priority. The rule must not fire again and again.
    setup(admin_client, [wait_time_rule("escalate", 1, ReclassifyExceptionAction(labels_to_upsert={"Escalated": True}))], others=())
    admin_client.upsert_classification_policy(
        "cp",
        ClassificationPolicy(
            fallback_queue_id="q-1", prioritization_rule=ExpressionRouterRule(expression="If(job.Escalated = true, 10, 1)")
        ),
    )
    client.upsert_job("j1", RouterJob(channel_id=CHANNEL, classification_policy_id="cp", labels={"Escalated": False}))
    job = eventually(lambda: (j := client.get_job("j1")).status == RouterJobStatus.QUEUED and j)
    assert (job.queue_id, job.priority) == ("q-1", 1)
    job = eventually(lambda: (j := client.get_job("j1")).priority == 10 and j, timeout=5)
    assert job.labels == {"Escalated": True}
    def fired_once():
        fired = triggers(client.get_job("j1"))
        assert len(fired) == 1, f"fired {len(fired)} times: {[(t['visit'], t['firedAt']) for t in fired][:5]}..."
        return True

    holds_for(fired_once, 1.5)
    job = client.get_job("j1")
    assert (job.status, job.queue_id, fired_rules(job)) == (RouterJobStatus.QUEUED, "q-1", ["escalate"])


def test_queue_length_escalation_that_keeps_the_job_in_its_queue_fires_once(admin_client, client):
    setup(admin_client, [queue_length_rule("busy", ReclassifyExceptionAction(labels_to_upsert={"Busy": True}))], others=())
    admin_client.upsert_classification_policy(
        "cp",
        ClassificationPolicy(fallback_queue_id="q-1", prioritization_rule=ExpressionRouterRule(expression="If(job.Busy = true, 5, 1)")),
    )
    client.upsert_job("j1", RouterJob(channel_id=CHANNEL, classification_policy_id="cp"))
    eventually(lambda: client.get_job("j1").status == RouterJobStatus.QUEUED)
    client.upsert_job("j2", RouterJob(channel_id=CHANNEL, classification_policy_id="cp"))
    eventually(lambda: client.get_job("j2").priority == 5)
    def fired_once():
        fired = triggers(client.get_job("j2"))
        assert len(fired) == 1, f"fired {len(fired)} times (visits {[t['visit'] for t in fired][:6]}...)"
        return True

    holds_for(fired_once, 1.0)
    job = client.get_job("j2")
    assert (job.status, job.queue_id, job.labels) == (RouterJobStatus.QUEUED, "q-1", {"Busy": True})
    assert triggers(client.get_job("j1")) == []
