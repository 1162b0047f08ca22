"""Shared fixtures.

`client` / `admin_client`: official Azure SDK clients driving the real application in-process
(tests/inprocess.py), on the rolled-back `db` fixture, with a simulated clock (`router_clock`)
standing in for the timer loop. Most behaviour tests use these.

`live_client` / `live_admin_client`: the same SDK clients against a real daphne server and a real
background worker (`manage.py qcluster`, with the timer loop) running on the test database, for
the tests about the socket, processes and real timing."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Callable, Iterator, TypeVar
from urllib.parse import quote

import pytest

ROOT = Path(__file__).resolve().parent.parent
T = TypeVar("T")


# Modules whose tests also run against PostgreSQL in CI (scripts/test, second pass).
POSTGRES_MODULES = ("test_api_", "test_concurrency", "test_seed_", "test_timers", "test_inprocess_harness")


def pytest_collection_modifyitems(config, items):
    for item in items:
        if item.module.__name__.split(".")[-1].startswith(POSTGRES_MODULES):
            item.add_marker(pytest.mark.postgres)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _database_url(settings_dict: dict) -> str:
    engine = settings_dict["ENGINE"]
    if engine.endswith("sqlite3"):
        return f"sqlite:///{settings_dict['NAME']}"
    user = quote(settings_dict.get("USER") or "")
    password = quote(settings_dict.get("PASSWORD") or "")
    auth = f"{user}:{password}@" if password else (f"{user}@" if user else "")
    host = settings_dict.get("HOST") or "localhost"
    port = f":{settings_dict['PORT']}" if settings_dict.get("PORT") else ""
    return f"postgres://{auth}{host}{port}/{settings_dict['NAME']}"


def _wait_for_port(port: int, proc: subprocess.Popen, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited early with code {proc.returncode}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"server on port {port} did not start in {timeout}s")


class RouterProcesses:
    """The system under test: `servers` daphne processes and one background worker."""

    def __init__(self, env: dict[str, str], servers: int = 1) -> None:
        self.env = env
        self.ports = [_free_port() for _ in range(servers)]
        # All servers boot at once (each spends about half a second importing Django); then
        # wait until every one listens.
        self.web = [self._start_web(port) for port in self.ports]
        try:
            for port, proc in zip(self.ports, self.web):
                _wait_for_port(port, proc)
        except BaseException:
            for proc in self.web:
                _stop(proc)
            raise
        self.worker = self.start_worker()

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.ports[0]}"

    def endpoints(self) -> list[str]:
        return [f"http://127.0.0.1:{p}" for p in self.ports]

    def _start_web(self, port: int) -> subprocess.Popen:
        return subprocess.Popen(
            [sys.executable, "-m", "daphne", "-b", "127.0.0.1", "-p", str(port), "jobrouter.asgi:application"],
            cwd=ROOT, env=self.env, stdout=subprocess.DEVNULL, stderr=None,
        )

    def start_worker(self) -> subprocess.Popen:
        return start_background_worker(self.env)

    def stop_worker(self) -> None:
        _stop(self.worker)

    def ensure_worker(self) -> None:
        """Start the background worker again if a test paused it."""
        if self.worker.poll() is not None:
            self.worker = self.start_worker()

    def restart_worker(self) -> None:
        self.stop_worker()
        self.worker = self.start_worker()

    def stop(self) -> None:
        for proc in [*self.web, self.worker]:
            _stop(proc)


def start_background_worker(env: dict[str, str]) -> subprocess.Popen:
    """`manage.py qcluster` (django-q2 cluster + timer loop) in a session of its own, so that
    its whole process group can be killed."""
    return subprocess.Popen([sys.executable, "manage.py", "qcluster"], cwd=ROOT, env=env, start_new_session=True,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def _stop(proc: subprocess.Popen) -> None:
    """SIGTERM (as a service manager sends it), then SIGKILL to whatever is left: the process,
    or its whole group when it leads one."""
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    try:
        os.killpg(proc.pid, signal.SIGKILL)  # a group of that id exists only if it led one
    except (ProcessLookupError, PermissionError):
        pass


def server_env() -> dict[str, str]:
    from django.conf import settings
    from django.db import connection

    env = dict(os.environ)
    env["DATABASE_URL"] = _database_url(connection.settings_dict)
    env["JOBROUTER_ACCESS_KEY"] = settings.JOBROUTER_ACCESS_KEY
    # Sessions made by the test process (force_login) must verify in the servers.
    env["DJANGO_SECRET_KEY"] = settings.SECRET_KEY
    env["JOBROUTER_TIMER_POLL_SECONDS"] = "0.05"
    # Function and webhook rules in tests talk to plain-http servers on loopback.
    env["JOBROUTER_ALLOW_HTTP_WEBHOOKS"] = "1"
    env["JOBROUTER_RULE_TIMEOUT_SECONDS"] = "2"
    env.setdefault("DJANGO_ALLOWED_HOSTS", "*")
    return env


@pytest.fixture(scope="session")
def router(django_db_setup, django_db_blocker) -> Iterator[RouterProcesses]:
    """One daphne server and one background worker for the whole session, on the test DB."""
    global _SESSION_ROUTER
    with django_db_blocker.unblock():
        processes = RouterProcesses(server_env())
    _SESSION_ROUTER = processes
    try:
        yield processes
    finally:
        _SESSION_ROUTER = None
        processes.stop()


_SESSION_ROUTER: RouterProcesses | None = None


@pytest.fixture(autouse=True)
def _background_worker_only_for_live_tests(request):
    """Once a live test has started the session's servers, their background worker keeps
    polling the test database. A transactional test that does not use them would have its owed
    work and timers claimed by that process at any moment, so the worker is paused for it, and
    started again for the next test that asks for `router`."""
    router = _SESSION_ROUTER
    if router is not None:
        marker = request.node.get_closest_marker("django_db")
        transactional = bool(marker and marker.kwargs.get("transaction")) or "transactional_db" in request.fixturenames
        if "router" in request.fixturenames and "only_these_processes" not in request.fixturenames:
            router.ensure_worker()
        elif transactional:
            router.stop_worker()
    yield


@pytest.fixture
def access_key() -> str:
    from django.conf import settings

    return settings.JOBROUTER_ACCESS_KEY


def make_clients(endpoint: str, key: str):
    from azure.communication.jobrouter import JobRouterAdministrationClient, JobRouterClient
    from azure.core.credentials import AzureKeyCredential

    # retry_total=0: a server error must fail the test, not be retried into a pass.
    return (
        JobRouterAdministrationClient(endpoint, AzureKeyCredential(key), retry_total=0),
        JobRouterClient(endpoint, AzureKeyCredential(key), retry_total=0),
    )


@pytest.fixture
def live_admin_client(router, transactional_db, access_key):
    return make_clients(router.endpoint, access_key)[0]


@pytest.fixture
def live_client(router, transactional_db, access_key):
    return make_clients(router.endpoint, access_key)[1]


@pytest.fixture
def router_clock(db, settings, monkeypatch):
    """The in-process router's clock and environment (what server_env() gives the live server).

    The clock starts at the real time and ticks (so rows keep their order); tests move it with
    `router_clock.advance(...)` or through tests.inprocess.eventually / holds_for, which run
    each timer at its due time."""
    import time_machine
    from django.utils import timezone
    from django_q.conf import Conf

    from tests.inprocess import RouterClock, clock_in_use

    settings.JOBROUTER_RULE_TIMEOUT_SECONDS = 2
    settings.JOBROUTER_ALLOW_HTTP_WEBHOOKS = True
    # Function and webhook rules in tests talk to plain-http servers on loopback (what
    # JOBROUTER_ALLOW_HTTP_WEBHOOKS=1 sets up in the server processes).
    monkeypatch.setenv("OAUTHLIB_INSECURE_TRANSPORT", "1")
    # django-q tasks (classification with remote rules) run at once in this process, in the
    # request that queues them, instead of in a cluster process.
    monkeypatch.setattr(Conf, "SYNC", True)
    with time_machine.travel(timezone.now(), tick=True) as traveller:
        with clock_in_use(RouterClock(traveller)) as clock:
            yield clock


@pytest.fixture
def inprocess_clients(router_clock, access_key):
    from tests.inprocess import make_inprocess_clients

    return make_inprocess_clients(access_key)


@pytest.fixture
def admin_client(inprocess_clients):
    return inprocess_clients[0]


@pytest.fixture
def client(inprocess_clients):
    return inprocess_clients[1]


def eventually(check: Callable[[], T], *, timeout: float = 10.0, interval: float = 0.05) -> T:
    """Poll `check` until it returns a truthy value (what an asynchronous effect looks like from
    outside); fail with the last value after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    last: T = check()
    while not last:
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout}s (last value: {last!r})")
        time.sleep(interval)
        last = check()
    return last


@pytest.fixture
def http_endpoint():
    """A real local HTTP server answering function and webhook rules (tests/remote_endpoint.py)."""
    from tests.remote_endpoint import FakeEndpoint

    endpoint = FakeEndpoint().start()
    try:
        yield endpoint
    finally:
        endpoint.stop()


@pytest.fixture
def only_these_processes(request):
    """The session's shared server processes run on the same database; their background worker
    would claim this test's timers (and, configured without Redis, announce them where a Redis
    deployment's desks cannot hear). Pause it for the test."""
    router = request.getfixturevalue("router")
    router.stop_worker()
    yield  # started again by the next test that asks for `router`

# Personas for permission tests (tests/personas.py), available to every module.
from tests.personas import agents, customer, fast_passwords, outsider, supervisor  # noqa: E402,F401


@pytest.fixture(scope="session", autouse=True)
def _close_connection_pools(django_db_setup, django_db_blocker):
    """PostgreSQL runs with psycopg's connection pool (jobrouter/settings.py): its idle
    connections would keep the test database open and stop pytest-django from dropping it, so
    the pools are closed first (this fixture's teardown runs before django_db_setup's)."""
    yield
    from django.db import connections

    with django_db_blocker.unblock():
        for connection in connections.all():
            if getattr(connection, "pool", None) is not None:
                connection.close_pool()
