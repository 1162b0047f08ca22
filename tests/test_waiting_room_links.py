"""Waiting-room links are bound to one instance of a job. Job ids are the client's choice: a
job that was cancelled and deleted may be created again under the same id (another customer,
another day). A link made for the first must not open, watch or cancel the second."""

from __future__ import annotations

import asyncio

import pytest
from asgiref.sync import sync_to_async
from channels.testing import WebsocketCommunicator
from django.test import Client

from jobrouter.asgi import application
from routing.errors import RouterError
from routing.models import Job, JobStatus
from routing.services.customers import job_for_link, waiting_room_link
from routing.services.jobs import job_cancel, job_delete
from tests import factories

pytestmark = pytest.mark.django_db(transaction=True)

HEADERS = [(b"origin", b"http://localhost"), (b"host", b"localhost")]


@pytest.fixture
def line(db):
    factories.queue_with_policy("q1")
    factories.queued_job("ahead")
    factories.queued_job("me")
    return waiting_room_link(job_id="me")


def _recreate(job_id: str) -> None:
    """The job is cancelled and deleted, then created again under its id (a new instance)."""
    job_cancel(job_id=job_id)
    job_delete(job_id=job_id)
    factories.queued_job(job_id)


async def _next_waiting(socket: WebsocketCommunicator, timeout: float = 3.0) -> dict:
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        message = await socket.receive_json_from(timeout=max(0.01, deadline - asyncio.get_running_loop().time()))
        if message.get("type") == "waiting":
            return message


def test_a_link_opens_its_own_job_but_not_the_job_created_again_under_its_id(line):
    assert job_for_link(line.token).job_id == "me"
    assert Client().get(line.path).status_code == 200
    _recreate("me")
    with pytest.raises(RouterError) as refused:
        job_for_link(line.token)
    assert refused.value.status == 403
    page = Client().get(line.path)
    assert page.status_code == 403 and b"no longer exists" in page.content
    # A link made for the new instance opens it.
    assert job_for_link(waiting_room_link(job_id="me").token).job_id == "me"


@pytest.mark.asyncio
async def test_the_old_link_cannot_open_a_socket_on_the_job_created_again(line):
    await sync_to_async(_recreate)("me")
    socket = WebsocketCommunicator(application, f"/ws{line.path}", headers=HEADERS)
    connected, code = await socket.connect()
    assert not connected and code == 4403


@pytest.mark.asyncio
async def test_an_open_waiting_room_says_gone_and_never_shows_or_cancels_the_new_instance(line):
    socket = WebsocketCommunicator(application, f"/ws{line.path}", headers=HEADERS)
    connected, _ = await socket.connect()
    assert connected
    first = await _next_waiting(socket)
    assert (first["jobId"], first["position"]) == ("me", 2)

    await sync_to_async(_recreate)("me")
    await sync_to_async(job_cancel)(job_id="ahead")  # the new instance moves up in line
    seen = []
    while not await socket.receive_nothing(timeout=0.5):
        seen.append(await socket.receive_json_from())
    statuses = [m["status"] for m in seen if m["type"] == "waiting"]
    assert statuses and statuses[-1] == "gone" and set(statuses) <= {"cancelled", "gone"}, seen

    await socket.send_json_to({"action": "leave", "requestId": 1})
    reply = await socket.receive_json_from(timeout=3)
    assert reply["ok"] is False and reply["error"]["code"] == "NotFound"
    assert (await sync_to_async(Job.objects.get)(pk="me")).status == JobStatus.QUEUED
    await socket.disconnect()
