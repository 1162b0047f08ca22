"""Which pages may open the websockets (jobrouter/origins.py). A browser sends an agent's session
cookie with a websocket opened by any page, so the `Origin` check is what keeps a foreign page
from driving a logged-in desk. Under the default `DJANGO_ALLOWED_HOSTS=*` Channels'
AllowedHostsOriginValidator accepted every Origin."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
from asgiref.sync import sync_to_async
from channels.testing import WebsocketCommunicator
from django.contrib.auth.models import User

from jobrouter.asgi import application
from jobrouter.origins import SAME_ORIGIN, websocket_origins
from routing.services.workers import worker_link_user
from tests import factories
from tests.conftest import ROOT
from tests.personas import session_cookie

pytestmark = [pytest.mark.django_db(transaction=True)]

NEWCOMER = "http://127.0.0.1:8000"  # scripts/start's address, opened in a browser


@pytest.fixture
def agent(db) -> User:
    factories.queue_with_policy("q1")
    user = User.objects.create_user("ann")
    factories.worker("ann")
    worker_link_user(worker_id="ann", user=user)
    return user


async def _opens(user: User, *, origin: str | None, host: str) -> bool:
    headers = [(b"host", host.encode()), (b"cookie", (await sync_to_async(session_cookie)(user)).encode())]
    if origin is not None:
        headers.append((b"origin", origin.encode()))
    socket = WebsocketCommunicator(application, "/ws/desk/", headers=headers)
    connected, _ = await socket.connect()
    await socket.disconnect()
    return connected


@pytest.mark.asyncio
async def test_with_any_host_allowed_a_foreign_page_cannot_open_a_desk_but_the_served_page_can(agent, settings):
    settings.ALLOWED_HOSTS, settings.DEBUG, settings.JOBROUTER_ALLOWED_ORIGINS = ["*"], False, []
    assert not await _opens(agent, origin="https://evil.example", host="127.0.0.1:8000")
    assert not await _opens(agent, origin="http://127.0.0.1:8001", host="127.0.0.1:8000")
    assert not await _opens(agent, origin=None, host="127.0.0.1:8000")
    assert await _opens(agent, origin=NEWCOMER, host="127.0.0.1:8000")
    # Behind a TLS proxy that keeps the Host header: default ports on both sides.
    assert await _opens(agent, origin="https://desk.example.com", host="desk.example.com")
    assert await _opens(agent, origin="https://desk.example.com", host="desk.example.com:443")


@pytest.mark.asyncio
async def test_named_hosts_are_the_default_allowed_origins(agent, settings):
    settings.ALLOWED_HOSTS, settings.DEBUG, settings.JOBROUTER_ALLOWED_ORIGINS = [".example.com"], False, []
    assert await _opens(agent, origin="https://desk.example.com", host="desk.example.com")
    assert not await _opens(agent, origin="https://example.org", host="desk.example.com")
    assert not await _opens(agent, origin="https://evil.test", host="evil.test")  # same-origin is not enough here


@pytest.mark.asyncio
async def test_explicit_allowed_origins_replace_the_default(agent, settings):
    settings.ALLOWED_HOSTS, settings.DEBUG = ["*"], False
    settings.JOBROUTER_ALLOWED_ORIGINS = ["https://desk.example.com"]
    assert await _opens(agent, origin="https://desk.example.com", host="10.0.0.5:8000")  # a proxy rewrote Host
    assert not await _opens(agent, origin="http://desk.example.com", host="10.0.0.5:8000")
    assert not await _opens(agent, origin=NEWCOMER, host="127.0.0.1:8000")


@pytest.mark.asyncio
async def test_debug_mode_with_any_host_accepts_any_origin(agent, settings):
    settings.ALLOWED_HOSTS, settings.DEBUG, settings.JOBROUTER_ALLOWED_ORIGINS = ["*"], True, []
    assert await _opens(agent, origin="http://localhost:5173", host="127.0.0.1:8000")


def test_default_origins_follow_the_hosts_and_never_star_in_production():
    assert websocket_origins(configured=[], allowed_hosts=["*"], debug=False) == [SAME_ORIGIN]
    assert websocket_origins(configured=[], allowed_hosts=["*"], debug=True) == ["*"]
    assert websocket_origins(configured=[], allowed_hosts=["a.example", "*"], debug=False) == [SAME_ORIGIN]
    assert websocket_origins(configured=[], allowed_hosts=["a.example"], debug=True) == ["a.example"]
    assert websocket_origins(configured=["https://b.example"], allowed_hosts=["*"], debug=False) == ["https://b.example"]


def test_allowing_every_origin_outside_debug_mode_fails_at_startup():
    env = {**os.environ, "JOBROUTER_ALLOWED_ORIGINS": "*", "DJANGO_DEBUG": "false"}
    run = subprocess.run([sys.executable, "-c", "import jobrouter.settings"], cwd=ROOT, env=env,
                         capture_output=True, text=True, timeout=60)
    assert run.returncode != 0 and "JOBROUTER_ALLOWED_ORIGINS=*" in run.stderr
    env["DJANGO_DEBUG"] = "true"
    assert subprocess.run([sys.executable, "-c", "import jobrouter.settings"], cwd=ROOT, env=env,
                          timeout=60).returncode == 0
