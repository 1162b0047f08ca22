"""The documented production layout, for real: `scripts/web` with several gunicorn + uvicorn
web processes on one port and two background workers (`manage.py qcluster`), on the test
database (SQLite here, PostgreSQL in the second CI pass). Agents' desks are spread over the web
processes by the kernel; jobs come in over REST; every desk rings, every agent accepts over
its socket, and every job is closed; the offer that nobody answers expires once."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import time

import pytest
import websockets
from azure.communication.jobrouter.models import CloseJobOptions, RouterJob
from django.conf import settings

from routing.models import Job, JobStatus, Offer, OfferStatus, Worker
from tests import factories
from tests.conftest import ROOT, _free_port, _wait_for_port, make_clients, server_env, start_background_worker
from tests.personas import create_agent, session_cookie

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.postgres]

AGENTS = [f"agent-{i}" for i in range(6)]


@pytest.fixture
def layout(django_db_setup, only_these_processes, fast_passwords):
    env = {**server_env(), "JOBROUTER_WEB_WORKERS": "2"}
    env["PORT"] = str(_free_port())
    web = subprocess.Popen([str(ROOT / "scripts" / "web")], cwd=ROOT, env=env, start_new_session=True,
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    workers = [start_background_worker(env) for _ in range(2)]
    try:
        _wait_for_port(int(env["PORT"]), web)
        yield f"http://127.0.0.1:{env['PORT']}"
    finally:
        for proc in [web, *workers]:
            # SIGTERM to the leader only (as a service manager sends it): gunicorn and django-q2
            # stop their own children; what is left of the group afterwards is killed.
            proc.terminate()
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                pass
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            proc.wait()


async def _agent_desk(url: str, origin: str, cookie: str, opened: asyncio.Queue) -> tuple[str, str]:
    """One agent's desk: report it is open, accept the first offer that rings; returns
    (job id, assignment id)."""
    async with websockets.connect(url, additional_headers={"Cookie": cookie, "Origin": origin}) as ws:
        await opened.put(None)
        deadline = time.monotonic() + 30
        while True:
            message = json.loads(await asyncio.wait_for(ws.recv(), deadline - time.monotonic()))
            if message.get("type") == "desk" and message["offers"]:
                await ws.send(json.dumps({"action": "accept", "requestId": 1, "offerId": message["offers"][0]["offerId"]}))
            elif message.get("type") == "result" and message.get("ok"):
                return message["data"]["jobId"], message["data"]["assignmentId"]


async def _work_the_desks(endpoint: str, cookies: list[str], create_jobs) -> dict[str, str]:
    """Open every desk, create the jobs once all are open, let each desk accept what rings;
    returns {job id: assignment id}."""
    url = endpoint.replace("http://", "ws://") + "/ws/desk/"
    opened: asyncio.Queue = asyncio.Queue()
    desks = [asyncio.create_task(_agent_desk(url, endpoint, cookie, opened)) for cookie in cookies]
    for _ in cookies:
        await asyncio.wait_for(opened.get(), 20)
    await asyncio.to_thread(create_jobs)
    return dict(await asyncio.wait_for(asyncio.gather(*desks), 40))


def test_several_web_and_background_processes_ring_every_desk_and_close_every_job(layout):
    factories.queue_with_policy("q1", expires=600)
    factories.queue_with_policy("slow", expires=1)
    cookies = [session_cookie(create_agent(w, "q1", available=True)) for w in AGENTS]
    admin, client = make_clients(layout, settings.JOBROUTER_ACCESS_KEY)

    def create_jobs() -> None:
        for i in range(len(AGENTS)):
            client.upsert_job(f"call-{i}", RouterJob(channel_id="voice", queue_id="q1"))

    assigned = asyncio.run(_work_the_desks(layout, cookies, create_jobs))
    assert sorted(assigned) == [f"call-{i}" for i in range(len(AGENTS))]
    for job_id, assignment_id in assigned.items():
        client.complete_job(job_id, assignment_id)
        client.close_job(job_id, assignment_id, CloseJobOptions(disposition_code="Done"))
    assert Job.objects.filter(status=JobStatus.CLOSED).count() == len(AGENTS)

    # One offer nobody answers: one of the two background workers expires it, exactly once.
    create_agent("sleepy", "slow", available=True)
    client.upsert_job("unanswered", RouterJob(channel_id="voice", queue_id="slow"))
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline and not Offer.objects.filter(job_id="unanswered", status=OfferStatus.EXPIRED):
        time.sleep(0.1)
    assert Offer.objects.filter(job_id="unanswered", status=OfferStatus.EXPIRED).count() == 1
    assert Worker.objects.get(pk="sleepy").available_for_offers is False
