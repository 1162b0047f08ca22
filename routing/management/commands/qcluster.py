"""`manage.py qcluster`: django-q2's cluster plus the router's timer loop and webhook delivery loop.

Replaces django_q's command of the same name (the `routing` app is listed first). The cluster
runs in its own processes; this process runs `routing.services.timers.run_timer_loop` until the
cluster stops.

Behaves like a service (hardening issue, item 6):
- SIGTERM or SIGINT stops the timer loop and the cluster within `STOP_GRACE_SECONDS` (4 s):
  the cluster is asked to stop, and whatever is still running after the grace period is killed.
  A task killed mid-way is not lost: django-q2's ORM/Redis broker hands it out again after
  `Q_CLUSTER["retry"]` seconds, and router work owed by it is a timer row the loop claims again.
- On Linux, every process of the cluster dies with its parent (PR_SET_PDEATHSIG), so a
  `kill -9` of this process leaves no orphaned workers behind to compete with a restarted one.
- A forked process never uses a database connection (or a psycopg pool of them) inherited from
  its parent: two processes on one socket corrupt each other's transactions ("connection in
  transaction status INTRANS"). It opens its own.
"""

from __future__ import annotations

import ctypes
import logging
import os
import signal
import sys
import threading
from typing import Callable

from django.conf import settings
from django.db import connections
from django_q.cluster import Cluster
from django_q.management.commands.qcluster import Command as QclusterCommand

from routing.services.delivery import run_delivery_loop
from routing.services.timers import run_timer_loop

logger = logging.getLogger("routing.timers")

STOP_GRACE_SECONDS = 4.0
_PR_SET_PDEATHSIG = 1


def _load_prctl() -> Callable[..., int] | None:
    """libc's prctl, looked up once in the parent (a forked child must not spawn `ldconfig`, as
    `ctypes.util.find_library` would); None off Linux."""
    if not sys.platform.startswith("linux"):
        return None
    return ctypes.CDLL(None, use_errno=True).prctl


_PRCTL = _load_prctl()


# The pid of the process about to fork, recorded before the fork: a child scheduled late may
# find its parent already dead, and then getppid() would name init, not the parent.
_forking_pid = 0


def _before_fork() -> None:
    global _forking_pid
    _forking_pid = os.getpid()


def die_with_parent() -> None:
    """In a forked child: ask the kernel to SIGKILL this process when its parent dies (Linux
    prctl PR_SET_PDEATHSIG; a no-op elsewhere). Exits at once if the parent is already gone."""
    if _PRCTL is None:
        return
    _PRCTL(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    if os.getppid() != _forking_pid:  # the parent died before prctl took effect
        os._exit(1)


# Inherited connections and pools are kept referenced, never closed or collected, in a forked
# child: closing one would end the parent's session on the shared socket.
_INHERITED: list[object] = []


def forget_inherited_connections() -> None:
    """In a forked child: drop (without closing) the parent's database connections and pools."""
    for conn in connections.all(initialized_only=True):
        if conn.connection is not None:
            _INHERITED.append(conn.connection)
            conn.connection = None
        pools = getattr(type(conn), "_connection_pools", None)
        if pools:
            _INHERITED.extend(pools.values())
            pools.clear()


def _after_fork_in_child() -> None:
    die_with_parent()
    forget_inherited_connections()


class Command(QclusterCommand):
    help = "Starts the django-q2 cluster and the router timer loop (offer expiry, delayed closes)."

    def add_arguments(self, parser):
        super().add_arguments(parser)
        parser.add_argument("--no-timers", action="store_true", help="Run only the django-q2 cluster.")

    def handle(self, *args, **options):
        settings.SECRET_KEY  # noqa: B018 - django-q2 signs tasks with it; fail early if unset
        os.register_at_fork(before=_before_fork, after_in_child=_after_fork_in_child)
        connections.close_all()
        cluster = Cluster()
        stopping = threading.Event()
        # Cluster() installed handlers that stop it synchronously inside the handler (blocking the
        # timer loop until every task finishes); ours only flags the stop and lets `_stop` bound it.
        signal.signal(signal.SIGTERM, lambda signum, frame: stopping.set())
        signal.signal(signal.SIGINT, lambda signum, frame: stopping.set())
        cluster.start()
        if options.get("run_once"):
            cluster.stop()
            return
        try:
            if options.get("no_timers"):
                while not stopping.wait(0.2) and cluster.sentinel.is_alive():
                    pass
            else:
                should_stop = lambda: stopping.is_set() or not cluster.sentinel.is_alive()  # noqa: E731
                # Webhook delivery beside the timer loop: its HTTP calls never hold up a timer.
                threading.Thread(
                    target=run_delivery_loop, kwargs={"should_stop": should_stop}, name="delivery loop", daemon=True
                ).start()
                run_timer_loop(should_stop=should_stop)
        finally:
            _stop(cluster)


def _stop(cluster: Cluster) -> None:
    """Stop the cluster: ask nicely, then kill the sentinel (its children follow it, see
    `die_with_parent`) once `STOP_GRACE_SECONDS` have passed."""
    sentinel = cluster.sentinel
    if sentinel is None or not sentinel.is_alive():
        return
    if cluster.stop_event is not None:
        cluster.stop_event.set()
    sentinel.join(STOP_GRACE_SECONDS)
    if sentinel.is_alive():
        logger.warning("background cluster did not stop within %.0f s; killing it", STOP_GRACE_SECONDS)
        sentinel.kill()
        sentinel.join(1.0)
