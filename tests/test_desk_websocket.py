"""The desk, waiting-room and supervisor websocket protocol, driven with Channels'
WebsocketCommunicator against the real ASGI application (session authentication included).

Personas (tests/personas.py): two agents (alice serves q1 at priority 5, bob serves q1 in
Do-Not-Disturb), an outsider with a login but no worker, a customer who joins through the
self-service page, an anonymous visitor, and a supervisor (staff). Router state changes go
through the API (the official SDK, in-process) or the desk itself."""

from __future__ import annotations

import asyncio

import pytest
from asgiref.sync import sync_to_async
from azure.communication.jobrouter.models import DistributionPolicy, LongestIdleMode, RouterJob, RouterQueue
from channels.testing import WebsocketCommunicator
from django.contrib.auth.models import User

from jobrouter.asgi import application
from routing.models import Job, JobStatus, Offer, OfferStatus
from tests.personas import logged_in, session_cookie

pytestmark = [pytest.mark.asyncio, pytest.mark.django_db(transaction=True)]


def _headers_for(user: User | None) -> list[tuple[bytes, bytes]]:
    headers = [(b"origin", b"http://localhost"), (b"host", b"localhost")]
    if user is not None:
        headers.append((b"cookie", session_cookie(user).encode()))
    return headers


async def connect(path: str, user: User | None) -> tuple[WebsocketCommunicator, bool]:
    headers = await sync_to_async(_headers_for)(user)
    communicator = WebsocketCommunicator(application, path, headers=headers)
    connected, _code = await communicator.connect()
    return communicator, connected


async def next_of(communicator: WebsocketCommunicator, kind: str, timeout: float = 5, where=lambda m: True) -> dict:
    """The next message of a type (skipping others) that satisfies `where`."""
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        remaining = deadline - asyncio.get_running_loop().time()
        if remaining <= 0:
            raise AssertionError(f"no {kind} message within {timeout}s")
        message = await communicator.receive_json_from(timeout=remaining)
        if message.get("type") == kind and where(message):
            return message


class DeskView:
    """What a desk page shows, assembled from the frames pushed to it (`desk`, `queue`,
    `catalog`), in the shape of one state: worker, offers, assignments, queues (status and
    `myPriority`), allQueues."""

    def __init__(self, socket: WebsocketCommunicator) -> None:
        self.socket = socket
        self.desk: dict | None = None
        self.queues: dict[str, dict] = {}
        self.catalog: list[dict] | None = None

    def current(self) -> dict | None:
        if self.desk is None or self.catalog is None:
            return None
        if any(q["id"] not in self.queues for q in self.desk["myQueues"]):
            return None
        return {
            "worker": self.desk["worker"], "offers": self.desk["offers"], "assignments": self.desk["assignments"],
            "queues": [{**self.queues[q["id"]], "myPriority": q["myPriority"]} for q in self.desk["myQueues"]],
            "allQueues": self.catalog,
        }

    async def state(self, where=lambda s: True, timeout: float = 5) -> dict:
        """The page's state as soon as it is complete and satisfies `where`."""
        deadline = asyncio.get_running_loop().time() + timeout
        while True:
            shown = self.current()
            if shown is not None and where(shown):
                return shown
            remaining = deadline - asyncio.get_running_loop().time()
            if remaining <= 0:
                raise AssertionError(f"the desk did not show the expected state within {timeout}s: {shown}")
            self.absorb(await self.socket.receive_json_from(timeout=remaining))

    def absorb(self, message: dict) -> None:
        if message["type"] == "desk":
            self.desk = message
        elif message["type"] == "queue":
            self.queues[message["queue"]["id"]] = message["queue"]
        elif message["type"] == "catalog":
            self.catalog = message["queues"]

    async def call(self, action: str, **args) -> dict:
        """Send an action; frames pushed meanwhile still count towards the page's state."""
        await self.socket.send_json_to({"action": action, "requestId": action, **args})
        deadline = asyncio.get_running_loop().time() + 5
        while True:
            message = await self.socket.receive_json_from(timeout=deadline - asyncio.get_running_loop().time())
            if message.get("type") == "result" and message.get("requestId") == action:
                return message
            self.absorb(message)


async def open_desk(user: User) -> tuple[WebsocketCommunicator, DeskView]:
    desk, connected = await connect("/ws/desk/", user)
    assert connected
    return desk, DeskView(desk)


class SupervisorView:
    """The supervisor page: its opening snapshot with the `queue` and `workers` deltas applied."""

    def __init__(self, socket: WebsocketCommunicator) -> None:
        self.socket = socket
        self.queues: dict[str, dict] | None = None
        self.workers: dict[str, dict] = {}

    async def state(self, where=lambda s: True, timeout: float = 5) -> dict:
        deadline = asyncio.get_running_loop().time() + timeout
        while True:
            if self.queues is not None:
                shown = {"queues": list(self.queues.values()), "workers": list(self.workers.values())}
                if where(shown):
                    return shown
            remaining = deadline - asyncio.get_running_loop().time()
            if remaining <= 0:
                raise AssertionError(f"the supervisor view did not show the expected state within {timeout}s")
            message = await self.socket.receive_json_from(timeout=remaining)
            if message["type"] == "supervisor":
                self.queues = {q["id"]: q for q in message["queues"]}
                self.workers = {w["id"]: w for w in message["workers"]}
            elif message["type"] == "queue" and self.queues is not None:
                self.queues[message["queue"]["id"]] = message["queue"]
            elif message["type"] == "workers":
                self.workers.update({w["id"]: w for w in message["workers"]})


async def call(communicator: WebsocketCommunicator, action: str, **args) -> dict:
    await communicator.send_json_to({"action": action, "requestId": action, **args})
    return await next_of(communicator, "result", where=lambda m: m.get("requestId") == action)


@pytest.fixture
def queues(admin_client):
    """q1 and q2, each with its own policy: one offer at a time, ringing for 60 s."""
    for queue_id in ("q1", "q2"):
        admin_client.upsert_distribution_policy(
            f"{queue_id}-policy",
            DistributionPolicy(offer_expires_after_seconds=60, mode=LongestIdleMode(max_concurrent_offers=1)),
        )
        admin_client.upsert_queue(queue_id, RouterQueue(distribution_policy_id=f"{queue_id}-policy"))


@pytest.fixture
def center(queues, agents, outsider, customer, supervisor):
    return {"alice": agents.alice, "bob": agents.bob, "outsider": outsider, "customer": customer, "supervisor": supervisor}


@pytest.fixture
def api(client):
    """The router's API for the test body (sync SDK calls wrapped for the event loop)."""

    class Api:
        async def queued_job(self, job_id: str, **fields):
            job = await sync_to_async(client.upsert_job)(
                job_id, RouterJob(channel_id="voice", queue_id="q1", priority=1, **fields)
            )
            return job

        async def set_available(self, worker_id: str, available: bool):
            return await sync_to_async(client.upsert_worker)(worker_id, available_for_offers=available)

        async def accept(self, worker_id: str, offer_id: str):
            return await sync_to_async(client.accept_job_offer)(worker_id, offer_id)

        async def cancel(self, job_id: str):
            return await sync_to_async(client.cancel_job)(job_id)

    return Api()


async def test_q6_anonymous_desk_connection_is_refused(center):
    communicator, connected = await connect("/ws/desk/", None)
    assert not connected


async def test_q6_login_without_a_worker_is_refused(center):
    communicator, connected = await connect("/ws/desk/", center["outsider"])
    assert not connected


async def test_q8_q13_desk_receives_full_state_on_connect_and_offer_rings_when_job_arrives(center, api):
    desk, view = await open_desk(center["alice"])
    first = await view.state()
    assert first["worker"]["id"] == "alice" and first["worker"]["availableForOffers"] is True
    assert first["offers"] == [] and [q["id"] for q in first["queues"]] == ["q1"]
    assert first["queues"][0]["myPriority"] == 5

    await api.queued_job("j1", channel_reference="+4420555")
    ringing = await view.state(where=lambda m: m["offers"])
    offer = ringing["offers"][0]
    assert offer["jobId"] == "j1" and offer["channelReference"] == "+4420555" and offer["expiresAt"]
    await desk.disconnect()


async def test_q13_accept_complete_close_through_the_desk(center, api):
    await api.queued_job("j1")
    desk, view = await open_desk(center["alice"])
    state = await view.state(where=lambda m: m["offers"])
    accepted = await view.call("accept", offerId=state["offers"][0]["offerId"])
    assert accepted["ok"] and accepted["data"]["jobId"] == "j1"
    state = await view.state(where=lambda m: m["assignments"])
    assignment = state["assignments"][0]
    assert assignment["status"] == "assigned" and state["offers"] == []

    completed = await view.call("complete", jobId="j1", assignmentId=assignment["assignmentId"], note="sorted")
    assert completed["ok"]
    closed = await view.call("close", jobId="j1", assignmentId=assignment["assignmentId"], dispositionCode="Resolved")
    assert closed["ok"]
    job = await sync_to_async(Job.objects.get)(pk="j1")
    assert job.status == JobStatus.CLOSED and job.disposition_code == "Resolved"
    assert [n["message"] for n in job.notes] == ["sorted"]
    await desk.disconnect()


async def test_q13_decline_moves_the_offer_off_the_desk(center, api):
    await api.queued_job("j1")
    desk, view = await open_desk(center["alice"])
    state = await view.state(where=lambda m: m["offers"])
    declined = await view.call("decline", offerId=state["offers"][0]["offerId"])
    assert declined["ok"]
    state = await view.state(where=lambda m: not m["offers"])
    assert state["offers"] == []
    await desk.disconnect()


async def test_agent_cannot_accept_another_workers_offer_or_close_their_job(center, api):
    await api.queued_job("j1")
    offer = await sync_to_async(Offer.objects.get)(job_id="j1", worker_id="alice")
    desk, view = await open_desk(center["bob"])
    await view.state()
    refused = await view.call("accept", offerId=str(offer.pk))
    assert not refused["ok"] and refused["error"]["code"] == "NotFound"
    assert (await sync_to_async(Offer.objects.get)(pk=offer.pk)).status == OfferStatus.OPEN

    result = await api.accept("alice", str(offer.pk))
    refused = await view.call("complete", jobId="j1", assignmentId=result.assignment_id)
    assert not refused["ok"] and refused["error"]["code"] == "NotFound"
    assert (await sync_to_async(Job.objects.get)(pk="j1")).status == JobStatus.ASSIGNED
    await desk.disconnect()


async def test_q14_dnd_then_request_next_customer_and_no_customer_waiting(center, api):
    desk, view = await open_desk(center["bob"])
    await view.state()
    nothing = await view.call("requestJob")
    assert not nothing["ok"] and nothing["error"]["code"] == "NoJobWaiting"

    # alice is busy: set her to DND so the job waits.
    await api.set_available("alice", False)
    await api.queued_job("j1")
    got = await view.call("requestJob")
    assert got["ok"] and got["data"]["jobId"] == "j1" and got["data"]["workerId"] == "bob"
    state = await view.state(where=lambda m: m["assignments"])
    assert state["worker"]["availableForOffers"] is False
    await desk.disconnect()


async def test_set_availability_switches_between_auto_assign_and_dnd(center):
    desk, view = await open_desk(center["bob"])
    await view.state()
    assert (await view.call("setAvailability", available=True))["ok"]
    state = await view.state(where=lambda m: m["worker"]["availableForOffers"])
    assert state["worker"]["state"] == "active"
    assert (await view.call("setAvailability", available=False))["ok"]
    state = await view.state(where=lambda m: not m["worker"]["availableForOffers"])
    assert state["worker"]["state"] == "inactive"
    bad = await view.call("setAvailability", available="yes")
    assert not bad["ok"]
    await desk.disconnect()


async def test_q10_start_and_stop_serving_a_queue_with_priority(center):
    desk, view = await open_desk(center["bob"])
    await view.state()
    started = await view.call("startServing", queueId="q2", priority=7)
    assert started["ok"]
    state = await view.state(where=lambda m: any(q["id"] == "q2" for q in m["queues"]))
    assert {q["id"]: q["myPriority"] for q in state["queues"]} == {"q1": 0, "q2": 7}
    stopped = await view.call("stopServing", queueId="q1")
    assert stopped["ok"]
    state = await view.state(where=lambda m: [q["id"] for q in m["queues"]] == ["q2"])
    unknown = await view.call("startServing", queueId="nope")
    assert not unknown["ok"] and unknown["error"]["code"] == "NotFound"
    await desk.disconnect()


async def test_unknown_action_is_answered_with_a_coded_error(center):
    desk, view = await open_desk(center["alice"])
    await view.state()
    reply = await view.call("fly")
    assert reply == {"type": "result", "requestId": "fly", "action": "fly", "ok": False,
                     "error": {"code": "UnknownAction", "message": "Unknown action 'fly'."}}
    await desk.disconnect()


async def test_reconnecting_desk_gets_the_offer_it_missed(center, api):
    desk, view = await open_desk(center["alice"])
    await view.state()
    await desk.disconnect()
    # The job arrives while the laptop sleeps.
    await api.queued_job("j1")
    desk, view = await open_desk(center["alice"])
    state = await view.state()
    assert [o["jobId"] for o in state["offers"]] == ["j1"]
    await desk.disconnect()


async def test_refresh_returns_full_state(center):
    desk, view = await open_desk(center["alice"])
    await view.state()
    await desk.send_json_to({"action": "refresh"})
    again = DeskView(desk)
    state = await again.state()
    assert state["worker"]["id"] == "alice" and [q["id"] for q in state["queues"]] == ["q1"]
    assert [q["id"] for q in state["allQueues"]] == ["q1", "q2"]
    await desk.disconnect()


async def test_q11_q12_waiting_room_shows_position_falling_and_leave_cancels(center, api):
    await api.set_available("alice", False)
    await api.queued_job("ahead")
    # "me" is the customer, who joins through the self-service page and is sent to the room.
    joined = await sync_to_async(lambda: logged_in(center["customer"]).post("/queue/", {"queue": "q1"}))()
    assert joined.status_code == 302 and joined.url.startswith("/wait/")
    me = await sync_to_async(Job.objects.exclude(pk="ahead").get)()
    room, connected = await connect(f"/ws{joined.url}", None)
    assert connected
    state = await next_of(room, "waiting")
    assert (state["position"], state["queueLength"]) == (2, 2)

    await api.cancel("ahead")
    state = await next_of(room, "waiting", where=lambda m: m["position"] == 1)
    assert state["queueLength"] == 1

    left = await call(room, "leave")
    assert left["ok"]
    assert (await sync_to_async(Job.objects.get)(pk=me.pk)).status == JobStatus.CANCELLED
    await room.disconnect()


async def test_forged_waiting_room_link_is_refused(center):
    room, connected = await connect("/ws/wait/not-a-token/", None)
    assert not connected


async def test_q9_supervisor_view_is_staff_only_and_updates(center, api):
    _, connected = await connect("/ws/supervisor/", center["alice"])
    assert not connected
    _, connected = await connect("/ws/supervisor/", center["customer"])
    assert not connected
    view, connected = await connect("/ws/supervisor/", center["supervisor"])
    assert connected
    page = SupervisorView(view)
    first = await page.state()
    assert {w["id"] for w in first["workers"]} == {"alice", "bob"}
    await api.set_available("alice", False)
    await api.queued_job("j1")
    update = await page.state(where=lambda m: next(q for q in m["queues"] if q["id"] == "q1")["length"] == 1
                              and next(w for w in m["workers"] if w["id"] == "alice")["state"] == "inactive")
    assert next(w for w in update["workers"] if w["id"] == "alice")["state"] == "inactive"
    await view.disconnect()


async def test_missed_offer_switches_the_desk_to_dnd_and_says_why_until_the_agent_changes_mode(center, api, router_clock):
    desk, view = await open_desk(center["alice"])
    await api.queued_job("j1")
    ringing = await view.state(where=lambda m: m["offers"])
    assert ringing["worker"]["dndReason"] is None and ringing["worker"]["missedOfferAt"] is None

    await sync_to_async(router_clock.advance)(61)  # the offer rings for 60 s
    missed = await view.state(where=lambda m: not m["worker"]["availableForOffers"])
    assert missed["offers"] == []
    assert missed["worker"]["dndReason"] == "missedOffer" and missed["worker"]["missedOfferAt"]

    assert (await view.call("setAvailability", available=True))["ok"]
    back = await view.state(where=lambda m: m["worker"]["availableForOffers"])
    assert back["worker"]["dndReason"] is None
    # Choosing Do not disturb oneself gives no reason to explain.
    assert (await view.call("setAvailability", available=False))["ok"]
    chosen = await view.state(where=lambda m: not m["worker"]["availableForOffers"])
    assert chosen["worker"]["dndReason"] is None
    await desk.disconnect()
