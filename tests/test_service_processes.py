"""The background worker behaves like a service (hardening issue, item 6): SIGTERM stops it and
all its processes within 5 s, and a `kill -9` of its parent takes every child with it, so a
restarted worker never competes with orphans of the old one."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import ROOT, eventually, server_env

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
    proc = subprocess.Popen([sys.executable, "manage.py", "qcluster"], cwd=ROOT, env=server_env(),
                            start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
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


def test_a_killed_background_worker_takes_its_children_with_it(background_worker):
    children = _descendants(background_worker.pid)
    os.kill(background_worker.pid, signal.SIGKILL)
    background_worker.wait()
    eventually(lambda: not _alive(children), timeout=5)


def test_background_processes_never_share_an_inherited_database_connection(background_worker):
    # The worker process touched the database (timer loop) before forking its task workers; a
    # child that kept using the parent's pooled connection corrupted both sides' transactions.
    from django_q.models import Task
    from django_q.tasks import async_task

    ids = [async_task("routing.tasks.classify_job", f"missing-{i}") for i in range(40)]
    eventually(lambda: Task.objects.filter(id__in=ids).count() == len(ids), timeout=30)
    assert Task.objects.filter(id__in=ids, success=True).count() == len(ids)
