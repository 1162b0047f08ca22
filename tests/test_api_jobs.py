"""Jobs through the official SDK (azure-communication-jobrouter 1.0.0) against the in-process app:
upsert and its echoes (ACS 2023-11-01 §3.1, §3.6), label merge patch, listing and filters, cancel,
delete, queue position and statistics (§4.7), and the assignment lifecycle (§4.1, §5)."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest
from azure.core.exceptions import HttpResponseError, ResourceExistsError, ResourceNotFoundError
from azure.communication.jobrouter.models import (
    CancelJobOptions,
    ClassificationPolicy,
    CloseJobOptions,
    CompleteJobOptions,
    DistributionPolicy,
    LabelOperator,
    LongestIdleMode,
    QueueAndMatchMode,
    RouterJob,
    RouterJobNote,
    RouterJobStatus,
    RouterQueue,
    RouterWorkerSelector,
    UnassignJobOptions,
)

from tests.inprocess import eventually, signed_request
from tests.sdk import add_worker

API = "api-version=2023-11-01"


# --- helpers -------------------------------------------------------------------------------------


def raw_request(access_key, method: str, path_and_query: str, body=None):
    """A request signed exactly as the SDK signs it, but with any JSON we like (e.g. nulls)."""
    return signed_request(method, path_and_query, access_key, body)


def setup_queue(admin_client, queue_id="q-1", policy_id="dp-1", expires=600, mode=None):
    admin_client.upsert_distribution_policy(
        policy_id, DistributionPolicy(offer_expires_after_seconds=expires, mode=mode or LongestIdleMode())
    )
    admin_client.upsert_queue(queue_id, RouterQueue(distribution_policy_id=policy_id))




def offers_for(client, worker_id, job_id):
    return [o for o in client.get_worker(worker_id).offers if o.job_id == job_id]


def wait_offer(client, worker_id, job_id):
    return eventually(lambda: offers_for(client, worker_id, job_id))[0]


def wait_status(client, job_id, status, timeout=10.0):
    return eventually(lambda: (j := client.get_job(job_id)).status == status and j, timeout=timeout)


def assign(client, job_id, worker_id):
    offer = wait_offer(client, worker_id, job_id)
    return client.accept_job_offer(worker_id, offer.offer_id)


def status_of(pipeline_response, deserialized, headers):
    return pipeline_response.http_response.status_code, deserialized


# --- upsert --------------------------------------------------------------------------------------


def test_job_upsert_echoes_fields_and_starts_created_then_queued(admin_client, client):
    setup_queue(admin_client)
    given_at = datetime(2024, 1, 2, 3, 4, 5, tzinfo=timezone.utc)
    status, job = client.upsert_job(
        "job-echo",
        RouterJob(
            channel_reference="ref-123",
            channel_id="voice",
            queue_id="q-1",
            priority=7,
            labels={"lang": "en", "vip": True, "score": 4.5},
            tags={"crm": "abc"},
            notes=[RouterJobNote(message="first"), RouterJobNote(message="second", added_at=given_at)],
            requested_worker_selectors=[
                RouterWorkerSelector(key="lang", label_operator=LabelOperator.EQUAL, value="en"),
                RouterWorkerSelector(key="level", label_operator=LabelOperator.GREATER_THAN_OR_EQUAL, value=3),
            ],
        ),
        cls=status_of,
    )
    assert status == 201
    assert job.status == RouterJobStatus.CREATED
    assert (job.id, job.channel_reference, job.channel_id, job.queue_id, job.priority) == (
        "job-echo", "ref-123", "voice", "q-1", 7,
    )
    assert job.labels == {"lang": "en", "vip": True, "score": 4.5}
    assert job.tags == {"crm": "abc"}
    assert [n.message for n in job.notes] == ["first", "second"]
    assert all(n.added_at is not None for n in job.notes)
    assert job.notes[1].added_at == given_at
    selectors = job.requested_worker_selectors
    assert [(s.key, s.label_operator, s.value) for s in selectors] == [
        ("lang", "equal", "en"), ("level", "greaterThanOrEqual", 3),
    ]
    assert all(s.expedite is False and s.expires_at is None for s in selectors)
    assert job.attached_worker_selectors == [] and job.assignments == {}
    assert isinstance(job.matching_mode, QueueAndMatchMode)
    assert job.classification_policy_id is None and job.disposition_code is None

    queued = wait_status(client, "job-echo", RouterJobStatus.QUEUED)
    assert queued.enqueued_at is not None
    assert queued.labels == job.labels and queued.tags == job.tags and queued.priority == 7


def test_job_update_answers_200_and_keeps_unsent_fields(admin_client, client):
    setup_queue(admin_client)
    client.upsert_job("job-upd", RouterJob(channel_id="voice", queue_id="q-1", priority=1, channel_reference="r"))
    status, job = client.upsert_job("job-upd", priority=9, cls=status_of)
    assert status == 200
    assert (job.priority, job.channel_reference, job.queue_id, job.channel_id) == (9, "r", "q-1", "voice")


def test_selector_with_expiry_gets_expires_at(admin_client, client):
    setup_queue(admin_client)
    before = datetime.now(timezone.utc)
    job = client.upsert_job(
        "job-exp",
        RouterJob(
            channel_id="voice",
            queue_id="q-1",
            requested_worker_selectors=[
                RouterWorkerSelector(key="Id", label_operator=LabelOperator.EQUAL, value="w-x",
                                     expires_after_seconds=45, expedite=True)
            ],
        ),
    )
    (selector,) = job.requested_worker_selectors
    assert selector.expedite is True and selector.expires_after_seconds == 45
    assert before + timedelta(seconds=44) <= selector.expires_at <= datetime.now(timezone.utc) + timedelta(seconds=46)


def test_resending_the_notes_list_replaces_it_without_duplicates(admin_client, client):
    setup_queue(admin_client)
    job = client.upsert_job(
        "job-notes", RouterJob(channel_id="voice", queue_id="q-1", notes=[RouterJobNote(message="a")])
    )
    job = client.upsert_job("job-notes", notes=[*job.notes, RouterJobNote(message="b")])
    assert [n.message for n in job.notes] == ["a", "b"]
    assert [n.message for n in client.get_job("job-notes").notes] == ["a", "b"]


def test_job_without_channel_or_queue_is_400(admin_client, client):
    setup_queue(admin_client)
    with pytest.raises(HttpResponseError) as err:
        client.upsert_job("job-nochan", RouterJob(queue_id="q-1"))
    assert err.value.status_code == 400
    with pytest.raises(HttpResponseError) as err:
        client.upsert_job("job-noq", RouterJob(channel_id="voice"))
    assert err.value.status_code == 400
    with pytest.raises(HttpResponseError) as err:
        client.upsert_job("job-badq", RouterJob(channel_id="voice", queue_id="no-such-queue"))
    assert err.value.status_code == 400


def test_labels_and_tags_merge_per_key_on_update(admin_client, client):
    setup_queue(admin_client)
    client.upsert_job("job-lab", RouterJob(channel_id="voice", queue_id="q-1", labels={"a": 1, "b": "x"}, tags={"t": 1}))
    job = client.upsert_job("job-lab", labels={"b": "y", "c": True}, tags={"u": 2})
    assert job.labels == {"a": 1, "b": "y", "c": True}
    assert job.tags == {"t": 1, "u": 2}


def test_null_label_value_deletes_the_key(admin_client, client, access_key):
    setup_queue(admin_client)
    client.upsert_job("job-null", RouterJob(channel_id="voice", queue_id="q-1", labels={"a": 1, "b": 2}, tags={"x": 1, "y": 2}))
    resp = raw_request(access_key, "PATCH", f"/routing/jobs/job-null?{API}",
                       {"labels": {"a": None, "c": 3}, "tags": {"y": None}})
    assert resp.status_code == 200, resp.text
    assert resp.json()["labels"] == {"b": 2, "c": 3}
    assert resp.json()["tags"] == {"x": 1}
    job = client.get_job("job-null")
    assert job.labels == {"b": 2, "c": 3} and job.tags == {"x": 1}


# --- list -------------------------------------------------------------------------------------------


def _make_list_fixture(admin_client, client):
    """Jobs: 3 queued voice in q-a, 2 queued chat in q-b, 1 cancelled voice in q-a, 1 with a
    classification policy."""
    setup_queue(admin_client, "q-a")
    setup_queue(admin_client, "q-b")
    admin_client.upsert_classification_policy("cp-1", ClassificationPolicy(name="cp"))
    for i in range(3):
        client.upsert_job(f"a-voice-{i}", RouterJob(channel_id="voice", queue_id="q-a"))
    for i in range(2):
        client.upsert_job(f"b-chat-{i}", RouterJob(channel_id="chat", queue_id="q-b"))
    client.upsert_job("a-cancelled", RouterJob(channel_id="voice", queue_id="q-a"))
    client.cancel_job("a-cancelled")
    client.upsert_job("with-cp", RouterJob(channel_id="email", queue_id="q-b", classification_policy_id="cp-1"))
    for jid in ("a-voice-0", "a-voice-1", "a-voice-2", "b-chat-0", "b-chat-1"):
        wait_status(client, jid, RouterJobStatus.QUEUED)


def _ids(pager) -> set[str]:
    return {j.id for j in pager}


def test_list_jobs_filters_by_status(admin_client, client):
    _make_list_fixture(admin_client, client)
    everything = _ids(client.list_jobs())
    assert {"a-voice-0", "a-voice-1", "a-voice-2", "b-chat-0", "b-chat-1", "a-cancelled", "with-cp"} == everything
    assert _ids(client.list_jobs(status="all")) == everything
    assert _ids(client.list_jobs(status="cancelled")) == {"a-cancelled"}
    assert {"a-voice-0", "a-voice-1", "a-voice-2", "b-chat-0", "b-chat-1"} <= _ids(client.list_jobs(status="queued"))
    assert "a-cancelled" not in _ids(client.list_jobs(status="active"))
    assert {"a-voice-0", "b-chat-1"} <= _ids(client.list_jobs(status="active"))
    assert _ids(client.list_jobs(status="closed")) == set()
    assert _ids(client.list_jobs(status="assigned")) == set()


def test_list_jobs_filters_by_queue_channel_and_classification_policy(admin_client, client):
    _make_list_fixture(admin_client, client)
    assert _ids(client.list_jobs(queue_id="q-a")) == {"a-voice-0", "a-voice-1", "a-voice-2", "a-cancelled"}
    assert _ids(client.list_jobs(channel_id="chat")) == {"b-chat-0", "b-chat-1"}
    assert _ids(client.list_jobs(classification_policy_id="cp-1")) == {"with-cp"}
    assert _ids(client.list_jobs(status="queued", queue_id="q-a", channel_id="voice")) == {
        "a-voice-0", "a-voice-1", "a-voice-2",
    }


def test_list_jobs_paging_carries_the_filters_in_next_link(admin_client, client):
    _make_list_fixture(admin_client, client)
    pages = [list(p) for p in client.list_jobs(status="queued", queue_id="q-a", results_per_page=2).by_page()]
    assert len(pages) == 2
    assert all(len(p) <= 2 for p in pages)
    seen = [j.id for p in pages for j in p]
    assert sorted(seen) == ["a-voice-0", "a-voice-1", "a-voice-2"]

    pages = [list(p) for p in client.list_jobs(results_per_page=2).by_page()]
    assert all(len(p) <= 2 for p in pages)
    seen = [j.id for p in pages for j in p]
    assert len(seen) == len(set(seen)) == 7


def test_list_jobs_with_unknown_status_is_400(client):
    with pytest.raises(HttpResponseError) as err:
        list(client.list_jobs(status="sleeping"))
    assert err.value.status_code == 400


# --- cancel and delete ------------------------------------------------------------------------------


def test_cancel_defaults_disposition_appends_note_and_revokes_offers(admin_client, client):
    setup_queue(admin_client)
    add_worker(client, "w-1")
    client.upsert_job("job-c", RouterJob(channel_id="voice", queue_id="q-1", notes=[RouterJobNote(message="hello")]))
    wait_offer(client, "w-1", "job-c")
    assert client.get_worker("w-1").load_ratio == 1

    result = client.cancel_job("job-c", CancelJobOptions(note="caller hung up"))
    assert result is None
    job = client.get_job("job-c")
    assert job.status == RouterJobStatus.CANCELLED
    assert job.disposition_code == "Cancelled"
    assert [n.message for n in job.notes] == ["hello", "caller hung up"]
    assert job.notes[-1].added_at is not None
    worker = client.get_worker("w-1")
    assert worker.offers == [] and worker.load_ratio == 0


def test_cancel_with_a_disposition_code_keeps_it(admin_client, client):
    setup_queue(admin_client)
    client.upsert_job("job-c2", RouterJob(channel_id="voice", queue_id="q-1"))
    client.cancel_job("job-c2", CancelJobOptions(disposition_code="Abandoned"))
    job = client.get_job("job-c2")
    assert (job.status, job.disposition_code, job.notes) == (RouterJobStatus.CANCELLED, "Abandoned", [])


def test_cancel_unknown_job_is_404(client):
    with pytest.raises(ResourceNotFoundError):
        client.cancel_job("no-such-job")


def test_deleting_a_waiting_job_is_409(admin_client, client):
    setup_queue(admin_client)
    client.upsert_job("job-d", RouterJob(channel_id="voice", queue_id="q-1"))
    with pytest.raises(ResourceExistsError) as err:
        client.delete_job("job-d")
    assert err.value.status_code == 409
    assert client.get_job("job-d").status in (RouterJobStatus.CREATED, RouterJobStatus.QUEUED)


def test_deleting_a_cancelled_job_is_204_then_404(admin_client, client):
    setup_queue(admin_client)
    client.upsert_job("job-d2", RouterJob(channel_id="voice", queue_id="q-1"))
    client.cancel_job("job-d2")
    status = client.delete_job("job-d2", cls=lambda resp, *_: resp.http_response.status_code)
    assert status == 204
    with pytest.raises(ResourceNotFoundError) as err:
        client.get_job("job-d2")
    assert err.value.status_code == 404 and err.value.reason == "Not Found"


def test_reclassify_of_a_direct_queue_job_keeps_it_queued(admin_client, client):
    setup_queue(admin_client)
    client.upsert_job("job-rc", RouterJob(channel_id="voice", queue_id="q-1"))
    wait_status(client, "job-rc", RouterJobStatus.QUEUED)
    assert client.reclassify_job("job-rc") is None
    job = client.get_job("job-rc")
    assert (job.status, job.queue_id) == (RouterJobStatus.QUEUED, "q-1")


# --- position and statistics --------------------------------------------------------------------------


def test_queue_position_is_one_based_by_priority_then_enqueue_time(admin_client, client):
    setup_queue(admin_client)
    client.upsert_job("p-low-old", RouterJob(channel_id="voice", queue_id="q-1", priority=1))
    wait_status(client, "p-low-old", RouterJobStatus.QUEUED)
    client.upsert_job("p-high", RouterJob(channel_id="voice", queue_id="q-1", priority=5))
    wait_status(client, "p-high", RouterJobStatus.QUEUED)
    client.upsert_job("p-low-new", RouterJob(channel_id="voice", queue_id="q-1", priority=1))
    wait_status(client, "p-low-new", RouterJobStatus.QUEUED)

    positions = {jid: client.get_queue_position(jid) for jid in ("p-high", "p-low-old", "p-low-new")}
    assert {jid: p.position for jid, p in positions.items()} == {"p-high": 1, "p-low-old": 2, "p-low-new": 3}
    for jid, p in positions.items():
        assert (p.job_id, p.queue_id, p.queue_length) == (jid, "q-1", 3)
        assert p.estimated_wait_time_minutes is not None and p.estimated_wait_time_minutes >= 0

    # Raising a job's priority moves it to the front.
    client.upsert_job("p-low-new", priority=10)
    assert client.get_queue_position("p-low-new").position == 1
    assert client.get_queue_position("p-high").position == 2


def test_queue_position_of_unknown_job_is_404(client):
    with pytest.raises(ResourceNotFoundError):
        client.get_queue_position("nope")


def test_queue_statistics_report_length_wait_and_estimates(admin_client, client):
    setup_queue(admin_client)
    empty = client.get_queue_statistics("q-1")
    assert (empty.queue_id, empty.length) == ("q-1", 0)
    for jid, prio in (("s-1", 1), ("s-2", 1), ("s-3", 5)):
        client.upsert_job(jid, RouterJob(channel_id="voice", queue_id="q-1", priority=prio))
        wait_status(client, jid, RouterJobStatus.QUEUED)
    stats = client.get_queue_statistics("q-1")
    assert stats.queue_id == "q-1" and stats.length == 3
    assert stats.longest_job_wait_time_minutes is not None and 0 <= stats.longest_job_wait_time_minutes < 1
    assert set(stats.estimated_wait_time_minutes) == {"1", "5"}
    assert all(v >= 0 for v in stats.estimated_wait_time_minutes.values())
    # Cancelled jobs leave the queue.
    client.cancel_job("s-3")
    assert client.get_queue_statistics("q-1").length == 2


def test_queue_statistics_of_unknown_queue_is_404(client):
    with pytest.raises(ResourceNotFoundError):
        client.get_queue_statistics("no-queue")


# --- assignment lifecycle ------------------------------------------------------------------------------


def test_complete_and_close_with_unknown_assignment_are_404(admin_client, client):
    setup_queue(admin_client)
    add_worker(client, "w-1")
    client.upsert_job("job-x", RouterJob(channel_id="voice", queue_id="q-1"))
    assign(client, "job-x", "w-1")
    for call in (client.complete_job, client.close_job, client.unassign_job):
        with pytest.raises(ResourceNotFoundError):
            call("job-x", "00000000-0000-0000-0000-000000000000")
        with pytest.raises(ResourceNotFoundError):
            call("job-x", "not-a-guid")
    assert client.get_job("job-x").status == RouterJobStatus.ASSIGNED


def test_assignment_scenario_from_the_official_tests(admin_client, client):
    """§5: offer, accept, decline-after-accept 404, unassign, re-offer, accept, complete, close."""
    setup_queue(admin_client)
    add_worker(client, "w-1")
    client.upsert_job("job-s", RouterJob(channel_id="voice", queue_id="q-1", priority=1))

    offers = eventually(lambda: offers_for(client, "w-1", "job-s"))
    assert len(offers) == 1
    offer = offers[0]
    assert offer.capacity_cost == 1 and offer.offered_at is not None and offer.expires_at is not None
    assert offer.expires_at - offer.offered_at == timedelta(seconds=600)

    accepted = client.accept_job_offer("w-1", offer.offer_id)
    assert (accepted.job_id, accepted.worker_id) == ("job-s", "w-1") and accepted.assignment_id
    job = client.get_job("job-s")
    assert job.status == RouterJobStatus.ASSIGNED
    assert job.assignments[accepted.assignment_id].worker_id == "w-1"
    worker = client.get_worker("w-1")
    assert worker.offers == []
    assert [(a.assignment_id, a.job_id, a.capacity_cost) for a in worker.assigned_jobs] == [
        (accepted.assignment_id, "job-s", 1)
    ]
    assert worker.assigned_jobs[0].assigned_at is not None

    with pytest.raises(HttpResponseError) as err:
        client.decline_job_offer("w-1", offer.offer_id)
    assert err.value.status_code == 404

    unassigned = client.unassign_job("job-s", accepted.assignment_id)
    assert (unassigned.job_id, unassigned.unassignment_count) == ("job-s", 1)
    new_offer = eventually(lambda: offers_for(client, "w-1", "job-s"))[0]
    assert new_offer.offer_id != offer.offer_id
    assert client.get_job("job-s").status == RouterJobStatus.QUEUED

    accepted = client.accept_job_offer("w-1", new_offer.offer_id)
    client.complete_job("job-s", accepted.assignment_id, CompleteJobOptions(note="wrap-up"))
    job = client.get_job("job-s")
    assert job.status == RouterJobStatus.COMPLETED
    assert client.get_worker("w-1").load_ratio == 1  # capacity held through wrap-up

    client.close_job("job-s", accepted.assignment_id, CloseJobOptions(disposition_code="Resolved", note="bye"))
    job = client.get_job("job-s")
    assert job.status == RouterJobStatus.CLOSED
    assert job.disposition_code == "Resolved"
    assignment = job.assignments[accepted.assignment_id]
    assert assignment.assigned_at and assignment.completed_at and assignment.closed_at
    assert assignment.assigned_at <= assignment.completed_at <= assignment.closed_at
    assert [n.message for n in job.notes] == ["wrap-up", "bye"]
    worker = client.get_worker("w-1")
    assert worker.assigned_jobs == [] and worker.load_ratio == 0

    # A closed job can be deleted.
    client.delete_job("job-s")
    with pytest.raises(ResourceNotFoundError):
        client.get_job("job-s")


def test_complete_twice_and_close_before_complete_are_refused(admin_client, client):
    setup_queue(admin_client)
    add_worker(client, "w-1")
    client.upsert_job("job-o", RouterJob(channel_id="voice", queue_id="q-1"))
    accepted = assign(client, "job-o", "w-1")
    with pytest.raises(HttpResponseError):
        client.close_job("job-o", accepted.assignment_id)
    assert client.get_job("job-o").status == RouterJobStatus.ASSIGNED
    client.complete_job("job-o", accepted.assignment_id)
    with pytest.raises(HttpResponseError):
        client.complete_job("job-o", accepted.assignment_id)
    client.close_job("job-o", accepted.assignment_id)
    assert client.get_job("job-o").disposition_code == "Closed"


def test_cancelling_an_assigned_job_is_refused(admin_client, client):
    setup_queue(admin_client)
    add_worker(client, "w-1")
    client.upsert_job("job-ac", RouterJob(channel_id="voice", queue_id="q-1"))
    assign(client, "job-ac", "w-1")
    with pytest.raises(HttpResponseError):
        client.cancel_job("job-ac")
    assert client.get_job("job-ac").status == RouterJobStatus.ASSIGNED


def test_unassign_requeues_and_reoffers_to_the_same_worker_at_most_three_times(admin_client, client):
    setup_queue(admin_client)
    add_worker(client, "w-1")
    client.upsert_job("job-u", RouterJob(channel_id="voice", queue_id="q-1"))
    for count in (1, 2, 3):
        accepted = assign(client, "job-u", "w-1")
        result = client.unassign_job("job-u", accepted.assignment_id)
        assert (result.job_id, result.unassignment_count) == ("job-u", count)
        job = client.get_job("job-u")
        assert job.status in (RouterJobStatus.QUEUED,)
        # The unassigned assignment is no longer listed on the job.
        assert accepted.assignment_id not in job.assignments
    accepted = assign(client, "job-u", "w-1")
    with pytest.raises(HttpResponseError) as err:
        client.unassign_job("job-u", accepted.assignment_id)
    assert err.value.status_code in (400, 409)
    assert client.get_job("job-u").status == RouterJobStatus.ASSIGNED


def test_unassign_with_suspend_matching_waits_for_activation(admin_client, client):
    setup_queue(admin_client)
    add_worker(client, "w-1")
    client.upsert_job("job-sus", RouterJob(channel_id="voice", queue_id="q-1"))
    accepted = assign(client, "job-sus", "w-1")
    result = client.unassign_job("job-sus", accepted.assignment_id, UnassignJobOptions(suspend_matching=True))
    assert result.unassignment_count == 1
    job = client.get_job("job-sus")
    assert job.status == RouterJobStatus.WAITING_FOR_ACTIVATION
    worker = client.get_worker("w-1")
    assert worker.offers == [] and worker.assigned_jobs == [] and worker.load_ratio == 0


def test_suspended_job_is_requeued_by_patching_queue_and_match(admin_client, client):
    setup_queue(admin_client)
    add_worker(client, "w-1")
    client.upsert_job("job-act", RouterJob(channel_id="voice", queue_id="q-1"))
    accepted = assign(client, "job-act", "w-1")
    client.unassign_job("job-act", accepted.assignment_id, UnassignJobOptions(suspend_matching=True))
    client.upsert_job("job-act", matching_mode=QueueAndMatchMode())
    wait_status(client, "job-act", RouterJobStatus.QUEUED, timeout=3)
    wait_offer(client, "w-1", "job-act")


# --- re-routing, expedite and expiring selectors ---------------------------------------------------


def test_changing_selectors_of_a_queued_job_moves_its_offer(admin_client, client):
    setup_queue(admin_client)
    add_worker(client, "w-en", labels={"lang": "en"})
    add_worker(client, "w-fr", labels={"lang": "fr"})
    client.upsert_job("job-r", RouterJob(channel_id="voice", queue_id="q-1", requested_worker_selectors=[
        RouterWorkerSelector(key="lang", label_operator=LabelOperator.EQUAL, value="en")]))
    wait_offer(client, "w-en", "job-r")
    client.upsert_job("job-r", requested_worker_selectors=[
        RouterWorkerSelector(key="lang", label_operator=LabelOperator.EQUAL, value="fr")])
    wait_offer(client, "w-fr", "job-r")
    assert offers_for(client, "w-en", "job-r") == []


def test_moving_a_queued_job_to_another_queue_offers_it_there(admin_client, client):
    setup_queue(admin_client, "q-1")
    setup_queue(admin_client, "q-2", policy_id="dp-2")
    add_worker(client, "w-2", queues=["q-2"])
    client.upsert_job("job-mv", RouterJob(channel_id="voice", queue_id="q-1"))
    wait_status(client, "job-mv", RouterJobStatus.QUEUED)
    assert offers_for(client, "w-2", "job-mv") == []
    client.upsert_job("job-mv", queue_id="q-2")
    wait_offer(client, "w-2", "job-mv")
    assert client.get_queue_statistics("q-1").length == 0


def test_expedited_job_goes_to_the_front_of_the_queue(admin_client, client):
    setup_queue(admin_client)
    client.upsert_job("job-plain", RouterJob(channel_id="voice", queue_id="q-1", priority=100))
    wait_status(client, "job-plain", RouterJobStatus.QUEUED)
    client.upsert_job("job-fast", RouterJob(channel_id="voice", queue_id="q-1", priority=1, requested_worker_selectors=[
        RouterWorkerSelector(key="lang", label_operator=LabelOperator.EQUAL, value="en", expedite=True)]))
    wait_status(client, "job-fast", RouterJobStatus.QUEUED)
    assert client.get_queue_position("job-fast").position == 1
    assert client.get_queue_position("job-plain").position == 2


def test_expired_preferred_worker_selector_lets_any_worker_take_the_job(admin_client, client):
    """§4.6: a preferred-worker selector that nobody satisfies within expiresAfterSeconds stops
    applying, so the job reaches any worker."""
    setup_queue(admin_client)
    add_worker(client, "w-any")
    client.upsert_job("job-pref", RouterJob(channel_id="voice", queue_id="q-1", requested_worker_selectors=[
        RouterWorkerSelector(key="Id", label_operator=LabelOperator.EQUAL, value="w-absent", expires_after_seconds=1)]))
    assert offers_for(client, "w-any", "job-pref") == []
    eventually(lambda: offers_for(client, "w-any", "job-pref"), timeout=3)  # ~1 s later, no other event
    assert client.get_job("job-pref").requested_worker_selectors[0].status == "expired"


# --- classification, scheduling and exception policies ----------------------------------------------


def test_job_with_a_classification_policy_is_queued_where_the_policy_says(admin_client, client):
    """§4.1/§5: pendingClassification in the response, then queued in the queue chosen by the
    static selector Id == <queue>, with priority 10 from StaticRouterRule(10)."""
    from azure.communication.jobrouter.models import (
        RouterQueueSelector,
        StaticQueueSelectorAttachment,
        StaticRouterRule,
    )

    setup_queue(admin_client, "q-target")
    admin_client.upsert_classification_policy("cp-1", ClassificationPolicy(
        queue_selector_attachments=[StaticQueueSelectorAttachment(
            queue_selector=RouterQueueSelector(key="Id", label_operator=LabelOperator.EQUAL, value="q-target"))],
        prioritization_rule=StaticRouterRule(value=10),
    ))
    job = client.upsert_job("job-cp", RouterJob(channel_id="voice", classification_policy_id="cp-1"))
    assert job.status == RouterJobStatus.PENDING_CLASSIFICATION
    job = wait_status(client, "job-cp", RouterJobStatus.QUEUED, timeout=3)
    assert (job.queue_id, job.priority) == ("q-target", 10)


def test_scheduled_job_waits_for_its_time_then_for_activation(admin_client, client):
    """§4.9: pendingSchedule, then scheduled (listable by scheduledBefore), then
    waitingForActivation at scheduleAt; never offered meanwhile."""
    from azure.communication.jobrouter.models import ScheduleAndSuspendMode

    setup_queue(admin_client)
    add_worker(client, "w-1")
    schedule_at = datetime.now(timezone.utc) + timedelta(seconds=2)
    job = client.upsert_job("job-sch", RouterJob(channel_id="voice", queue_id="q-1",
                                                 matching_mode=ScheduleAndSuspendMode(schedule_at=schedule_at)))
    assert job.status == RouterJobStatus.PENDING_SCHEDULE
    wait_status(client, "job-sch", RouterJobStatus.SCHEDULED, timeout=3)
    assert {j.id for j in client.list_jobs(status="scheduled", scheduled_before=schedule_at)} == {"job-sch"}
    assert offers_for(client, "w-1", "job-sch") == []
    wait_status(client, "job-sch", RouterJobStatus.WAITING_FOR_ACTIVATION, timeout=5)
    assert offers_for(client, "w-1", "job-sch") == []


def test_queue_length_exception_cancels_the_job_over_the_threshold(admin_client, client):
    """§4.5: queueLength{threshold} fires when a job joins a queue whose length exceeds it."""
    from azure.communication.jobrouter.models import (
        CancelExceptionAction,
        ExceptionPolicy,
        ExceptionRule,
        QueueLengthExceptionTrigger,
    )

    admin_client.upsert_distribution_policy("dp-1", DistributionPolicy(offer_expires_after_seconds=60, mode=LongestIdleMode()))
    admin_client.upsert_exception_policy("ep-1", ExceptionPolicy(exception_rules=[ExceptionRule(
        id="overflow", trigger=QueueLengthExceptionTrigger(threshold=1),
        actions=[CancelExceptionAction(disposition_code="Overflow")])]))
    admin_client.upsert_queue("q-1", RouterQueue(distribution_policy_id="dp-1", exception_policy_id="ep-1"))
    client.upsert_job("job-1", RouterJob(channel_id="voice", queue_id="q-1"))
    wait_status(client, "job-1", RouterJobStatus.QUEUED)
    client.upsert_job("job-2", RouterJob(channel_id="voice", queue_id="q-1"))
    job = wait_status(client, "job-2", RouterJobStatus.CANCELLED, timeout=3)
    assert job.disposition_code == "Overflow"
    assert client.get_job("job-1").status == RouterJobStatus.QUEUED


# --- classification behaviour (§4.4) ------------------------------------------------------------------


def _cp_models():
    from azure.communication.jobrouter import models as m

    return m


def test_conditional_queue_selector_and_fallback_route_by_job_labels(admin_client, client):
    m = _cp_models()
    setup_queue(admin_client, "q-vip")
    setup_queue(admin_client, "q-std", policy_id="dp-2")
    admin_client.upsert_classification_policy("cp-vip", m.ClassificationPolicy(
        fallback_queue_id="q-std",
        queue_selector_attachments=[m.ConditionalQueueSelectorAttachment(
            condition=m.ExpressionRouterRule(expression="job.vip = true"),
            queue_selectors=[m.RouterQueueSelector(key="Id", label_operator=LabelOperator.EQUAL, value="q-vip")],
        )],
        prioritization_rule=m.ExpressionRouterRule(expression="If(job.vip = true, 10, 1)"),
    ))
    vip = client.upsert_job("job-vip", RouterJob(channel_id="voice", classification_policy_id="cp-vip", labels={"vip": True}))
    std = client.upsert_job("job-std", RouterJob(channel_id="voice", classification_policy_id="cp-vip", labels={"vip": False}))
    assert vip.status == std.status == RouterJobStatus.PENDING_CLASSIFICATION
    vip = wait_status(client, "job-vip", RouterJobStatus.QUEUED)
    std = wait_status(client, "job-std", RouterJobStatus.QUEUED)
    assert (vip.queue_id, vip.priority) == ("q-vip", 10)
    assert (std.queue_id, std.priority) == ("q-std", 1)


def test_pass_through_queue_selector_matches_queue_labels(admin_client, client):
    m = _cp_models()
    admin_client.upsert_distribution_policy("dp-1", DistributionPolicy(offer_expires_after_seconds=60, mode=LongestIdleMode()))
    admin_client.upsert_queue("q-eu", RouterQueue(distribution_policy_id="dp-1", labels={"region": "eu"}))
    admin_client.upsert_queue("q-us", RouterQueue(distribution_policy_id="dp-1", labels={"region": "us"}))
    admin_client.upsert_classification_policy("cp-pt", m.ClassificationPolicy(queue_selector_attachments=[
        m.PassThroughQueueSelectorAttachment(key="region", label_operator=LabelOperator.EQUAL)]))
    client.upsert_job("job-us", RouterJob(channel_id="voice", classification_policy_id="cp-pt", labels={"region": "us"}))
    assert wait_status(client, "job-us", RouterJobStatus.QUEUED).queue_id == "q-us"


def test_no_matching_queue_and_no_fallback_fails_classification(admin_client, client):
    m = _cp_models()
    setup_queue(admin_client)
    admin_client.upsert_classification_policy("cp-none", m.ClassificationPolicy(queue_selector_attachments=[
        m.StaticQueueSelectorAttachment(
            queue_selector=m.RouterQueueSelector(key="Id", label_operator=LabelOperator.EQUAL, value="q-missing"))]))
    client.upsert_job("job-f", RouterJob(channel_id="voice", classification_policy_id="cp-none"))
    wait_status(client, "job-f", RouterJobStatus.CLASSIFICATION_FAILED)
    assert {j.id for j in client.list_jobs(status="classificationFailed")} == {"job-f"}
    # classificationFailed is terminal enough to delete.
    client.delete_job("job-f")


def test_worker_selector_attachments_become_attached_selectors_that_filter_workers(admin_client, client):
    m = _cp_models()
    setup_queue(admin_client)
    admin_client.upsert_classification_policy("cp-ws", m.ClassificationPolicy(
        fallback_queue_id="q-1",
        worker_selector_attachments=[m.StaticWorkerSelectorAttachment(
            worker_selector=RouterWorkerSelector(key="skill", label_operator=LabelOperator.GREATER_THAN, value=5))],
    ))
    add_worker(client, "w-junior", labels={"skill": 2})
    add_worker(client, "w-senior", labels={"skill": 8})
    client.upsert_job("job-ws", RouterJob(channel_id="voice", classification_policy_id="cp-ws"))
    job = wait_status(client, "job-ws", RouterJobStatus.QUEUED)
    assert [(s.key, s.label_operator, s.value, s.expedite) for s in job.attached_worker_selectors] == [
        ("skill", "greaterThan", 5, False)
    ]
    assert job.requested_worker_selectors == []
    wait_offer(client, "w-senior", "job-ws")
    assert offers_for(client, "w-junior", "job-ws") == []


def test_direct_map_rule_turns_job_labels_into_attached_selectors(admin_client, client):
    m = _cp_models()
    setup_queue(admin_client)
    admin_client.upsert_classification_policy("cp-dm", m.ClassificationPolicy(
        fallback_queue_id="q-1",
        worker_selector_attachments=[m.RuleEngineWorkerSelectorAttachment(rule=m.DirectMapRouterRule())],
    ))
    client.upsert_job("job-dm", RouterJob(channel_id="voice", classification_policy_id="cp-dm", labels={"lang": "fr"}))
    job = wait_status(client, "job-dm", RouterJobStatus.QUEUED)
    assert [(s.key, s.label_operator, s.value) for s in job.attached_worker_selectors] == [("lang", "equal", "fr")]


def test_label_change_on_a_classified_job_reclassifies_it(admin_client, client):
    m = _cp_models()
    setup_queue(admin_client, "q-vip")
    setup_queue(admin_client, "q-std", policy_id="dp-2")
    admin_client.upsert_classification_policy("cp-vip", m.ClassificationPolicy(
        fallback_queue_id="q-std",
        queue_selector_attachments=[m.ConditionalQueueSelectorAttachment(
            condition=m.ExpressionRouterRule(expression="job.vip = true"),
            queue_selectors=[m.RouterQueueSelector(key="Id", label_operator=LabelOperator.EQUAL, value="q-vip")],
        )],
    ))
    client.upsert_job("job-up", RouterJob(channel_id="voice", classification_policy_id="cp-vip", labels={"vip": False}))
    assert wait_status(client, "job-up", RouterJobStatus.QUEUED).queue_id == "q-std"
    patched = client.upsert_job("job-up", labels={"vip": True})
    assert patched.status == RouterJobStatus.PENDING_CLASSIFICATION
    assert wait_status(client, "job-up", RouterJobStatus.QUEUED).queue_id == "q-vip"


# --- matching modes and exception actions ---------------------------------------------------------------


def test_job_created_suspended_waits_until_queue_and_match(admin_client, client):
    m = _cp_models()
    setup_queue(admin_client)
    add_worker(client, "w-1", capacity=2)
    client.upsert_job("job-susp", RouterJob(channel_id="voice", queue_id="q-1", matching_mode=m.SuspendMode()))
    wait_status(client, "job-susp", RouterJobStatus.WAITING_FOR_ACTIVATION)
    client.upsert_job("job-other", RouterJob(channel_id="voice", queue_id="q-1"))
    wait_offer(client, "w-1", "job-other")  # barrier: matching ran
    assert offers_for(client, "w-1", "job-susp") == []
    client.upsert_job("job-susp", matching_mode=QueueAndMatchMode(), priority=50)
    wait_offer(client, "w-1", "job-susp")
    assert client.get_job("job-susp").priority == 50


def test_wait_time_exception_manually_reclassifies_to_another_queue(admin_client, client):
    m = _cp_models()
    admin_client.upsert_distribution_policy("dp-1", DistributionPolicy(offer_expires_after_seconds=60, mode=LongestIdleMode()))
    admin_client.upsert_queue("q-2", RouterQueue(distribution_policy_id="dp-1"))
    admin_client.upsert_exception_policy("ep-wait", m.ExceptionPolicy(exception_rules=[m.ExceptionRule(
        id="slow", trigger=m.WaitTimeExceptionTrigger(threshold_seconds=1),
        actions=[m.ManualReclassifyExceptionAction(queue_id="q-2", priority=7)])]))
    admin_client.upsert_queue("q-1", RouterQueue(distribution_policy_id="dp-1", exception_policy_id="ep-wait"))
    add_worker(client, "w-2", queues=["q-2"])
    client.upsert_job("job-w", RouterJob(channel_id="voice", queue_id="q-1", priority=1))
    wait_status(client, "job-w", RouterJobStatus.QUEUED)
    assert client.get_job("job-w").queue_id == "q-1"
    wait_offer(client, "w-2", "job-w")
    job = client.get_job("job-w")
    assert (job.queue_id, job.priority, job.status) == ("q-2", 7, RouterJobStatus.QUEUED)


def test_reclassify_exception_action_upserts_labels_and_classifies_again(admin_client, client):
    m = _cp_models()
    admin_client.upsert_distribution_policy("dp-1", DistributionPolicy(offer_expires_after_seconds=60, mode=LongestIdleMode()))
    admin_client.upsert_queue("q-high", RouterQueue(distribution_policy_id="dp-1"))
    admin_client.upsert_exception_policy("ep-esc", m.ExceptionPolicy(exception_rules=[m.ExceptionRule(
        id="escalate", trigger=m.WaitTimeExceptionTrigger(threshold_seconds=1),
        actions=[m.ReclassifyExceptionAction(classification_policy_id="cp-esc", labels_to_upsert={"escalated": True})])]))
    admin_client.upsert_queue("q-low", RouterQueue(distribution_policy_id="dp-1", exception_policy_id="ep-esc"))
    admin_client.upsert_classification_policy("cp-esc", m.ClassificationPolicy(
        fallback_queue_id="q-low",
        queue_selector_attachments=[m.ConditionalQueueSelectorAttachment(
            condition=m.ExpressionRouterRule(expression="job.escalated = true"),
            queue_selectors=[m.RouterQueueSelector(key="Id", label_operator=LabelOperator.EQUAL, value="q-high")])],
        prioritization_rule=m.ExpressionRouterRule(expression="If(job.escalated = true, 10, 1)"),
    ))
    client.upsert_job("job-e", RouterJob(channel_id="voice", queue_id="q-low", labels={"a": 1}))
    job = eventually(lambda: (j := client.get_job("job-e")).queue_id == "q-high" and j.status == RouterJobStatus.QUEUED and j, timeout=5)
    assert job.labels == {"a": 1, "escalated": True}
    assert (job.classification_policy_id, job.priority) == ("cp-esc", 10)
