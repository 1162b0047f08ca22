"""Pushes reach a desk whichever process made the change: another web process (REST), or the
background worker (a timer): every web process's push hub reads the event table, on the embedded default and with
REDIS_URL (channels-redis). Real daphne processes, a real websocket client, a real Redis."""

from __future__ import annotations

import asyncio
import json
import shutil
import socket
import subprocess
import tempfile
import time

import pytest
import websockets
from django.conf import settings

from tests import factories
from tests.conftest import RouterProcesses, make_clients, server_env
from tests.personas import create_agent, session_cookie

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.postgres]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def redis_url():
    binary = shutil.which("redis-server")
    if binary is None:
        pytest.fail("redis-server is not installed (scripts/test installs it)")
    port = _free_port()
    workdir = tempfile.mkdtemp()
    proc = subprocess.Popen([binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--dir", workdir],
                            stdout=subprocess.DEVNULL)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            break
        except OSError:
            time.sleep(0.05)
    yield f"redis://127.0.0.1:{port}/0"
    proc.terminate()
    proc.wait()
    shutil.rmtree(workdir, ignore_errors=True)


def _agent_cookie() -> str:
    # alice (tests/personas.py): an agent serving q1, taking offers.
    return session_cookie(create_agent("alice", "q1", available=True))


async def _desk_until(endpoint: str, cookie: str, predicate, action) -> dict:
    """Open a desk on `endpoint`, run `action` (in a thread) once its first desk frame arrived,
    and return the first desk frame that satisfies `predicate`."""
    url = endpoint.replace("http://", "ws://") + "/ws/desk/"
    async with websockets.connect(url, additional_headers={"Cookie": cookie, "Origin": endpoint}) as ws:
        # The desk's snapshot comes first of the desk frames; a catalog frame (the queue the test
        # just created) may be pushed before it.
        first = json.loads(await asyncio.wait_for(ws.recv(), 10))
        while first["type"] != "desk":
            first = json.loads(await asyncio.wait_for(ws.recv(), 10))
        assert first["topic"].startswith("desk:")
        await asyncio.to_thread(action)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            message = json.loads(await asyncio.wait_for(ws.recv(), deadline - time.monotonic()))
            if message.get("type") == "desk" and predicate(message):
                return message
    raise AssertionError("the desk never saw the change")


def _scenario(processes: RouterProcesses) -> None:
    factories.queue_with_policy("q1", expires=1)
    cookie = _agent_cookie()
    admin, client = make_clients(processes.endpoints()[0], settings.JOBROUTER_ACCESS_KEY)
    desk_endpoint = processes.endpoints()[-1]

    # A REST call served by the first web process rings a desk connected to the second.
    from azure.communication.jobrouter.models import RouterJob

    rung = asyncio.run(_desk_until(
        desk_endpoint, cookie, lambda m: m["offers"],
        lambda: client.upsert_job("j1", RouterJob(channel_id="voice", queue_id="q1")),
    ))
    assert rung["offers"][0]["jobId"] == "j1"

    # The background worker's timer expires the offer: the desk sees it go and the agent
    # deregistered (ACS expiry behaviour), with no request from anyone.
    gone = asyncio.run(_desk_until(
        desk_endpoint, cookie, lambda m: not m["offers"] and not m["worker"]["availableForOffers"], lambda: None,
    ))
    assert gone["worker"]["state"] == "inactive"


def test_push_crosses_processes_without_redis(django_db_setup, only_these_processes, fast_passwords):
    processes = RouterProcesses(server_env(), servers=2)
    try:
        _scenario(processes)
    finally:
        processes.stop()


def test_push_crosses_processes_with_redis(django_db_setup, redis_url, only_these_processes, fast_passwords):
    env = server_env()
    env["REDIS_URL"] = redis_url
    processes = RouterProcesses(env, servers=2)
    try:
        _scenario(processes)
    finally:
        processes.stop()
