"""What arrives on a socket from outside: frames that are not JSON objects, and ids the client
chose (non-ASCII letters, the longest ids the API accepts). A bad frame is answered with an error
and the socket stays open; an unusual id reaches its own page and does not cost anyone else a push."""

from __future__ import annotations

import asyncio

import pytest
from asgiref.sync import sync_to_async
from channels.testing import WebsocketCommunicator
from django.contrib.auth.models import User
from django.db import connection

from agents.hub import get_hub
from jobrouter.asgi import application
from routing.services.workers import worker_link_user
from tests import factories
from tests.personas import session_cookie

pytestmark = [pytest.mark.asyncio, pytest.mark.django_db(transaction=True)]


def _agent(worker_id: str, username: str, queue: str) -> User:
    user = User.objects.create_user(username)
    factories.worker(worker_id, queues=[queue])
    worker_link_user(worker_id=worker_id, user=user)
    return user


async def _desk(user: User) -> WebsocketCommunicator:
    cookie = await sync_to_async(session_cookie)(user)
    headers = [(b"origin", b"http://localhost"), (b"host", b"localhost"), (b"cookie", cookie.encode())]
    socket = WebsocketCommunicator(application, "/ws/desk/", headers=headers)
    connected, _ = await socket.connect()
    assert connected
    return socket


async def _next(socket: WebsocketCommunicator, kind: str, where=lambda m: True, timeout: float = 3.0) -> dict:
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        message = await socket.receive_json_from(timeout=max(0.01, deadline - asyncio.get_running_loop().time()))
        if message.get("type") == kind and where(message):
            return message


@pytest.fixture
def ann(db) -> User:
    factories.queue_with_policy("q1")
    return _agent("ann", "ann", "q1")


@pytest.mark.parametrize("frame", [
    {"text_data": "this is not json"},
    {"text_data": "{\"action\": "},
    {"bytes_data": b"\xff\xfe\x00"},
    {"text_data": "[1, 2]"},
    {"text_data": "[" * 100_000},
    {"text_data": "{\"action\": \"refresh\", \"pad\": \"" + "x" * 70_000 + "\"}"},
])
async def test_a_frame_that_is_not_a_json_object_gets_an_error_and_the_socket_stays_open(ann, frame):
    desk = await _desk(ann)
    await _next(desk, "desk")
    await desk.send_to(**frame)
    reply = await _next(desk, "result")
    assert reply["ok"] is False and reply["error"]["code"] == "BadRequest"
    await desk.send_json_to({"action": "setAvailability", "available": False, "requestId": 7})
    answer = await _next(desk, "result")
    assert answer["ok"] and answer["requestId"] == 7
    await desk.disconnect()


ODD_WORKER = "agent-Åsa-Ñúñez-工作者:1 " + "ü" * 233  # non-ASCII letters, CJK, ":" and a space; 255 chars
ODD_QUEUE = "Köln-Düsseldorf-warteschlange-" + "ß" * 218  # 248 chars (its policy id adds "-policy")
ODD_JOB = "Anruf-für-Jürgen-" + "é" * 238  # 255 chars


@pytest.mark.postgres
async def test_ids_with_any_letters_and_the_longest_length_reach_their_pages_with_the_rest_of_the_batch(ann, db):
    """Channels group names allow only ASCII letters, digits, '-', '_' and '.', under 100
    characters; pushes are addressed by topic inside the hub, so any id the API accepts works, and
    one batch of changes reaches every recipient."""
    from django.db import transaction

    from routing.patches import WorkerPatch
    from routing.services.customers import waiting_room_link
    from routing.services.workers import worker_upsert

    await sync_to_async(factories.queue_with_policy)(ODD_QUEUE)
    odd = await sync_to_async(_agent)(ODD_WORKER, "odd", ODD_QUEUE)
    await sync_to_async(worker_upsert)(worker_id=ODD_WORKER, patch=WorkerPatch(available_for_offers=False))
    desks = {"ann": await _desk(ann), "odd": await _desk(odd)}
    for desk in desks.values():
        await _next(desk, "desk")
    await _next(desks["odd"], "queue", where=lambda m: m["queue"]["id"] == ODD_QUEUE)
    await sync_to_async(factories.queued_job)(ODD_JOB, queue=ODD_QUEUE)
    link = await sync_to_async(waiting_room_link)(job_id=ODD_JOB)
    room = WebsocketCommunicator(application, f"/ws{link.path}", headers=[(b"origin", b"http://localhost"),
                                                                          (b"host", b"localhost")])
    assert (await room.connect())[0]
    assert (await _next(room, "waiting"))["position"] == 1

    def one_batch() -> None:
        # One transaction: every change below lands in the hub's same batch of events.
        with transaction.atomic():
            worker_upsert(worker_id="ann", patch=WorkerPatch(available_for_offers=False))
            worker_upsert(worker_id=ODD_WORKER, patch=WorkerPatch(available_for_offers=True))

    await sync_to_async(one_batch)()
    ringing = await _next(desks["odd"], "desk", where=lambda m: m["offers"])
    assert ringing["topic"] == f"desk:{ODD_WORKER}" and ringing["offers"][0]["jobId"] == ODD_JOB
    assert ringing["offers"][0]["queueId"] == ODD_QUEUE
    mine = await _next(desks["ann"], "desk", where=lambda m: not m["worker"]["availableForOffers"])
    assert mine["worker"]["id"] == "ann"
    queue = await _next(desks["odd"], "queue", where=lambda m: m["queue"]["availableWorkers"] == 1)
    assert queue["topic"] == f"queue:{ODD_QUEUE}"
    await desks["odd"].send_json_to({"action": "accept", "requestId": 1, "offerId": ringing["offers"][0]["offerId"]})
    assert (await _next(desks["odd"], "result"))["ok"]
    assert (await _next(room, "waiting", where=lambda m: m["status"] == "assigned"))["jobId"] == ODD_JOB
    for socket in (*desks.values(), room):
        await socket.disconnect()
    # The hub's render thread keeps its connection; close it so PostgreSQL can drop the test database.
    await asyncio.wrap_future(get_hub().executor.submit(lambda: connection.close()))
