"""The push hub (agents/hub.py) against the real ASGI application: frames rendered once and
shared, other agents' changes reaching a desk, sequence numbers and heartbeats, a desk that
cannot go deaf, and desk actions answered while a burst of changes is being pushed."""

from __future__ import annotations

import asyncio
import time

import pytest
from asgiref.sync import sync_to_async
from channels.layers import get_channel_layer
from channels.testing import WebsocketCommunicator
from django.conf import settings
from django.contrib.auth.models import User
from django.test import Client

from agents import hub as hub_module
from jobrouter.asgi import application
from routing.patches import QueuePatch, WorkerPatch
from routing.services.jobs import job_cancel
from routing.services.policies import queue_upsert
from routing.services.workers import worker_link_user, worker_upsert
from tests import factories

pytestmark = [pytest.mark.asyncio, pytest.mark.django_db(transaction=True)]


def _agent(username: str, *, queues=("q1",), available: bool = True, capacity: int = 1) -> User:
    user = User.objects.create_user(username)
    factories.worker(username, queues=queues, available=available, capacity=capacity)
    worker_link_user(worker_id=username, user=user)
    return user


def _headers(user: User) -> list[tuple[bytes, bytes]]:
    browser = Client()
    browser.force_login(user)
    cookie = f"{settings.SESSION_COOKIE_NAME}={browser.cookies[settings.SESSION_COOKIE_NAME].value}"
    return [(b"origin", b"http://localhost"), (b"host", b"localhost"), (b"cookie", cookie.encode())]


async def _open(path: str, user: User) -> WebsocketCommunicator:
    socket = WebsocketCommunicator(application, path, headers=await sync_to_async(_headers)(user))
    connected, _ = await socket.connect()
    assert connected
    return socket


async def _frame(socket: WebsocketCommunicator, kind: str, where=lambda m: True, timeout: float = 3.0) -> dict:
    deadline = time.monotonic() + timeout
    while True:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise AssertionError(f"no {kind} frame within {timeout}s")
        message = await socket.receive_json_from(timeout=remaining)
        if message.get("type") == kind and where(message):
            return message


async def _raw(socket: WebsocketCommunicator, kind: str, timeout: float = 3.0) -> str:
    """The next frame of a kind, as the exact text the server sent."""
    deadline = time.monotonic() + timeout
    while True:
        text = await socket.receive_from(timeout=max(0.01, deadline - time.monotonic()))
        if f'"type":"{kind}"' in text:
            return text


@pytest.fixture
def floor(db):
    factories.queue_with_policy("q1", expires=600)
    factories.queue_with_policy("q2", expires=600)
    return {name: _agent(name) for name in ("ann", "ben", "cat")}


async def test_a_desk_opens_with_its_worker_its_queues_and_the_catalog(floor):
    await sync_to_async(queue_upsert)(queue_id="q1", patch=QueuePatch(description="Sales calls", priority=3))
    desk = await _open("/ws/desk/", floor["ann"])
    frames = {}
    while len(frames) < 3:
        message = await desk.receive_json_from(timeout=3)
        frames[message["type"]] = message
    assert frames["desk"]["worker"]["id"] == "ann" and frames["desk"]["myQueues"] == [{"id": "q1", "myPriority": 0}]
    assert frames["desk"]["topic"] == "desk:ann" and frames["desk"]["seq"] >= 1
    queue = frames["queue"]["queue"]
    assert (queue["id"], queue["description"], queue["priority"], queue["servingWorkers"]) == ("q1", "Sales calls", 3, 3)
    catalog = {q["id"]: q for q in frames["catalog"]["queues"]}
    assert catalog["q1"] == {"id": "q1", "name": "q1", "description": "Sales calls", "priority": 3}
    assert list(catalog) == ["q1", "q2"]  # highest priority first
    await desk.disconnect()


async def test_every_desk_of_a_queue_gets_the_same_queue_frame_bytes(floor):
    desks = [await _open("/ws/desk/", floor[name]) for name in ("ann", "ben", "cat")]
    for desk in desks:
        await _frame(desk, "queue")
    await sync_to_async(worker_upsert)(worker_id="ann", patch=WorkerPatch(available_for_offers=False))
    texts = [await _raw(desk, "queue") for desk in desks]
    assert len(set(texts)) == 1 and '"availableWorkers":2' in texts[0]
    for desk in desks:
        await desk.disconnect()


async def test_another_agents_dnd_and_stop_serving_reach_a_desk_within_a_second(floor):
    desk = await _open("/ws/desk/", floor["ann"])
    await _frame(desk, "queue")
    started = time.monotonic()
    await sync_to_async(worker_upsert)(worker_id="ben", patch=WorkerPatch(available_for_offers=False))
    frame = await _frame(desk, "queue", where=lambda m: m["queue"]["availableWorkers"] == 2, timeout=1.0)
    assert frame["queue"]["servingWorkers"] == 3
    assert time.monotonic() - started < 1.0

    started = time.monotonic()
    await sync_to_async(worker_upsert)(worker_id="cat", patch=WorkerPatch(queues=["q2"]))
    frame = await _frame(desk, "queue", where=lambda m: m["queue"]["servingWorkers"] == 2, timeout=1.0)
    assert frame["queue"]["id"] == "q1" and time.monotonic() - started < 1.0
    await desk.disconnect()


async def test_queue_frames_count_up_in_sequence_and_the_heartbeat_names_the_last_seq(floor, monkeypatch):
    monkeypatch.setattr(hub_module, "HEARTBEAT_SECONDS", 0.3)
    desk = await _open("/ws/desk/", floor["ann"])
    first = await _frame(desk, "queue")
    await sync_to_async(factories.queued_job)("j1", channel="other")
    second = await _frame(desk, "queue", where=lambda m: m["queue"]["length"] == 1)
    assert second["seq"] == first["seq"] + 1 and second["topic"] == "queue:q1"
    beat = await _frame(desk, "heartbeat", timeout=2)
    assert beat["seqs"]["queue:q1"] == second["seq"]
    assert beat["seqs"]["desk:ann"] >= 1
    await desk.disconnect()


async def test_a_desk_still_hears_changes_after_channel_layer_messages_for_it_expired(floor):
    """The in-memory channel layer drops a channel from all its groups once a message for it
    expires unread (the deaf-desk failure of the old push path). Pushes no longer ride on
    channel-layer groups: after such an expiry the desk still receives the next change."""
    desk = await _open("/ws/desk/", floor["ann"])
    await _frame(desk, "queue")
    layer = get_channel_layer()
    await layer.group_add("router.queue.q1", "stale-channel!inbox")
    layer.expiry = 0.01
    await layer.group_send("router.queue.q1", {"type": "router.event"})
    await asyncio.sleep(0.05)
    await layer.group_send("unrelated", {"type": "noop"})  # group_send runs the layer's expiry sweep
    assert "stale-channel!inbox" not in layer.groups.get("router.queue.q1", {})
    await sync_to_async(factories.queued_job)("j1")
    offer = await _frame(desk, "desk", where=lambda m: m["offers"])
    assert offer["offers"][0]["jobId"] == "j1"
    await desk.disconnect()


async def test_request_next_while_busy_answers_at_capacity_not_no_customer(floor):
    await sync_to_async(worker_upsert)(worker_id="ann", patch=WorkerPatch(available_for_offers=False))
    desk = await _open("/ws/desk/", floor["ann"])
    await _frame(desk, "desk")
    await sync_to_async(factories.queued_job)("j1")
    await sync_to_async(factories.queued_job)("j2")
    await desk.send_json_to({"action": "requestJob", "requestId": 1})
    first = await _frame(desk, "result")
    assert first["ok"] and first["data"]["jobId"] in ("j1", "j2")
    await desk.send_json_to({"action": "requestJob", "requestId": 2})
    busy = await _frame(desk, "result")
    assert busy["ok"] is False and busy["error"]["code"] == "AtCapacity"
    await desk.disconnect()


async def test_request_next_without_a_queue_says_not_serving(floor):
    await sync_to_async(worker_upsert)(worker_id="ann", patch=WorkerPatch(queues=[], available_for_offers=False))
    desk = await _open("/ws/desk/", floor["ann"])
    await desk.send_json_to({"action": "requestJob", "requestId": 1})
    reply = await _frame(desk, "result")
    assert reply["error"]["code"] == "NotServing"
    await desk.disconnect()


async def test_desk_actions_are_answered_promptly_while_a_burst_of_changes_is_pushed(floor):
    desks = {name: await _open("/ws/desk/", floor[name]) for name in ("ann", "ben", "cat")}
    ringing = await _frame(desks["ann"], "desk", where=lambda m: True)
    await sync_to_async(factories.queued_job)("first")
    ringing = await _frame(desks["ann"], "desk", where=lambda m: m["offers"])

    async def burst() -> None:
        for i in range(40):
            await sync_to_async(factories.queued_job)(f"burst-{i}", channel="other")
            await sync_to_async(job_cancel)(job_id=f"burst-{i}")

    pushing = asyncio.create_task(burst())
    await asyncio.sleep(0.05)
    started = time.monotonic()
    await desks["ann"].send_json_to({"action": "accept", "requestId": "a", "offerId": ringing["offers"][0]["offerId"]})
    reply = await _frame(desks["ann"], "result", timeout=5)
    answered = time.monotonic() - started
    await pushing
    assert reply["ok"] and reply["data"]["jobId"] == "first"
    assert answered < 1.0, f"accept answered after {answered:.2f}s during the burst"
    for desk in desks.values():
        await desk.disconnect()


async def test_a_bad_frame_is_answered_with_an_error_and_the_socket_stays_open(floor):
    desk = await _open("/ws/desk/", floor["ann"])
    await desk.send_to(text_data="{not json")
    reply = await _frame(desk, "result")
    assert reply["ok"] is False and reply["error"]["code"] == "BadRequest"
    await desk.send_json_to({"action": "refresh"})
    assert (await _frame(desk, "desk"))["worker"]["id"] == "ann"
    await desk.disconnect()


async def test_supervisor_gets_a_snapshot_then_only_the_rows_that_changed(floor):
    staff = await sync_to_async(User.objects.create_user)("boss", is_staff=True)
    supervisor = await _open("/ws/supervisor/", staff)
    snapshot = await _frame(supervisor, "supervisor")
    assert [w["id"] for w in snapshot["workers"]] == ["ann", "ben", "cat"]
    await sync_to_async(worker_upsert)(worker_id="ben", patch=WorkerPatch(available_for_offers=False))
    seen: dict[str, dict] = {}
    while not {"workers", "queue"} <= set(seen):
        message = await supervisor.receive_json_from(timeout=3)
        seen[message["type"]] = message
    assert [w["id"] for w in seen["workers"]["workers"]] == ["ben"]
    assert seen["workers"]["workers"][0]["state"] == "inactive"
    assert seen["queue"]["queue"]["id"] == "q1" and seen["queue"]["queue"]["availableWorkers"] == 2
    await supervisor.disconnect()


async def test_a_queue_that_changed_while_nobody_watched_is_shown_fresh_to_the_next_desk(floor):
    desk = await _open("/ws/desk/", floor["ann"])
    assert (await _frame(desk, "queue"))["queue"]["length"] == 0
    await desk.disconnect()
    await sync_to_async(factories.queued_job)("unwatched", channel="other")
    await asyncio.sleep(0.2)  # the hub sees the change while no page shows q1
    desk = await _open("/ws/desk/", floor["ann"])
    assert (await _frame(desk, "queue"))["queue"]["length"] == 1
    await desk.disconnect()


async def test_the_hub_survives_a_database_fault_and_catches_up(floor):
    """While the event table cannot be read (a fault in the database), the hub's passes fail and
    are retried; once it is back, the desk hears the change it missed."""
    from django.db import connection

    desk = await _open("/ws/desk/", floor["ann"])
    await _frame(desk, "queue")

    def break_table(broken: bool) -> None:
        with connection.cursor() as cursor:
            if broken:
                cursor.execute("ALTER TABLE routing_routerevent RENAME TO routing_routerevent_away")
            else:
                cursor.execute("ALTER TABLE routing_routerevent_away RENAME TO routing_routerevent")

    await sync_to_async(break_table)(True)
    try:
        await asyncio.sleep(0.3)  # several failing passes
    finally:
        await sync_to_async(break_table)(False)
    await sync_to_async(factories.queued_job)("after-the-fault")
    offer = await _frame(desk, "desk", where=lambda m: m["offers"])
    assert offer["offers"][0]["jobId"] == "after-the-fault"
    await desk.disconnect()
