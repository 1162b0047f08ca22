"""Workers, offers and distribution through the official SDK (azure-communication-jobrouter
1.0.0) against the in-process app: worker CRUD and state (ACS 2023-11-01 §3.1, §4.2), list filters,
load ratio, decline/expiry/deregistration, label selectors, capacity, the three distribution
modes and concurrent offers (§4.3), and queue order (§4.7)."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest
from azure.core.exceptions import HttpResponseError, ResourceExistsError, ResourceNotFoundError
from azure.communication.jobrouter.models import (
    BestWorkerMode,
    DeclineJobOfferOptions,
    DistributionPolicy,
    ExpressionRouterRule,
    LabelOperator,
    LongestIdleMode,
    RoundRobinMode,
    RouterChannel,
    RouterJob,
    RouterJobStatus,
    RouterQueue,
    RouterWorker,
    RouterWorkerSelector,
    RouterWorkerState,
    ScoringRuleOptions,
)

from tests.inprocess import eventually


# --- helpers -------------------------------------------------------------------------------------


def setup_queue(admin_client, queue_id="q-1", policy_id="dp-1", expires=600, mode=None):
    admin_client.upsert_distribution_policy(
        policy_id, DistributionPolicy(offer_expires_after_seconds=expires, mode=mode or LongestIdleMode())
    )
    admin_client.upsert_queue(queue_id, RouterQueue(distribution_policy_id=policy_id))


def add_worker(client, worker_id, *, queues=("q-1",), channels=None, capacity=1, labels=None, available=True):
    return client.upsert_worker(
        worker_id,
        RouterWorker(
            capacity=capacity,
            queues=list(queues),
            labels=labels or {},
            channels=channels or [RouterChannel(channel_id="voice", capacity_cost_per_job=1)],
            available_for_offers=available,
        ),
    )


def add_job(client, job_id, *, queue_id="q-1", channel_id="voice", priority=1, selectors=None, labels=None):
    return client.upsert_job(
        job_id,
        RouterJob(
            channel_id=channel_id,
            queue_id=queue_id,
            priority=priority,
            requested_worker_selectors=selectors or [],
            labels=labels or {},
        ),
    )


def offers_for(client, worker_id, job_id=None):
    return [o for o in client.get_worker(worker_id).offers if job_id is None or o.job_id == job_id]


def wait_offer(client, worker_id, job_id, timeout=10.0):
    return eventually(lambda: offers_for(client, worker_id, job_id), timeout=timeout)[0]


def holders(client, job_id, worker_ids) -> set[str]:
    """Which of `worker_ids` hold an open offer for `job_id`."""
    return {w for w in worker_ids if offers_for(client, w, job_id)}


def wait_holder(client, job_id, worker_ids) -> str:
    """The single worker that gets offered `job_id`."""
    found = eventually(lambda: holders(client, job_id, worker_ids))
    assert len(found) == 1, found
    return found.pop()


def list_ids(pager) -> set[str]:
    return {w.id for w in pager}


# --- CRUD and state ------------------------------------------------------------------------------


def test_worker_upsert_201_then_200_echoes_fields_and_defaults(admin_client, client):
    setup_queue(admin_client)
    setup_queue(admin_client, "q-2")
    status, worker = client.upsert_worker(
        "w-crud",
        RouterWorker(
            capacity=10,
            queues=["q-1", "q-2"],
            labels={"lang": "en", "level": 3, "senior": True},
            tags={"desk": "A1"},
            channels=[
                RouterChannel(channel_id="voice", capacity_cost_per_job=10),
                RouterChannel(channel_id="chat", capacity_cost_per_job=2, max_number_of_jobs=3),
            ],
            available_for_offers=True,
        ),
        cls=lambda resp, body, _headers: (resp.http_response.status_code, body),
    )
    assert status == 201
    assert worker.id == "w-crud" and worker.etag
    assert worker.capacity == 10 and worker.queues == ["q-1", "q-2"]
    assert worker.labels == {"lang": "en", "level": 3, "senior": True, "Id": "w-crud"}
    assert worker.tags == {"desk": "A1"}
    # §5: channels compared by exact dict equality, no extra keys.
    assert [dict(c) for c in worker.channels] == [
        {"channelId": "voice", "capacityCostPerJob": 10},
        {"channelId": "chat", "capacityCostPerJob": 2, "maxNumberOfJobs": 3},
    ]
    assert worker.offers == [] and worker.assigned_jobs == [] and worker.load_ratio == 0
    assert worker.available_for_offers is True and worker.state == RouterWorkerState.ACTIVE

    status, updated = client.upsert_worker(
        "w-crud", capacity=5, labels={"level": 4}, cls=lambda resp, body, _h: (resp.http_response.status_code, body)
    )
    assert status == 200
    assert updated.capacity == 5
    assert updated.labels == {"lang": "en", "level": 4, "senior": True, "Id": "w-crud"}
    assert updated.queues == ["q-1", "q-2"] and len(updated.channels) == 2
    assert updated.etag != worker.etag

    fetched = client.get_worker("w-crud")
    assert (fetched.capacity, fetched.labels, fetched.etag) == (5, updated.labels, updated.etag)


def test_worker_update_replaces_queue_and_channel_lists(admin_client, client):
    setup_queue(admin_client)
    setup_queue(admin_client, "q-2")
    add_worker(client, "w-l", queues=["q-1", "q-2"])
    updated = client.upsert_worker(
        "w-l", queues=["q-2"], channels=[RouterChannel(channel_id="chat", capacity_cost_per_job=1)]
    )
    assert updated.queues == ["q-2"]
    assert [dict(c) for c in updated.channels] == [{"channelId": "chat", "capacityCostPerJob": 1}]


def test_worker_created_unavailable_is_inactive(client):
    worker = client.upsert_worker("w-off", RouterWorker(capacity=1, available_for_offers=False))
    assert worker.state == RouterWorkerState.INACTIVE and worker.available_for_offers is False
    worker = client.upsert_worker("w-off", available_for_offers=True)
    assert worker.state == RouterWorkerState.ACTIVE


def test_deregistered_worker_with_an_assignment_is_draining_then_inactive(admin_client, client):
    setup_queue(admin_client)
    add_worker(client, "w-d")
    add_job(client, "j-1")
    accepted = client.accept_job_offer("w-d", wait_offer(client, "w-d", "j-1").offer_id)
    worker = client.upsert_worker("w-d", available_for_offers=False)
    assert worker.state == RouterWorkerState.DRAINING
    client.complete_job("j-1", accepted.assignment_id)
    assert client.get_worker("w-d").state == RouterWorkerState.DRAINING  # wrap-up still holds it
    client.close_job("j-1", accepted.assignment_id)
    assert client.get_worker("w-d").state == RouterWorkerState.INACTIVE


def test_get_unknown_worker_is_404(client):
    with pytest.raises(ResourceNotFoundError) as err:
        client.get_worker("nobody")
    assert err.value.status_code == 404 and err.value.reason == "Not Found"


def test_delete_worker_is_204_then_404(client):
    client.upsert_worker("w-del", RouterWorker(capacity=1))
    status = client.delete_worker("w-del", cls=lambda resp, *_: resp.http_response.status_code)
    assert status == 204
    with pytest.raises(ResourceNotFoundError):
        client.get_worker("w-del")


def test_delete_worker_revokes_its_offers_and_the_job_moves_on(admin_client, client):
    setup_queue(admin_client)
    add_worker(client, "w-a")
    add_job(client, "j-1")
    wait_offer(client, "w-a", "j-1")
    add_worker(client, "w-b")
    client.delete_worker("w-a")
    wait_offer(client, "w-b", "j-1")


def test_deleting_a_worker_with_a_live_assignment_is_refused(admin_client, client):
    # Spec §4.2 leaves this open; a contact centre must not lose track of a connected call.
    setup_queue(admin_client)
    add_worker(client, "w-busy")
    add_job(client, "j-1")
    client.accept_job_offer("w-busy", wait_offer(client, "w-busy", "j-1").offer_id)
    with pytest.raises(ResourceExistsError):
        client.delete_worker("w-busy")
    assert client.get_worker("w-busy").assigned_jobs[0].job_id == "j-1"


def test_negative_capacity_and_bad_channels_are_400(client):
    with pytest.raises(HttpResponseError) as err:
        client.upsert_worker("w-bad", RouterWorker(capacity=-3))
    assert err.value.status_code == 400
    with pytest.raises(HttpResponseError) as err:
        client.upsert_worker("w-bad", {"capacity": 1, "channels": [{"channelId": "voice"}]})
    assert err.value.status_code == 400


# --- listing -------------------------------------------------------------------------------------


def test_list_workers_filters_by_state_channel_queue_and_capacity(admin_client, client):
    setup_queue(admin_client)
    setup_queue(admin_client, "q-2")
    add_worker(client, "w-active-voice", queues=["q-1"])
    add_worker(client, "w-active-chat", queues=["q-2"],
               channels=[RouterChannel(channel_id="chat", capacity_cost_per_job=1)])
    add_worker(client, "w-inactive", queues=["q-1"], available=False)
    add_worker(client, "w-draining", queues=["q-2"],
               channels=[RouterChannel(channel_id="chat", capacity_cost_per_job=1)])
    add_job(client, "j-chat", queue_id="q-2", channel_id="chat")
    # Whoever of the two chat workers gets the offer accepts it; make it w-draining.
    client.upsert_worker("w-active-chat", available_for_offers=False)
    client.accept_job_offer("w-draining", wait_offer(client, "w-draining", "j-chat").offer_id)
    client.upsert_worker("w-draining", available_for_offers=False)
    client.upsert_worker("w-active-chat", available_for_offers=True)

    everyone = {"w-active-voice", "w-active-chat", "w-inactive", "w-draining"}
    assert list_ids(client.list_workers()) == everyone
    assert list_ids(client.list_workers(state="all")) == everyone
    assert list_ids(client.list_workers(state="active")) == {"w-active-voice", "w-active-chat"}
    assert list_ids(client.list_workers(state="inactive")) == {"w-inactive"}
    assert list_ids(client.list_workers(state="draining")) == {"w-draining"}
    assert list_ids(client.list_workers(channel_id="chat")) == {"w-active-chat", "w-draining"}
    assert list_ids(client.list_workers(queue_id="q-1")) == {"w-active-voice", "w-inactive"}
    assert list_ids(client.list_workers(state="active", queue_id="q-2", channel_id="chat")) == {"w-active-chat"}
    # w-draining is full (capacity 1, one assignment). hasCapacity is orthogonal to state (the
    # state filter answers "who is available"), so the idle, inactive worker counts as having room.
    assert list_ids(client.list_workers(has_capacity=True)) == {"w-active-voice", "w-active-chat", "w-inactive"}
    assert list_ids(client.list_workers(channel_id="chat", has_capacity=True)) == {"w-active-chat"}


def test_list_workers_pages_hold_at_most_two_and_cover_everyone(client):
    ids = {f"w-page-{i}" for i in range(5)}
    for wid in ids:
        client.upsert_worker(wid, RouterWorker(capacity=1))
    pages = [list(p) for p in client.list_workers(results_per_page=2).by_page()]
    assert all(len(p) <= 2 for p in pages) and len(pages) == 3
    seen = [w.id for p in pages for w in p]
    assert len(seen) == len(set(seen)) and set(seen) == ids

    pages = [list(p) for p in client.list_workers(state="active", results_per_page=2).by_page()]
    assert [w for p in pages for w in p] == []


def test_list_workers_has_capacity_counts_pending_offers(admin_client, client):
    setup_queue(admin_client)
    add_worker(client, "w-1")
    add_job(client, "j-1")
    wait_offer(client, "w-1", "j-1")
    assert list_ids(client.list_workers(has_capacity=True)) == set()


# --- load ratio ----------------------------------------------------------------------------------


def test_load_ratio_counts_pending_offers_and_assignments(admin_client, client):
    setup_queue(admin_client)
    add_worker(client, "w-1", capacity=4)
    add_job(client, "j-1")
    wait_offer(client, "w-1", "j-1")
    assert client.get_worker("w-1").load_ratio == 0.25
    add_job(client, "j-2")
    offer = wait_offer(client, "w-1", "j-2")
    assert client.get_worker("w-1").load_ratio == 0.5
    client.accept_job_offer("w-1", offer.offer_id)
    worker = client.get_worker("w-1")
    assert worker.load_ratio == 0.5 and len(worker.offers) == 1 and len(worker.assigned_jobs) == 1


# --- decline -------------------------------------------------------------------------------------


def test_declined_job_goes_to_another_worker_and_never_back(admin_client, client):
    setup_queue(admin_client)
    add_worker(client, "w-a")
    add_worker(client, "w-b")
    add_job(client, "j-1")
    first = wait_holder(client, "j-1", ["w-a", "w-b"])
    other = "w-b" if first == "w-a" else "w-a"
    client.decline_job_offer(first, offers_for(client, first, "j-1")[0].offer_id)
    wait_offer(client, other, "j-1")
    assert offers_for(client, first, "j-1") == []
    client.decline_job_offer(other, offers_for(client, other, "j-1")[0].offer_id)
    # Barrier: a new job reaches the first worker, so matching has run since the declines.
    add_job(client, "j-2")
    wait_offer(client, first, "j-2")
    assert offers_for(client, first, "j-1") == [] and offers_for(client, other, "j-1") == []
    assert client.get_job("j-1").status == RouterJobStatus.QUEUED


def test_declined_offer_frees_capacity(admin_client, client):
    setup_queue(admin_client)
    add_worker(client, "w-1")
    add_job(client, "j-1")
    offer = wait_offer(client, "w-1", "j-1")
    assert client.decline_job_offer("w-1", offer.offer_id) is None
    assert client.get_worker("w-1").load_ratio == 0


def test_decline_with_retry_offer_at_reoffers_after_that_time(admin_client, client):
    setup_queue(admin_client)
    add_worker(client, "w-1")
    add_job(client, "j-1")
    offer = wait_offer(client, "w-1", "j-1")
    retry_at = datetime.now(timezone.utc) + timedelta(seconds=1.5)
    client.decline_job_offer("w-1", offer.offer_id, DeclineJobOfferOptions(retry_offer_at=retry_at))
    assert offers_for(client, "w-1", "j-1") == []
    again = wait_offer(client, "w-1", "j-1", timeout=5)
    assert again.offer_id != offer.offer_id
    assert again.offered_at >= retry_at


def test_decline_with_retry_offer_at_in_the_past_reoffers_at_once(admin_client, client):
    # The official tests send datetime.min ("0001-01-01T00:00:00Z").
    setup_queue(admin_client)
    add_worker(client, "w-1")
    add_job(client, "j-1")
    offer = wait_offer(client, "w-1", "j-1")
    client.decline_job_offer("w-1", offer.offer_id, DeclineJobOfferOptions(retry_offer_at=datetime.min))
    again = wait_offer(client, "w-1", "j-1", timeout=3)
    assert again.offer_id != offer.offer_id


def test_reregistering_forgets_declines(admin_client, client):
    setup_queue(admin_client)
    add_worker(client, "w-1")
    add_job(client, "j-1")
    client.decline_job_offer("w-1", wait_offer(client, "w-1", "j-1").offer_id)
    client.upsert_worker("w-1", available_for_offers=False)
    client.upsert_worker("w-1", available_for_offers=True)
    wait_offer(client, "w-1", "j-1")


def test_decline_unknown_offer_is_404(admin_client, client):
    setup_queue(admin_client)
    add_worker(client, "w-1")
    with pytest.raises(ResourceNotFoundError):
        client.decline_job_offer("w-1", "00000000-0000-0000-0000-000000000000")
    with pytest.raises(ResourceNotFoundError):
        client.accept_job_offer("w-1", "not-an-offer")


# --- expiry and deregistration -------------------------------------------------------------------


def test_expired_offer_disappears_deregisters_the_worker_and_the_job_moves_on(admin_client, client):
    setup_queue(admin_client, expires=1)
    add_worker(client, "w-a")
    add_job(client, "j-1")
    offer = wait_offer(client, "w-a", "j-1")
    assert offer.expires_at - offer.offered_at == timedelta(seconds=1)
    add_worker(client, "w-b")
    assert offers_for(client, "w-b", "j-1") == []  # w-b has to wait for the expiry

    wait_offer(client, "w-b", "j-1", timeout=5)
    worker = client.get_worker("w-a")
    assert worker.offers == [] and worker.load_ratio == 0
    assert worker.available_for_offers is False and worker.state != RouterWorkerState.ACTIVE
    with pytest.raises(HttpResponseError):
        client.accept_job_offer("w-a", offer.offer_id)


def test_worker_reregistering_after_an_expired_offer_is_offered_the_job_again(admin_client, client):
    setup_queue(admin_client, expires=1)
    add_worker(client, "w-1")
    add_job(client, "j-1")
    first = wait_offer(client, "w-1", "j-1")
    eventually(lambda: not client.get_worker("w-1").available_for_offers, timeout=5)
    assert client.get_job("j-1").status == RouterJobStatus.QUEUED
    client.upsert_worker("w-1", available_for_offers=True)
    again = wait_offer(client, "w-1", "j-1")
    assert again.offer_id != first.offer_id


def test_deregistering_revokes_open_offers_and_the_job_goes_to_another_worker(admin_client, client):
    setup_queue(admin_client)
    add_worker(client, "w-a")
    add_job(client, "j-1")
    offer = wait_offer(client, "w-a", "j-1")
    add_worker(client, "w-b")
    worker = client.upsert_worker("w-a", available_for_offers=False)
    assert worker.offers == [] and worker.state == RouterWorkerState.INACTIVE
    wait_offer(client, "w-b", "j-1")
    with pytest.raises(HttpResponseError):
        client.accept_job_offer("w-a", offer.offer_id)


# --- selectors -----------------------------------------------------------------------------------

# Workers: w-5 {n: 5, s: "b", flag: True}; w-10 {n: 10, s: "c", flag: False}; w-none {} (no labels).
SELECTOR_CASES = [
    ("n", LabelOperator.EQUAL, 5, {"w-5"}),
    ("n", LabelOperator.NOT_EQUAL, 5, {"w-10"}),
    ("n", LabelOperator.GREATER_THAN, 5, {"w-10"}),
    ("n", LabelOperator.GREATER_THAN_OR_EQUAL, 5, {"w-5", "w-10"}),
    ("n", LabelOperator.LESS_THAN, 10, {"w-5"}),
    ("n", LabelOperator.LESS_THAN_OR_EQUAL, 10, {"w-5", "w-10"}),
    ("n", LabelOperator.LESS_THAN, 5, set()),
    ("n", LabelOperator.EQUAL, 5.0, {"w-5"}),
    ("s", LabelOperator.EQUAL, "b", {"w-5"}),
    ("s", LabelOperator.NOT_EQUAL, "b", {"w-10"}),
    ("flag", LabelOperator.EQUAL, True, {"w-5"}),
    ("flag", LabelOperator.NOT_EQUAL, True, {"w-10"}),
    ("flag", LabelOperator.EQUAL, False, {"w-10"}),
    ("Id", LabelOperator.EQUAL, "w-none", {"w-none"}),
    ("absent", LabelOperator.NOT_EQUAL, "x", set()),
    ("absent", LabelOperator.LESS_THAN, 100, set()),
]


def _case_id(value) -> str:
    # Sets print in hash order, which string-hash randomisation changes from run to run: print
    # them sorted, so that a test keeps its id.
    return str(sorted(value)) if isinstance(value, set) else str(value)


@pytest.mark.parametrize(("key", "op", "value", "expected"), SELECTOR_CASES, ids=_case_id)
def test_worker_selector_operators(admin_client, client, key, op, value, expected):
    # maxConcurrentOffers high enough that every eligible worker is offered at once.
    setup_queue(admin_client, mode=LongestIdleMode(max_concurrent_offers=5))
    add_worker(client, "w-5", labels={"n": 5, "s": "b", "flag": True})
    add_worker(client, "w-10", labels={"n": 10, "s": "c", "flag": False})
    add_worker(client, "w-none")
    add_job(client, "j-sel", selectors=[RouterWorkerSelector(key=key, label_operator=op, value=value)])
    everyone = ["w-5", "w-10", "w-none"]
    if expected:
        eventually(lambda: holders(client, "j-sel", everyone) == expected)
    # Barrier for the negative part: a selector-free job reaches all three workers' matching.
    add_job(client, "j-free")
    eventually(lambda: len(holders(client, "j-free", everyone)) + len(expected) >= 3)
    assert holders(client, "j-sel", everyone) == expected


def test_job_needs_all_of_its_selectors(admin_client, client):
    setup_queue(admin_client, mode=LongestIdleMode(max_concurrent_offers=5))
    add_worker(client, "w-en-3", labels={"lang": "en", "level": 3})
    add_worker(client, "w-en-1", labels={"lang": "en", "level": 1})
    add_worker(client, "w-fr-3", labels={"lang": "fr", "level": 3})
    add_job(
        client,
        "j-1",
        selectors=[
            RouterWorkerSelector(key="lang", label_operator=LabelOperator.EQUAL, value="en"),
            RouterWorkerSelector(key="level", label_operator=LabelOperator.GREATER_THAN_OR_EQUAL, value=2),
        ],
    )
    eventually(lambda: holders(client, "j-1", ["w-en-3", "w-en-1", "w-fr-3"]) == {"w-en-3"})


def test_changing_worker_labels_makes_a_waiting_job_match(admin_client, client):
    setup_queue(admin_client)
    add_worker(client, "w-1", labels={"skill": 1})
    add_job(client, "j-1", selectors=[RouterWorkerSelector(key="skill", label_operator=LabelOperator.GREATER_THAN, value=5)])
    assert offers_for(client, "w-1", "j-1") == []
    client.upsert_worker("w-1", labels={"skill": 9})
    wait_offer(client, "w-1", "j-1")


# --- changes that make a waiting job match ---------------------------------------------------------


def test_raising_capacity_lets_the_worker_take_a_waiting_job(admin_client, client):
    setup_queue(admin_client)
    add_worker(client, "w-1", capacity=1)
    add_job(client, "j-1")
    wait_offer(client, "w-1", "j-1")
    add_job(client, "j-2")
    assert offers_for(client, "w-1", "j-2") == []
    client.upsert_worker("w-1", capacity=2)
    wait_offer(client, "w-1", "j-2")


def test_joining_a_queue_lets_the_worker_take_its_waiting_job(admin_client, client):
    setup_queue(admin_client)
    setup_queue(admin_client, "q-2", policy_id="dp-2")
    add_worker(client, "w-1", queues=["q-2"])
    add_job(client, "j-1")
    eventually(lambda: client.get_job("j-1").status == RouterJobStatus.QUEUED)
    assert offers_for(client, "w-1", "j-1") == []
    client.upsert_worker("w-1", queues=["q-2", "q-1"])
    wait_offer(client, "w-1", "j-1")


def test_accepting_another_workers_offer_is_404(admin_client, client):
    setup_queue(admin_client)
    add_worker(client, "w-1")
    add_worker(client, "w-2", available=False)
    add_job(client, "j-1")
    offer = wait_offer(client, "w-1", "j-1")
    with pytest.raises(ResourceNotFoundError):
        client.accept_job_offer("w-2", offer.offer_id)
    assert client.get_job("j-1").status == RouterJobStatus.QUEUED


# --- capacity and channels -----------------------------------------------------------------------


def test_channel_max_number_of_jobs_limits_offers(admin_client, client):
    setup_queue(admin_client)
    add_worker(client, "w-1", capacity=10,
               channels=[RouterChannel(channel_id="voice", capacity_cost_per_job=1, max_number_of_jobs=2)])
    for i in range(3):
        add_job(client, f"j-{i}")
    eventually(lambda: len(offers_for(client, "w-1")) == 2)
    offered = {o.job_id for o in offers_for(client, "w-1")}
    assert offered == {"j-0", "j-1"}
    # Declining one frees a slot on the channel for the third job.
    offer = offers_for(client, "w-1", "j-0")[0]
    client.decline_job_offer("w-1", offer.offer_id)
    eventually(lambda: {o.job_id for o in offers_for(client, "w-1")} == {"j-1", "j-2"})


def test_capacity_cost_limits_how_many_jobs_fit(admin_client, client):
    setup_queue(admin_client)
    add_worker(client, "w-1", capacity=10, channels=[
        RouterChannel(channel_id="voice", capacity_cost_per_job=4),
        RouterChannel(channel_id="chat", capacity_cost_per_job=2),
    ])
    for i in range(3):
        add_job(client, f"v-{i}")
    eventually(lambda: len(offers_for(client, "w-1")) == 2)
    worker = client.get_worker("w-1")
    assert {o.job_id for o in worker.offers} == {"v-0", "v-1"}
    assert [o.capacity_cost for o in worker.offers] == [4, 4]
    assert worker.load_ratio == pytest.approx(0.8)
    # A 2-cost chat job still fits in the remaining capacity of 2.
    add_job(client, "c-0", channel_id="chat")
    offer = wait_offer(client, "w-1", "c-0")
    assert offer.capacity_cost == 2
    assert client.get_worker("w-1").load_ratio == 1
    assert offers_for(client, "w-1", "v-2") == []


def test_worker_without_the_jobs_channel_or_queue_is_not_offered(admin_client, client):
    setup_queue(admin_client)
    setup_queue(admin_client, "q-2")
    add_worker(client, "w-chat", channels=[RouterChannel(channel_id="chat", capacity_cost_per_job=1)])
    add_worker(client, "w-q2", queues=["q-2"])
    add_worker(client, "w-ok")
    add_job(client, "j-1")
    assert wait_holder(client, "j-1", ["w-chat", "w-q2", "w-ok"]) == "w-ok"


# --- distribution modes --------------------------------------------------------------------------


def test_round_robin_offers_in_worker_id_order_after_the_last_offered(admin_client, client):
    setup_queue(admin_client, mode=RoundRobinMode())
    workers = ["w-b", "w-c", "w-a"]  # registration order is irrelevant to round robin
    for wid in workers:
        add_worker(client, wid, capacity=10)
    got = []
    for i in range(5):
        add_job(client, f"j-{i}")
        got.append(wait_holder(client, f"j-{i}", workers))
    assert got == ["w-a", "w-b", "w-c", "w-a", "w-b"]


def test_round_robin_skips_a_worker_without_capacity(admin_client, client):
    setup_queue(admin_client, mode=RoundRobinMode())
    add_worker(client, "w-a", capacity=10)
    add_worker(client, "w-b", capacity=1)
    add_worker(client, "w-c", capacity=10)
    workers = ["w-a", "w-b", "w-c"]
    got = []
    for i in range(4):
        add_job(client, f"j-{i}")
        got.append(wait_holder(client, f"j-{i}", workers))
    # w-b is full after j-1, so j-4's turn passes it by.
    assert got == ["w-a", "w-b", "w-c", "w-a"]
    add_job(client, "j-4")
    assert wait_holder(client, "j-4", workers) == "w-c"


def test_longest_idle_prefers_lowest_load_then_longest_idle(admin_client, client):
    setup_queue(admin_client)
    add_worker(client, "w-z", capacity=2)  # registers first: idle the longest
    add_worker(client, "w-a", capacity=2)
    add_job(client, "j-1")
    assert wait_holder(client, "j-1", ["w-a", "w-z"]) == "w-z"
    add_job(client, "j-2")
    assert wait_holder(client, "j-2", ["w-a", "w-z"]) == "w-a"  # w-z is now at 0.5
    add_job(client, "j-3")
    # Both at 0.5: the longest idle one (w-z) again.
    assert wait_holder(client, "j-3", ["w-a", "w-z"]) == "w-z"


def test_longest_idle_counts_idle_time_from_the_end_of_the_last_job(admin_client, client):
    setup_queue(admin_client)
    add_worker(client, "w-a")  # registered first
    add_worker(client, "w-b")
    add_job(client, "j-1")
    assert wait_holder(client, "j-1", ["w-a", "w-b"]) == "w-a"
    accepted = client.accept_job_offer("w-a", offers_for(client, "w-a", "j-1")[0].offer_id)
    client.complete_job("j-1", accepted.assignment_id)
    client.close_job("j-1", accepted.assignment_id)
    # w-a has just become idle again; w-b has been idle since it registered.
    add_job(client, "j-2")
    assert wait_holder(client, "j-2", ["w-a", "w-b"]) == "w-b"


def test_best_worker_with_an_expression_scoring_rule_picks_the_highest_score(admin_client, client):
    setup_queue(admin_client, mode=BestWorkerMode(scoring_rule=ExpressionRouterRule(expression="worker.skill * 2")))
    add_worker(client, "w-low", labels={"skill": 1})
    add_worker(client, "w-high", labels={"skill": 5})
    add_worker(client, "w-mid", labels={"skill": 3})
    workers = ["w-low", "w-high", "w-mid"]
    add_job(client, "j-1")
    assert wait_holder(client, "j-1", workers) == "w-high"
    add_job(client, "j-2")
    assert wait_holder(client, "j-2", workers) == "w-mid"


def test_best_worker_ascending_order_picks_the_lowest_score(admin_client, client):
    setup_queue(
        admin_client,
        mode=BestWorkerMode(
            scoring_rule=ExpressionRouterRule(expression="worker.skill * 2"),
            scoring_rule_options=ScoringRuleOptions(descending_order=False),
        ),
    )
    add_worker(client, "w-mid", labels={"skill": 3})
    add_worker(client, "w-low", labels={"skill": 1})
    add_worker(client, "w-high", labels={"skill": 5})
    add_job(client, "j-1")
    assert wait_holder(client, "j-1", ["w-low", "w-high", "w-mid"]) == "w-low"


def test_best_worker_scoring_can_use_job_labels(admin_client, client):
    setup_queue(
        admin_client,
        mode=BestWorkerMode(scoring_rule=ExpressionRouterRule(expression="If(worker.lang = job.lang, 10, 1)")),
    )
    add_worker(client, "w-en", labels={"lang": "en"})
    add_worker(client, "w-fr", labels={"lang": "fr"})
    add_job(client, "j-fr", labels={"lang": "fr"})
    assert wait_holder(client, "j-fr", ["w-en", "w-fr"]) == "w-fr"


def test_best_worker_default_scoring_prefers_matching_labels(admin_client, client):
    setup_queue(admin_client, mode=BestWorkerMode())
    add_worker(client, "w-a", labels={"lang": "en"})  # idle longest, half the labels
    add_worker(client, "w-b", labels={"lang": "en", "region": "eu"})
    add_worker(client, "w-c", labels={})
    add_job(client, "j-1", labels={"lang": "en", "region": "eu"})
    assert wait_holder(client, "j-1", ["w-a", "w-b", "w-c"]) == "w-b"


def test_best_worker_default_scoring_prefers_the_higher_label_for_greater_than(admin_client, client):
    setup_queue(admin_client, mode=BestWorkerMode())
    add_worker(client, "w-6", labels={"skill": 6})
    add_worker(client, "w-20", labels={"skill": 20})
    add_worker(client, "w-11", labels={"skill": 11})
    add_job(client, "j-1", selectors=[RouterWorkerSelector(key="skill", label_operator=LabelOperator.GREATER_THAN, value=5)])
    assert wait_holder(client, "j-1", ["w-6", "w-20", "w-11"]) == "w-20"


def test_max_concurrent_offers_offers_several_workers_and_accepting_revokes_the_rest(admin_client, client):
    setup_queue(admin_client, mode=LongestIdleMode(min_concurrent_offers=1, max_concurrent_offers=3))
    workers = ["w-1", "w-2", "w-3", "w-4"]
    for wid in workers:
        add_worker(client, wid)
    add_job(client, "j-1")
    eventually(lambda: len(holders(client, "j-1", workers)) == 3)
    offered = sorted(holders(client, "j-1", workers))
    assert offered == ["w-1", "w-2", "w-3"]  # the three longest idle
    winner, *losers = offered
    losing_offers = {w: offers_for(client, w, "j-1")[0].offer_id for w in losers}
    client.accept_job_offer(winner, offers_for(client, winner, "j-1")[0].offer_id)
    assert holders(client, "j-1", workers) == set()
    for wid in losers:
        assert client.get_worker(wid).load_ratio == 0
    # Accepting an offer for a job someone else took is a conflict (§4.1: 409).
    with pytest.raises(ResourceExistsError) as err:
        client.accept_job_offer(losers[0], losing_offers[losers[0]])
    assert err.value.status_code == 409


def test_declined_concurrent_offer_is_replaced_by_an_offer_to_another_worker(admin_client, client):
    setup_queue(admin_client, mode=LongestIdleMode(max_concurrent_offers=2))
    workers = ["w-1", "w-2", "w-3"]
    for wid in workers:
        add_worker(client, wid)
    add_job(client, "j-1")
    eventually(lambda: holders(client, "j-1", workers) == {"w-1", "w-2"})
    client.decline_job_offer("w-1", offers_for(client, "w-1", "j-1")[0].offer_id)
    eventually(lambda: holders(client, "j-1", workers) == {"w-2", "w-3"})


def test_best_worker_scoring_only_ranks_workers_that_pass_the_selectors(admin_client, client):
    setup_queue(admin_client, mode=BestWorkerMode(scoring_rule=ExpressionRouterRule(expression="worker.skill")))
    add_worker(client, "w-top", labels={"skill": 9, "lang": "fr"})
    add_worker(client, "w-ok", labels={"skill": 4, "lang": "en"})
    add_worker(client, "w-low", labels={"skill": 1, "lang": "en"})
    add_job(client, "j-1", selectors=[RouterWorkerSelector(key="lang", label_operator=LabelOperator.EQUAL, value="en")])
    assert wait_holder(client, "j-1", ["w-top", "w-ok", "w-low"]) == "w-ok"


def test_bypass_selectors_offers_to_workers_that_do_not_match(admin_client, client):
    setup_queue(admin_client, mode=LongestIdleMode(bypass_selectors=True))
    add_worker(client, "w-1", labels={"skill": 1})
    add_job(client, "j-1", selectors=[RouterWorkerSelector(key="skill", label_operator=LabelOperator.GREATER_THAN, value=50)])
    wait_offer(client, "w-1", "j-1")


def test_without_bypass_the_same_job_is_not_offered(admin_client, client):
    setup_queue(admin_client, mode=LongestIdleMode(bypass_selectors=False))
    add_worker(client, "w-1", labels={"skill": 1}, capacity=2)
    add_job(client, "j-1", selectors=[RouterWorkerSelector(key="skill", label_operator=LabelOperator.GREATER_THAN, value=50)])
    add_job(client, "j-2")
    wait_offer(client, "w-1", "j-2")
    assert offers_for(client, "w-1", "j-1") == []


# --- queue order ---------------------------------------------------------------------------------


def test_a_freed_worker_takes_the_highest_priority_oldest_job(admin_client, client):
    setup_queue(admin_client)
    add_worker(client, "w-1", available=False)
    for jid, prio in (("low-old", 1), ("high-old", 5), ("low-new", 1), ("high-new", 5)):
        add_job(client, jid, priority=prio)
        eventually(lambda jid=jid: client.get_job(jid).status == RouterJobStatus.QUEUED)
    client.upsert_worker("w-1", available_for_offers=True)
    order = []
    for _ in range(4):
        offer = eventually(lambda: offers_for(client, "w-1"))[0]
        order.append(offer.job_id)
        accepted = client.accept_job_offer("w-1", offer.offer_id)
        client.complete_job(offer.job_id, accepted.assignment_id)
        client.close_job(offer.job_id, accepted.assignment_id)
    assert order == ["high-old", "high-new", "low-old", "low-new"]
