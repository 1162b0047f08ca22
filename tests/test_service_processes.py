"""The background worker behaves like a service (hardening issue, item 6): SIGTERM stops it and
all its processes within 5 s, and a `kill -9` of its parent takes every child with it, so a
restarted worker never competes with orphans of the old one."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from pathlib import Path

import pytest

from tests import factories
from tests.conftest import ROOT, eventually, server_env, start_background_worker

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.postgres]


def _children() -> dict[int, int]:
    """{pid: parent pid} of every live process, from /proc."""
    table = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            fields = stat.rsplit(")", 1)[1].split()
            if fields[0] != "Z":
                table[int(entry.name)] = int(fields[1])
    return table


def _descendants(pid: int) -> set[int]:
    table = _children()
    found, frontier = set(), {pid}
    while frontier:
        frontier = {child for child, parent in table.items() if parent in frontier} - found
        found |= frontier
    return found


def _alive(pids: set[int]) -> set[int]:
    table = _children()
    return {pid for pid in pids if pid in table}


@pytest.fixture
def background_worker(django_db_setup, only_these_processes):
    proc = start_background_worker(server_env())
    try:
        # The sentinel, the monitor, the pusher and two task workers.
        eventually(lambda: len(_descendants(proc.pid)) >= 5, timeout=30)
        yield proc
    finally:
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        proc.wait()


def test_sigterm_stops_the_background_worker_and_its_children_within_five_seconds(background_worker):
    children = _descendants(background_worker.pid)
    started = time.monotonic()
    background_worker.send_signal(signal.SIGTERM)
    background_worker.wait(timeout=10)
    eventually(lambda: not _alive(children), timeout=10)
    assert time.monotonic() - started < 5.0
    assert background_worker.returncode == 0


def _describe(pids: set[int]) -> list[str]:
    out = []
    for pid in pids:
        try:
            stat = Path(f"/proc/{pid}/stat").read_text()
            cmd = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()[:80]
        except OSError:
            continue
        out.append(f"{pid} {stat.rsplit(')', 1)[1].split()[:2]} {cmd}")
    return out


def test_a_killed_background_worker_takes_its_children_with_it(background_worker):
    children = _descendants(background_worker.pid)
    os.kill(background_worker.pid, signal.SIGKILL)
    background_worker.wait()
    try:
        eventually(lambda: not _alive(children), timeout=5)
    except AssertionError:
        raise AssertionError(f"still alive: {_describe(_alive(children))}") from None


def test_background_processes_never_share_an_inherited_database_connection(background_worker):
    # The worker process touched the database (timer loop) before forking its task workers; a
    # child that kept using the parent's pooled connection corrupted both sides' transactions.
    from django_q.models import Task
    from django_q.tasks import async_task

    ids = [async_task("routing.tasks.classify_job", f"missing-{i}") for i in range(40)]
    eventually(lambda: Task.objects.filter(id__in=ids).count() == len(ids), timeout=30)
    assert Task.objects.filter(id__in=ids, success=True).count() == len(ids)


@pytest.mark.parametrize("web_workers", ["1", "2"])
def test_sigterm_stops_the_web_processes_within_five_seconds_with_a_desk_open(django_db_setup, fast_passwords,
                                                                              web_workers):
    import asyncio

    import websockets

    from tests.conftest import _free_port, _wait_for_port
    from tests.personas import create_agent, session_cookie

    factories.queue_with_policy("q1")
    cookie = session_cookie(create_agent("agent-1", "q1", available=True))
    env = {**server_env(), "JOBROUTER_WEB_WORKERS": web_workers, "PORT": str(_free_port())}
    web = subprocess.Popen([str(ROOT / "scripts" / "web")], cwd=ROOT, env=env, start_new_session=True,
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        _wait_for_port(int(env["PORT"]), web)
        children = _descendants(web.pid)

        async def terminate_with_a_desk_open() -> float:
            origin = f"http://127.0.0.1:{env['PORT']}"
            async with websockets.connect(f"ws://127.0.0.1:{env['PORT']}/ws/desk/",
                                          additional_headers={"Cookie": cookie, "Origin": origin}) as desk:
                assert json.loads(await desk.recv())["type"] == "desk"  # the desk is live
                started = time.monotonic()
                web.send_signal(signal.SIGTERM)
                await asyncio.to_thread(web.wait, 10)
                return time.monotonic() - started

        elapsed = asyncio.run(terminate_with_a_desk_open())
        eventually(lambda: not _alive(children), timeout=5)
        assert elapsed < 5.0
    finally:
        try:
            os.killpg(web.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        web.wait()
