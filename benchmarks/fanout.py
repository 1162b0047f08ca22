#!/usr/bin/env python
"""Fan-out benchmark of the live desk path: how offer-on-desk latency, pushed frames and web
CPU scale with the number of connected agent desks.

    python benchmarks/fanout.py --quick                        # CI: 50 desks, 2 jobs/s, 15 s
    python benchmarks/fanout.py                                # 50x2, 200x2, 200x10, 1000x2; 60 s each
    python benchmarks/fanout.py --desks 50,200 --rate 2,10     # every combination
    python benchmarks/fanout.py --scenarios 1000x2 --duration 30
    python benchmarks/fanout.py --redis auto --web-processes 2 # scale-out: 2 daphnes + Redis layer

Per scenario (N desks, R jobs/s, D seconds), in a process of its own (details in
benchmarks/README.md, "Fan-out (desks)"):

1. a throw-away SQLite database, `migrate`, a generated access key, the real server processes
   (`python -m daphne ... jobrouter.asgi:application`, one or more, and `manage.py qcluster`),
   as benchmarks/run.py does (its helpers are imported);
2. a distribution policy and queue `q1` over signed REST; N agents (users bulk-created with one
   known password hash, workers serving q1 on channel voice, capacity 1, available; each logged
   in by a session created with Django's SessionStore) and 5 staff supervisors;
3. a client process (asyncio + `websockets`) opens N `/ws/desk/` and 5 `/ws/supervisor/`
   sockets with the session cookie, like the browser page (refresh every 20 s); each desk
   accepts the offers it is shown, completes after a think time and closes;
4. signed `PATCH /routing/jobs/{id}` at R jobs/s for D seconds (open loop), then a drain;
5. "deaf desks": the pages stop acting and refreshing, the server's stale pushes are waited
   out (at most 15 s), then a job no worker can take enters q1; desks that receive no frame
   showing q1's new length within 5 s are counted;
6. offer-visible latency (PATCH sent -> offer frame at the offered desk), lag growth, frames
   and bytes per job, web CPU per job, PATCH / accept round trips, deaf desks and supervisors.

A summary table of every scenario is printed at the end. Exit status 0 when every scenario
completed (all desks connected, every job created, no process died, every phase within its
time bound), 1 otherwise (the table still shows what was measured), 130 when interrupted.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import queue
import random
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from contextlib import closing
from dataclasses import asdict, dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any, Callable

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from benchmarks.run import (  # noqa: E402
    BenchError,
    Servers,
    SignedClient,
    _free_port,
    _machine_busy_cpu,
    api,
    percentile,
    prepare_environment,
    process_group_cpu,
    setup_django,
)

ROUTER_APP = "jobrouter.asgi:application"
QUEUE_ID = "q1"
POLICY_ID = "fanout-longest-idle"
DEFAULT_SCENARIOS = "50x2,200x2,200x10,1000x2"
# Client-side bounds (seconds).
CONNECT_TIMEOUT = 30  # TCP + websocket handshake
FIRST_FRAME_TIMEOUT = 30  # the state the server sends on connect
ACTION_TIMEOUT = 60  # accept / complete / close result
COMMAND_TIMEOUT = 30  # the benchmark's commands to a client process


# --------------------------------------------------------------------------------------------------
# Configuration
# --------------------------------------------------------------------------------------------------


@dataclass
class Scenario:
    desks: int
    rate: float  # jobs per second
    duration: float  # seconds of load
    supervisors: int = 5
    web_processes: int = 1
    redis: str | None = None  # a URL, "auto" (start redis-server), or None (in-memory layer)
    client_processes: int = 1
    think: tuple[float, float] = (0.5, 1.0)
    refresh: float = 20.0  # seconds between a page's {"action": "refresh"} (0: never)
    drain: float = 30.0  # at most this long after the load for offers still to show
    deaf_window: float = 5.0
    connect_concurrency: int = 20
    settings: str = "jobrouter.settings"
    keep: bool = False

    @property
    def label(self) -> str:
        return f"{self.desks} desks @ {self.rate:g}/s"

    @property
    def connect_budget(self) -> float:
        return 60 + 0.3 * self.desks

    @property
    def hard_timeout(self) -> float:
        """Backstop for the whole scenario process (each phase has its own, smaller bound)."""
        return 240 + self.connect_budget + self.duration + self.drain + 120


def parse_args(argv: list[str] | None) -> tuple[argparse.Namespace, list[Scenario]]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="CI run: 50 desks, 2 jobs/s, 15 s")
    parser.add_argument("--scenarios", help=f"comma-separated DESKSxRATE list (default {DEFAULT_SCENARIOS})")
    parser.add_argument("--desks", help="comma-separated desk counts (with --rate: every combination)")
    parser.add_argument("--rate", help="comma-separated job rates per second (with --desks: every combination)")
    parser.add_argument("--duration", type=float, help="seconds of load per scenario (default 60, quick 15)")
    parser.add_argument("--drain", type=float, help="max seconds after the load for offers to show (default 30, quick 10)")
    parser.add_argument("--supervisors", type=int, default=5, help="supervisor sockets (staff users)")
    parser.add_argument("--web-processes", type=int, default=1, help="daphne processes (desks and PATCHes spread over them)")
    parser.add_argument("--redis", help="REDIS_URL for the channel layer (and cache / task broker) of the servers; "
                        "'auto' starts a private redis-server per scenario")
    parser.add_argument("--client-processes", type=int, default=1, help="websocket client processes (default 1)")
    parser.add_argument("--think", default="0.5,1.0", help="agent think time before complete, MIN,MAX seconds")
    parser.add_argument("--refresh", type=float, default=20.0, help="seconds between page refreshes, as the browser "
                        "page does (0: off)")
    parser.add_argument("--connect-concurrency", type=int, default=20, help="desks being set up at once")
    parser.add_argument("--settings", default="jobrouter.settings", help="Django settings module for the servers")
    parser.add_argument("--json", help="also write every scenario's figures to this JSON file")
    parser.add_argument("--keep", action="store_true", help="keep each scenario's temp directory (database, logs)")
    parser.add_argument("--_scenario", help=argparse.SUPPRESS)  # internal: run one scenario
    parser.add_argument("--_client", help=argparse.SUPPRESS)  # internal: one websocket client process
    args = parser.parse_args(argv)
    if args._scenario or args._client:
        return args, []
    if args.desks or args.rate:
        desks = [int(x) for x in (args.desks or "50").split(",")]
        rates = [float(x) for x in (args.rate or "2").split(",")]
        pairs = [(d, r) for d in desks for r in rates]
    else:
        spec = args.scenarios or ("50x2" if args.quick else DEFAULT_SCENARIOS)
        pairs = []
        for item in spec.split(","):
            d, _, r = item.strip().partition("x")
            pairs.append((int(d), float(r or 2)))
    lo, _, hi = args.think.partition(",")
    think = (float(lo), float(hi or lo))
    duration = args.duration or (15.0 if args.quick else 60.0)
    drain = args.drain if args.drain is not None else (10.0 if args.quick else 30.0)
    scenarios = [
        Scenario(desks=d, rate=r, duration=duration, supervisors=args.supervisors, web_processes=args.web_processes,
                 redis=args.redis, client_processes=max(1, args.client_processes), think=think, refresh=args.refresh,
                 drain=drain, connect_concurrency=args.connect_concurrency, settings=args.settings, keep=args.keep)
        for d, r in pairs
    ]
    return args, scenarios


# --------------------------------------------------------------------------------------------------
# The websocket client process (no Django; only the standard library and `websockets`)
# --------------------------------------------------------------------------------------------------


def offers_in(frame: Any) -> list[dict] | None:
    """The offers a pushed frame shows, or None when it carries no offer list.

    Today the desk gets `{"type": "state", "offers": [...], "assignments": [...], ...}`; a
    per-topic protocol may instead send a worker/desk frame (`{"worker": {"offers": [...]}}` or
    `{"desk": {...}}`, perhaps with a `seq`) beside queue frames. Any frame with an `offers`
    list at the top level or under `worker` / `desk` counts. Adapt here if the protocol changes."""
    if not isinstance(frame, dict):
        return None
    for holder in (frame, frame.get("worker"), frame.get("desk")):
        if isinstance(holder, dict) and isinstance(holder.get("offers"), list):
            return [o for o in holder["offers"] if isinstance(o, dict)]
    return None


def shows_queue_length(frame: Any, queue_id: str, length: int, depth: int = 0) -> bool:
    """Whether a frame shows queue `queue_id` with at least `length` jobs: the desk's `queues`
    panel and the supervisor overview today ({"id", "length", ...} entries); a per-topic queue
    frame ({"type": "queue", "id"/"queueId", "length"} or nested under "queue") would count too."""
    if depth > 4:
        return False
    if isinstance(frame, dict):
        n = frame.get("length")
        if isinstance(n, int) and str(frame.get("id", frame.get("queueId"))) == queue_id and n >= length:
            return True
        children = frame.values()
    elif isinstance(frame, list):
        children = frame
    else:
        return False
    return any(shows_queue_length(v, queue_id, length, depth + 1) for v in children if isinstance(v, (dict, list)))


class Conn:
    """One page's websocket (a desk or a supervisor view), reconnecting like static/js/live.js."""

    def __init__(self, kind: str, index: int, spec: dict) -> None:
        self.kind = kind
        self.index = index
        self.url: str = spec["url"]
        self.origin: str = spec["origin"]
        self.cookie: str = spec["cookie"]
        self.worker: str | None = spec.get("worker")
        self.ws: Any = None
        self.frames = 0
        self.bytes = 0
        self.connects = 0
        self.failures = 0
        self.last_error = ""
        self.connect_s: float | None = None  # first attempt -> state frame received
        self.settled: Any = None  # asyncio.Event: connected (first state received) or first attempt failed
        self.pending: dict[str, Any] = {}
        self.next_id = 1
        self.seen: set[str] = set()
        self.todo: Any = None  # asyncio.Queue of offers to act on
        self.frame_times: list[float] = []  # supervisors only
        self.after_mark: list[float] = []  # first frame times after the deaf-check mark
        self.saw_change: float | None = None  # first frame after the mark that shows the probe change


class DeskClients:
    def __init__(self, config: dict) -> None:
        import asyncio

        self.cfg = config
        self.think = tuple(config["think"])
        self.refresh = float(config["refresh"])
        self.conns = [Conn("desk", i, d) for i, d in enumerate(config["desks"])]
        self.conns += [Conn("supervisor", i, s) for i, s in enumerate(config["supervisors"])]
        for c in self.conns:
            c.settled = asyncio.Event()
            c.todo = asyncio.Queue()
        self.offers_first: dict[str, list] = {}  # job -> [t_monotonic, t_wall, worker, desks that showed it]
        self.rtt: dict[str, list[float]] = {"accept": [], "complete": [], "close": []}
        self.errors: Counter[str] = Counter()
        self.acting = True
        self.refreshing = True
        self.refreshes = 0
        self.lifecycles = 0
        self.in_flight = 0
        self.mark_t: float | None = None
        self.probe: tuple[str, int] = ("", 0)  # (queue id, length) a frame must show after the mark
        self.lags: list[tuple[float, float]] = []
        self.stopping = False

    # -- frames -----------------------------------------------------------------------------------

    def on_frame(self, conn: Conn, raw: str | bytes, t: float) -> None:
        conn.frames += 1
        conn.bytes += len(raw)
        marked = self.mark_t is not None and t >= self.mark_t
        if marked and len(conn.after_mark) < 5:
            conn.after_mark.append(t)
        if conn.kind == "supervisor":
            conn.frame_times.append(t)
            if not marked or conn.saw_change is not None:
                return  # the overview is only counted, not parsed
        try:
            msg = json.loads(raw)
        except ValueError:
            self.errors["frame: not JSON"] += 1
            return
        if marked and conn.saw_change is None and shows_queue_length(msg, *self.probe):
            conn.saw_change = t
        if conn.kind == "desk" and isinstance(msg, dict):
            self.desk_frame(conn, msg, t)

    def desk_frame(self, conn: Conn, msg: dict, t: float) -> None:
        if msg.get("type") == "result":
            fut = conn.pending.pop(str(msg.get("requestId")), None)
            if fut is not None and not fut.done():
                fut.set_result((t, msg))
        for offer in offers_in(msg) or ():
            job = offer.get("jobId")
            if not job or job in conn.seen:
                continue
            conn.seen.add(job)
            first = self.offers_first.get(job)
            if first is None:
                self.offers_first[job] = [t, time.time(), conn.worker, 1]
            else:
                first[3] += 1  # shown on more than one desk
            if self.acting:
                conn.todo.put_nowait(offer)

    # -- connections ------------------------------------------------------------------------------

    async def open(self, conn: Conn, gate: Any) -> Any:
        """Connect and read the state sent on connect. Only a page's first connection waits for
        the gate, so at most `connect_concurrency` desks are being set up at once."""
        import asyncio

        from websockets.asyncio.client import connect

        first = conn.connects == 0
        if first:
            await gate.acquire()
        try:
            t0 = time.monotonic()
            ws = await connect(
                conn.url, additional_headers={"Cookie": conn.cookie}, origin=conn.origin,  # type: ignore[arg-type]
                open_timeout=CONNECT_TIMEOUT, ping_interval=None, close_timeout=2, max_size=None,
            )
            conn.connects += 1
            conn.ws = ws
            try:
                raw = await asyncio.wait_for(ws.recv(), FIRST_FRAME_TIMEOUT)
            except BaseException:
                await self.drop(conn, ws)
                raise
            self.on_frame(conn, raw, time.monotonic())
            if conn.connect_s is None:
                conn.connect_s = time.monotonic() - t0
            return ws
        finally:
            if first:
                gate.release()

    async def drop(self, conn: Conn, ws: Any) -> None:
        import asyncio

        conn.ws = None
        for fut in conn.pending.values():
            if not fut.done():
                fut.set_exception(ConnectionError("socket closed"))
        conn.pending.clear()
        try:
            await asyncio.wait_for(ws.close(), 3)
        except Exception:  # noqa: BLE001 - already gone
            pass

    async def run_conn(self, conn: Conn, gate: Any) -> None:
        """Keep the page connected: reconnect with back-off (0.5 s doubling up to 10 s), as
        static/js/live.js does."""
        import asyncio

        from websockets.exceptions import WebSocketException

        attempt = 0
        while not self.stopping:
            ws = None
            try:
                ws = await self.open(conn, gate)
                conn.settled.set()
                attempt = 0
                async for raw in ws:
                    self.on_frame(conn, raw, time.monotonic())
                conn.last_error = f"closed by server ({ws.close_code})"
            except (OSError, asyncio.TimeoutError, WebSocketException) as exc:
                conn.last_error = f"{type(exc).__name__}: {exc}"[:200]
            finally:
                if ws is not None:
                    await self.drop(conn, ws)
            if self.stopping:
                break
            conn.failures += 1
            conn.settled.set()
            await asyncio.sleep(min(10.0, 0.5 * 2 ** attempt))
            attempt += 1

    async def request(self, conn: Conn, body: dict) -> tuple[float, dict] | None:
        import asyncio

        from websockets.exceptions import WebSocketException

        ws = conn.ws
        if ws is None:
            return None
        request_id = f"{conn.index}-{conn.next_id}"
        conn.next_id += 1
        fut = asyncio.get_running_loop().create_future()
        conn.pending[request_id] = fut
        try:
            await ws.send(json.dumps({**body, "requestId": request_id}))
            return await asyncio.wait_for(fut, ACTION_TIMEOUT)
        except (asyncio.TimeoutError, ConnectionError, WebSocketException):
            return None
        finally:
            conn.pending.pop(request_id, None)

    async def act(self, conn: Conn, name: str, body: dict) -> dict | None:
        t0 = time.monotonic()
        res = await self.request(conn, {"action": name, **body})
        if res is None:
            self.errors[f"{name}: no answer"] += 1
            return None
        t, msg = res
        if not msg.get("ok"):
            self.errors[f"{name}: {(msg.get('error') or {}).get('code', '?')}"] += 1
            return None
        self.rtt[name].append(t - t0)
        return msg.get("data") or {}

    async def lifecycle(self, conn: Conn, offer: dict) -> None:
        import asyncio

        data = await self.act(conn, "accept", {"offerId": offer.get("offerId")})
        if data is None:
            return
        job = data.get("jobId") or offer.get("jobId")
        assignment = data.get("assignmentId")
        if not assignment:
            self.errors["accept: no assignmentId"] += 1
            return
        await asyncio.sleep(random.uniform(*self.think))
        if await self.act(conn, "complete", {"jobId": job, "assignmentId": assignment}) is None:
            return
        if await self.act(conn, "close", {"jobId": job, "assignmentId": assignment}) is None:
            return
        self.lifecycles += 1

    async def desk_actor(self, conn: Conn) -> None:
        while True:
            offer = await conn.todo.get()
            if not self.acting:
                continue
            self.in_flight += 1
            try:
                await self.lifecycle(conn, offer)
            except Exception as exc:  # noqa: BLE001 - counted, the desk goes on
                self.errors[f"lifecycle: {type(exc).__name__}"] += 1
            finally:
                self.in_flight -= 1

    async def refresher(self, conn: Conn) -> None:
        import asyncio

        if self.refresh <= 0:
            return
        await asyncio.sleep(random.uniform(0, self.refresh))
        n = 0
        while True:
            ws = conn.ws
            if self.refreshing and ws is not None:
                n += 1
                try:
                    await ws.send(json.dumps({"action": "refresh", "requestId": f"r{n}"}))
                    self.refreshes += 1
                except Exception:  # noqa: BLE001 - the reader notices the closed socket
                    pass
            await asyncio.sleep(self.refresh)

    async def lag_monitor(self) -> None:
        """Event-loop scheduling delay: if this grows, the client (not the server) is behind."""
        import asyncio

        while True:
            t = time.monotonic()
            await asyncio.sleep(0.05)
            self.lags.append((t, time.monotonic() - t - 0.05))

    # -- control ----------------------------------------------------------------------------------

    def stats(self) -> dict:
        desks = [c for c in self.conns if c.kind == "desk"]
        sups = [c for c in self.conns if c.kind == "supervisor"]
        t = os.times()
        return {
            "t": time.monotonic(),
            "desk_frames": sum(c.frames for c in desks), "desk_bytes": sum(c.bytes for c in desks),
            "sup_frames": sum(c.frames for c in sups), "sup_bytes": sum(c.bytes for c in sups),
            "refreshes": self.refreshes, "offers_seen": len(self.offers_first), "lifecycles": self.lifecycles,
            "in_flight": self.in_flight,
            "desks_connected": sum(1 for c in desks if c.ws is not None),
            "sups_connected": sum(1 for c in sups if c.ws is not None),
            "cpu": t.user + t.system,
        }

    def report(self) -> dict:
        desks = [c for c in self.conns if c.kind == "desk"]
        sups = [c for c in self.conns if c.kind == "supervisor"]
        return {
            **self.stats(),
            "offers_first": self.offers_first,
            "rtt": self.rtt,
            "errors": dict(self.errors),
            "lags": self.lags,
            "desks": [
                {"worker": c.worker, "frames": c.frames, "bytes": c.bytes, "connects": c.connects,
                 "failures": c.failures, "connected": c.ws is not None,
                 "connect_s": c.connect_s, "after_mark": c.after_mark, "saw_change": c.saw_change,
                 "last_error": c.last_error, "offers_seen": len(c.seen)}
                for c in desks
            ],
            "supervisors": [
                {"frames": c.frames, "bytes": c.bytes, "connected": c.ws is not None, "frame_times": c.frame_times,
                 "after_mark": c.after_mark, "saw_change": c.saw_change, "last_error": c.last_error}
                for c in sups
            ],
        }

    # -- commands from the benchmark (one JSON line each, answered with one JSON line) ------------

    def cmd_stats(self, cmd: dict) -> dict:
        return self.stats()

    def cmd_quiet(self, cmd: dict) -> dict:
        """Stop acting on new offers and stop the periodic refreshes."""
        self.acting = False
        self.refreshing = False
        return {}

    def cmd_mark(self, cmd: dict) -> dict:
        """From monotonic time `t` on, note each page's first frames and the first one showing
        queue `queue` with at least `length` jobs."""
        for c in self.conns:
            c.after_mark = []
            c.saw_change = None
        self.probe = (str(cmd["queue"]), int(cmd["length"]))
        self.mark_t = float(cmd["t"])
        return {}

    def cmd_report(self, cmd: dict) -> dict:
        return self.report()

    async def shutdown(self, tasks: list) -> None:
        import asyncio

        self.stopping = True
        for task in tasks:
            task.cancel()
        open_ws = [c.ws for c in self.conns if c.ws is not None]
        if open_ws:
            await asyncio.wait([asyncio.ensure_future(ws.close()) for ws in open_ws], timeout=5)

    async def announce_connected(self, t0: float) -> None:
        import asyncio

        try:
            await asyncio.wait_for(asyncio.gather(*(c.settled.wait() for c in self.conns)),
                                   float(self.cfg["connect_budget"]))
        except asyncio.TimeoutError:
            pass
        emit({"event": "connected", "seconds": time.monotonic() - t0, **self.stats()})

    async def main(self) -> None:
        import asyncio

        loop = asyncio.get_running_loop()
        commands: asyncio.Queue = asyncio.Queue()

        def read_stdin() -> None:
            for line in sys.stdin:
                loop.call_soon_threadsafe(commands.put_nowait, line)
            loop.call_soon_threadsafe(commands.put_nowait, '{"cmd": "exit"}')  # the benchmark went away

        threading.Thread(target=read_stdin, daemon=True).start()
        gate = asyncio.Semaphore(int(self.cfg["connect_concurrency"]))
        tasks = [loop.create_task(self.lag_monitor()), loop.create_task(self.announce_connected(time.monotonic()))]
        for c in self.conns:
            tasks.append(loop.create_task(self.run_conn(c, gate)))
            tasks.append(loop.create_task(self.refresher(c)))
            if c.kind == "desk":
                tasks.append(loop.create_task(self.desk_actor(c)))
        handlers = {"stats": self.cmd_stats, "quiet": self.cmd_quiet, "mark": self.cmd_mark,
                    "report": self.cmd_report}
        while True:
            try:
                cmd = json.loads(await commands.get())
            except ValueError:
                continue
            name = cmd.get("cmd")
            if name == "exit":
                await self.shutdown(tasks)
                emit({"reply": "exit"})
                return
            if name in handlers:
                emit({"reply": name, **handlers[name](cmd)})


def emit(obj: dict) -> None:
    """One JSON line to the benchmark."""
    sys.stdout.write(json.dumps(obj) + "\n")
    sys.stdout.flush()


def client_main(config_path: str) -> int:
    import asyncio

    config = json.loads(Path(config_path).read_text())
    asyncio.run(DeskClients(config).main())
    return 0


# --------------------------------------------------------------------------------------------------
# The benchmark's side of a client process
# --------------------------------------------------------------------------------------------------


class ClientProc:
    """A websocket client process, driven by JSON lines on its stdin / stdout."""

    def __init__(self, index: int, config: dict, tmp: Path) -> None:
        path = tmp / f"client-{index}.json"
        path.write_text(json.dumps(config))
        self.name = f"client-{index}"
        self.log_path = tmp / f"{self.name}.log"
        self.messages: queue.Queue = queue.Queue()
        self.lock = threading.Lock()
        with open(self.log_path, "wb") as log:
            self.proc = subprocess.Popen(
                [sys.executable, str(Path(__file__).resolve()), "--_client", str(path)], cwd=ROOT,
                stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=log, text=True, bufsize=1,
                start_new_session=True,
            )
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            try:
                self.messages.put(json.loads(line))
            except ValueError:
                pass
        self.messages.put(None)

    def wait_for(self, key: str, value: str, timeout: float) -> dict:
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise BenchError(f"{self.name}: no {key} {value!r} within {timeout:.0f}s")
            try:
                msg = self.messages.get(timeout=min(left, 1.0))
            except queue.Empty:
                continue
            if msg is None:
                raise BenchError(f"{self.name} exited (code {self.proc.poll()}): {self.log_tail()}")
            if msg.get(key) == value:
                return msg

    def request(self, cmd: str, timeout: float = COMMAND_TIMEOUT, **kw: Any) -> dict:
        with self.lock:
            assert self.proc.stdin is not None
            try:
                self.proc.stdin.write(json.dumps({"cmd": cmd, **kw}) + "\n")
                self.proc.stdin.flush()
            except (BrokenPipeError, OSError) as exc:
                raise BenchError(f"{self.name} is gone: {exc}; {self.log_tail()}") from exc
            return self.wait_for("reply", cmd, timeout)

    def log_tail(self, lines: int = 15) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def stop(self) -> None:
        if self.proc.poll() is None:
            try:
                self.request("exit", timeout=15)
            except BenchError:
                pass
        try:
            self.proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            pass
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)  # its own group, created above
        except (ProcessLookupError, PermissionError):
            pass
        self.proc.wait()


# --------------------------------------------------------------------------------------------------
# Scenario set-up: Redis, REST objects, agents and their sessions
# --------------------------------------------------------------------------------------------------


class RedisServer:
    """A private redis-server for one scenario (`--redis auto`)."""

    def __init__(self, tmp: Path) -> None:
        binary = shutil.which("redis-server")
        if binary is None:
            raise BenchError("--redis auto: redis-server is not on PATH")
        self.port = _free_port()
        workdir = tmp / "redis"
        workdir.mkdir()
        self.proc = subprocess.Popen(
            [binary, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
             "--dir", str(workdir)],
            stdout=open(tmp / "redis.log", "wb"), stderr=subprocess.STDOUT, start_new_session=True,
        )
        deadline = time.monotonic() + 10
        while True:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.2).close()
                break
            except OSError:
                if time.monotonic() > deadline or self.proc.poll() is not None:
                    raise BenchError("redis-server did not start") from None
                time.sleep(0.05)
        self.url = f"redis://127.0.0.1:{self.port}/0"

    def stop(self) -> None:
        try:
            os.killpg(self.proc.pid, signal.SIGTERM)
            self.proc.wait(timeout=10)
        except (ProcessLookupError, PermissionError):
            pass
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()


def setup_queue(client: SignedClient) -> None:
    client.call("setup", "PATCH", api(f"/routing/distributionPolicies/{POLICY_ID}"), {
        "name": "fan-out longest idle",
        "offerExpiresAfterSeconds": 600,
        "mode": {"kind": "longestIdle", "minConcurrentOffers": 1, "maxConcurrentOffers": 1},
    })
    client.call("setup", "PATCH", api(f"/routing/queues/{QUEUE_ID}"), {"name": QUEUE_ID, "distributionPolicyId": POLICY_ID})


def seed_agents(desks: int, supervisors: int) -> tuple[list[tuple[str, str]], list[str]]:
    """Users (one known password hash), workers (serving q1, voice, capacity 1, available) and a
    logged-in session per user, through the ORM in bulk. Returns ([(worker id, session key)],
    [supervisor session keys])."""
    from importlib import import_module

    from django.conf import settings
    from django.contrib.auth import BACKEND_SESSION_KEY, HASH_SESSION_KEY, SESSION_KEY
    from django.contrib.auth.hashers import make_password
    from django.contrib.auth.models import User
    from django.db import connection, transaction
    from django.utils import timezone

    from routing.models import Worker, WorkerChannel, WorkerQueue

    SessionStore = import_module(settings.SESSION_ENGINE).SessionStore
    backend = settings.AUTHENTICATION_BACKENDS[0]
    password = make_password("fanout-bench")
    agent_names = [f"agent{i:04d}" for i in range(desks)]
    sup_names = [f"supervisor{i}" for i in range(supervisors)]
    now = timezone.now()
    with transaction.atomic():
        User.objects.bulk_create(
            [User(username=u, password=password, is_active=True) for u in agent_names]
            + [User(username=u, password=password, is_active=True, is_staff=True) for u in sup_names],
            batch_size=500,
        )
        users = {u.username: u for u in User.objects.filter(username__in=agent_names + sup_names)}
        # The same rows worker_upsert writes for {capacity 1, queues [q1], channels [voice:1],
        # availableForOffers true}, with distinct idle times so longest-idle has an order.
        Worker.objects.bulk_create(
            [
                Worker(id=u, capacity=1, labels={"Id": u}, tags={}, available_for_offers=True,
                       idle_since=now - timedelta(seconds=desks - i), created_at=now, updated_at=now,
                       user=users[u])
                for i, u in enumerate(agent_names)
            ],
            batch_size=500,
        )
        WorkerQueue.objects.bulk_create([WorkerQueue(worker_id=u, queue_id=QUEUE_ID) for u in agent_names], batch_size=500)
        WorkerChannel.objects.bulk_create(
            [WorkerChannel(worker_id=u, channel_id="voice", capacity_cost_per_job=1) for u in agent_names], batch_size=500
        )

        def login(user: User) -> str:
            session = SessionStore()
            session[SESSION_KEY] = user._meta.pk.value_to_string(user)
            session[BACKEND_SESSION_KEY] = backend
            session[HASH_SESSION_KEY] = user.get_session_auth_hash()
            session.create()
            return session.session_key

        agents = [(u, login(users[u])) for u in agent_names]
        sups = [login(users[u]) for u in sup_names]
    connection.close()
    return agents, sups


# --------------------------------------------------------------------------------------------------
# Load: signed job PATCHes at a steady rate
# --------------------------------------------------------------------------------------------------


@dataclass
class JobRecord:
    id: str
    index: int
    scheduled: float  # monotonic
    sent: float = math.nan  # monotonic, just before the PATCH is sent
    sent_wall: float = math.nan
    patch_s: float = math.nan
    error: str = ""


def run_load(sc: Scenario, endpoints: list[str], key: str, run_id: str, records: list[JobRecord],
             progress: Callable[[float, list[JobRecord]], None]) -> None:
    """Open loop: job n is sent at t0 + n/R by a pool thread (a slow PATCH delays no other);
    appends to `records` as it goes."""
    total = max(1, round(sc.rate * sc.duration))
    local = threading.local()
    body = {"channelId": "voice", "queueId": QUEUE_ID, "priority": 1}

    def send(rec: JobRecord) -> None:
        clients = getattr(local, "clients", None)
        if clients is None:
            clients = local.clients = [SignedClient(e, key) for e in endpoints]
        client = clients[rec.index % len(clients)]  # PATCHes spread over the web processes
        rec.sent = time.monotonic()
        rec.sent_wall = time.time()
        try:
            client.call("PATCH job", "PATCH", api(f"/routing/jobs/{rec.id}"), body)
            rec.patch_s = time.monotonic() - rec.sent
        except Exception as exc:  # noqa: BLE001 - recorded per job
            rec.error = f"{type(exc).__name__}: {exc}"[:300]

    pool = ThreadPoolExecutor(max_workers=min(128, max(16, int(sc.rate * 8))), thread_name_prefix="patch")
    done = threading.Event()
    t0 = time.monotonic()

    def report_progress() -> None:  # in its own thread, so a slow client never delays a PATCH
        while not done.wait(10):
            progress(time.monotonic() - t0, records)

    reporter = threading.Thread(target=report_progress, daemon=True)
    reporter.start()
    try:
        for n in range(total):
            delay = t0 + n / sc.rate - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            rec = JobRecord(id=f"fo-{run_id}-{n:05d}", index=n, scheduled=t0 + n / sc.rate)
            records.append(rec)
            pool.submit(send, rec)
        delay = t0 + total / sc.rate - time.monotonic()
        if delay > 0:
            time.sleep(delay)
    finally:
        done.set()
        # Bounded: each PATCH has requests' 60 s timeout.
        pool.shutdown(wait=True, cancel_futures=False)
        reporter.join(timeout=COMMAND_TIMEOUT * 2)


# --------------------------------------------------------------------------------------------------
# One scenario (runs in its own process: Django settings are per process, the DB is per scenario)
# --------------------------------------------------------------------------------------------------


class ScenarioRun:
    """One scenario, in its own process (Django settings are per process; the DB is per scenario).
    Each phase stores what it measured, so a scenario that fails half-way still reports it."""

    def __init__(self, spec_path: str) -> None:
        spec = json.loads(Path(spec_path).read_text())
        self.sc = sc = Scenario(**{**spec["scenario"], "think": tuple(spec["scenario"]["think"])})
        self.tmp = Path(spec["tmp"])
        self.out_path = Path(spec["result"])
        self.result: dict[str, Any] = {"scenario": asdict(sc), "label": sc.label, "status": "running",
                                       "problems": [], "load_avg_start": os.getloadavg()}
        self.servers: Servers | None = None
        self.redis: RedisServer | None = None
        self.clients: list[ClientProc] = []
        self.key = ""
        self.run_id = secrets.token_hex(3)
        self.records: list[JobRecord] = []
        self.stats: dict[str, dict] = {}  # client counters at: load0, load1, drained, quiet
        self.cpu: dict[str, dict] = {}  # process CPU seconds at: load0, load1
        self.t: dict[str, float] = {}  # monotonic times: load0, load1, change
        self.reports: list[dict] = []

    # -- helpers ----------------------------------------------------------------------------------

    def log(self, msg: str) -> None:
        print(f"  [{self.sc.label}] {msg}", flush=True)

    def problem(self, msg: str) -> None:
        self.result["problems"].append(msg)
        self.log(f"PROBLEM: {msg}")

    def record_pgids(self) -> None:
        pgids = [] if self.servers is None else list(self.servers.pgids())
        pgids += [c.proc.pid for c in self.clients]
        if self.redis is not None:
            pgids.append(self.redis.proc.pid)
        (self.tmp / "pgids").write_text("\n".join(str(p) for p in pgids))

    def all_stats(self) -> dict:
        totals: Counter = Counter()
        for c in self.clients:
            for k, v in c.request("stats").items():
                if isinstance(v, (int, float)) and k != "t":
                    totals[k] += v
        return {**totals, "t": time.monotonic()}

    def cpu_now(self) -> dict[str, float]:
        assert self.servers is not None
        groups = {**self.servers.pgids(), **{c.proc.pid: "client" for c in self.clients}}
        cpu = process_group_cpu(groups)
        webs = set(self.servers.web_names)
        return {"web": sum(v for k, v in cpu.items() if k in webs), "qcluster": cpu.get("qcluster", 0.0),
                "client": cpu.get("client", 0.0), "bench": sum(os.times()[:2]), "machine": _machine_busy_cpu(),
                "redis": process_group_cpu({self.redis.proc.pid: "redis"})["redis"] if self.redis else 0.0}

    def admin(self) -> SignedClient:
        assert self.servers is not None
        return SignedClient(self.servers.endpoint, self.key)

    # -- phases -----------------------------------------------------------------------------------

    def start_servers(self) -> None:
        sc = self.sc
        env = prepare_environment(self.tmp, sc.settings)
        if sc.redis:
            self.redis = RedisServer(self.tmp) if sc.redis == "auto" else None
            self.record_pgids()
            os.environ["REDIS_URL"] = env["REDIS_URL"] = self.redis.url if self.redis is not None else sc.redis
        self.key = env["JOBROUTER_ACCESS_KEY"]
        setup_django()
        self.servers = Servers(env, self.tmp, app=ROUTER_APP, web_processes=sc.web_processes)
        try:
            self.servers.start()
        finally:
            self.record_pgids()
        layer = "channels-redis" if sc.redis else (
            "in-memory + DB relay" if sc.web_processes > 1 else "in-memory layer")
        self.result["layer"] = layer
        self.log(f"servers: {sc.web_processes} x daphne {ROUTER_APP} + qcluster, SQLite, {layer}")
        with closing(self.admin()) as admin:
            setup_queue(admin)

    def connect_pages(self) -> None:
        from django.conf import settings

        sc, servers = self.sc, self.servers
        assert servers is not None
        t = time.perf_counter()
        agents, sups = seed_agents(sc.desks, sc.supervisors)
        self.log(f"seeded {sc.desks} agents + {sc.supervisors} supervisors with sessions in"
                 f" {time.perf_counter() - t:.1f}s")

        def page(i: int, path: str, session: str, worker: str | None = None) -> dict:
            endpoint = servers.endpoints[i % len(servers.endpoints)]  # pages spread over the web processes
            return {"url": endpoint.replace("http://", "ws://") + path, "origin": endpoint,
                    "cookie": f"{settings.SESSION_COOKIE_NAME}={session}", "worker": worker}

        desks = [page(i, "/ws/desk/", s, w) for i, (w, s) in enumerate(agents)]
        supervisors = [page(i, "/ws/supervisor/", s) for i, s in enumerate(sups)]
        n = sc.client_processes
        for k in range(n):
            self.clients.append(ClientProc(k, {
                "desks": desks[k::n], "supervisors": supervisors[k::n], "think": sc.think, "refresh": sc.refresh,
                "connect_concurrency": max(1, sc.connect_concurrency // n), "connect_budget": sc.connect_budget,
            }, self.tmp))
        self.record_pgids()
        self.log(f"connecting {sc.desks} desks + {sc.supervisors} supervisors ({n} client process(es)) ...")
        t = time.monotonic()
        connected = [c.wait_for("event", "connected", sc.connect_budget + 30) for c in self.clients]
        up = sum(m["desks_connected"] for m in connected)
        sups_up = sum(m["sups_connected"] for m in connected)
        self.result.update(connect_seconds=time.monotonic() - t, desks_connected=up, sups_connected=sups_up)
        self.log(f"connected {up}/{sc.desks} desks, {sups_up}/{sc.supervisors} supervisors"
                 f" in {self.result['connect_seconds']:.1f}s")
        if up < sc.desks or sups_up < sc.supervisors:
            self.problem(f"only {up}/{sc.desks} desks and {sups_up}/{sc.supervisors} supervisors connected")
        servers.check_alive()
        time.sleep(3)  # let the connect-time pushes settle

    def load(self) -> None:
        sc, servers = self.sc, self.servers
        assert servers is not None
        self.stats["load0"], self.cpu["load0"], self.t["load0"] = self.all_stats(), self.cpu_now(), time.monotonic()
        self.result["load_avg_load_start"] = os.getloadavg()
        self.log(f"load: {sc.rate:g} jobs/s for {sc.duration:g}s (signed PATCH /routing/jobs/{{id}}),"
                 f" load average {os.getloadavg()[0]:.2f}")

        def progress(elapsed: float, recs: list[JobRecord]) -> None:
            try:
                st = self.all_stats()
            except BenchError as exc:
                self.log(f"  t={elapsed:4.0f}s  (client stats failed: {exc})")
                return
            done = [r.patch_s for r in list(recs) if not math.isnan(r.patch_s)]
            web = self.cpu_now()["web"] - self.cpu["load0"]["web"]
            self.log(f"  t={elapsed:4.0f}s  jobs sent {len(recs)}, offers seen {st['offers_seen']}, closed"
                     f" {st['lifecycles']}, PATCH p50 {percentile(done, 50):.3f}s, web {web / elapsed:.2f} cores,"
                     f" desks connected {st['desks_connected']}")

        run_load(sc, servers.endpoints, self.key, self.run_id, self.records, progress)
        self.stats["load1"], self.cpu["load1"], self.t["load1"] = self.all_stats(), self.cpu_now(), time.monotonic()
        failed = [r for r in self.records if r.error]
        if failed:
            self.problem(f"{len(failed)} of {len(self.records)} job PATCHes failed, e.g. {failed[0].error}")
        servers.check_alive()

    def drain(self) -> None:
        """Wait (bounded) for offers still to show and for the lifecycles in progress."""
        created = sum(1 for r in self.records if not r.error)
        self.log(f"load done ({len(self.records)} jobs); draining up to {self.sc.drain:g}s ...")
        deadline = time.monotonic() + self.sc.drain
        st = self.all_stats()
        while time.monotonic() < deadline and (st["offers_seen"] < created or st["in_flight"] > 0):
            time.sleep(1)
            st = self.all_stats()
        self.stats["drained"] = st
        self.result["drain_seconds"] = time.monotonic() - self.t["load1"]
        self.log(f"drained in {self.result['drain_seconds']:.1f}s: offers seen {st['offers_seen']}/{created},"
                 f" lifecycles closed {st['lifecycles']}, in flight {st['in_flight']}")

    def quiet(self, bound: float = 15.0, still: float = 1.5) -> None:
        """Stop the pages' actions and refreshes, and wait (bounded) until no frame arrives for
        `still` seconds: how long the server goes on pushing (stale state) after the drain, for
        desks and supervisors separately."""
        for c in self.clients:
            c.request("quiet")
        t0 = time.monotonic()
        last = self.all_stats()
        changed = {"desk_frames": t0, "sup_frames": t0}
        while time.monotonic() - t0 < bound and time.monotonic() - max(changed.values()) < still:
            time.sleep(0.25)
            st = self.all_stats()
            for k in changed:
                if st[k] != last[k] or st["in_flight"] > 0:
                    changed[k] = time.monotonic()
            last = st
        self.stats["quiet"] = last
        now = time.monotonic()
        for k, name in (("desk_frames", "desks"), ("sup_frames", "supervisors")):
            quiet = now - changed[k] >= still
            self.result[f"pushing_after_drain_{name}"] = changed[k] - t0 if quiet else None
        self.result["quiet"] = now - max(changed.values()) >= still
        if not self.result["quiet"]:
            self.log(f"frames still arriving {bound:g}s after the drain ended (stale pushes): desks"
                     f" {'yes' if now - changed['desk_frames'] < still else 'no'}, supervisors"
                     f" {'yes' if now - changed['sup_frames'] < still else 'no'}")

    def deaf_check(self) -> None:
        """One change every desk's queue panel shows: a job no worker can take enters q1, so q1's
        length goes up by one. A desk is deaf if no frame showing the new length arrives within
        the window (5 s)."""
        sc = self.sc
        with closing(self.admin()) as admin:
            before = admin.call("stats", "GET", api(f"/routing/queues/{QUEUE_ID}/statistics"))["length"]
            t_mark = time.monotonic()
            for c in self.clients:
                c.request("mark", t=t_mark, queue=QUEUE_ID, length=before + 1)
            probe = f"probe-{self.run_id}"
            self.t["change"] = time.monotonic()
            admin.call("probe", "PATCH", api(f"/routing/jobs/{probe}"), {
                "channelId": "voice", "queueId": QUEUE_ID, "priority": 1,
                "requestedWorkerSelectors": [{"key": "Id", "labelOperator": "equal", "value": "nobody"}],
            })
            time.sleep(max(0.0, self.t["change"] + sc.deaf_window + 0.2 - time.monotonic()))
            self.reports = [c.request("report", timeout=60) for c in self.clients]
            admin.call("probe", "POST", api(f"/routing/jobs/{probe}:cancel"), {})
        assert self.servers is not None
        self.servers.check_alive()

    def salvage_reports(self) -> None:
        if self.reports:
            return
        for c in self.clients:
            if c.proc.poll() is None:
                try:
                    self.reports.append(c.request("report", timeout=20))
                except BenchError:
                    pass

    # -- the whole scenario -----------------------------------------------------------------------

    def run(self) -> int:
        def on_signal(signum, _frame):
            raise KeyboardInterrupt(f"signal {signum}")

        signal.signal(signal.SIGTERM, on_signal)
        code = 1
        try:
            self.start_servers()
            self.connect_pages()
            self.load()
            self.drain()
            self.quiet()
            self.deaf_check()
            code = 0 if not self.result["problems"] else 1
        except KeyboardInterrupt:
            self.result["status"] = "INTERRUPTED"
            code = 130
        except Exception as exc:  # noqa: BLE001 - reported in the table with what was measured
            self.problem(f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"[:300])
            if self.servers is not None:
                for name in [*self.servers.web_names, "qcluster"]:
                    tail = self.servers.log_tail(name, 10)
                    if tail:
                        self.log(f"--- last lines of {name}.log ---\n{tail}")
            if code != 130:
                self.salvage_reports()
        finally:
            self.finish(code)
        return code

    def finish(self, code: int) -> None:
        try:
            self.result.update(analyse(self))
        except Exception as exc:  # noqa: BLE001
            self.result["problems"].append(f"analysis failed: {type(exc).__name__}: {exc}")
        self.result["load_avg_end"] = os.getloadavg()
        if self.result["status"] == "running":
            self.result["status"] = "completed" if code == 0 and not self.result["problems"] else "COLLAPSED"
        vis = self.result.get("visible", {})
        self.log(f"{self.result['status']}: offer visible p50 {_s(vis.get('p50'), 3)}s, p95 {_s(vis.get('p95'), 3)}s;"
                 f" deaf desks {self.result.get('deaf_desks', '?')}")
        for c in self.clients:
            c.stop()
        if self.servers is not None:
            self.servers.stop()
        if self.redis is not None:
            self.redis.stop()
        self.out_path.write_text(json.dumps(self.result))


def scenario_main(spec_path: str) -> int:
    return ScenarioRun(spec_path).run()


# --------------------------------------------------------------------------------------------------
# Analysis (tolerant: a scenario that stopped half-way reports what it has)
# --------------------------------------------------------------------------------------------------


def _pct(values: list[float]) -> dict[str, float]:
    if not values:
        return {"n": 0}
    return {"n": len(values), "p50": percentile(values, 50), "p95": percentile(values, 95),
            "p99": percentile(values, 99), "max": max(values)}


def _offered_at(job_ids: list[str]) -> dict[str, float]:
    """First offer time (wall clock, from the database) per job."""
    from django.db import connection
    from django.db.models import Min

    from routing.models import Offer

    try:
        rows = Offer.objects.filter(job_id__in=job_ids).values("job_id").annotate(t=Min("offered_at"))
        return {row["job_id"]: row["t"].timestamp() for row in rows}
    finally:
        connection.close()


def _latency_figures(run: ScenarioRun, created: list[JobRecord]) -> dict:
    seen: dict[str, list] = {}
    for rep in run.reports:
        for job, first in rep["offers_first"].items():
            if job not in seen or first[0] < seen[job][0]:
                seen[job] = first
    offered = _offered_at([r.id for r in created]) if created else {}
    visible = [(r.index, seen[r.id][0] - r.sent) for r in created if r.id in seen]
    push = [seen[r.id][1] - offered[r.id] for r in created if r.id in seen and r.id in offered]
    third = max(1, len(run.records) // 3)
    first_third = [v for i, v in visible if i < third]
    last_third = [v for i, v in visible if i >= len(run.records) - third]
    return {
        "visible": _pct([v for _, v in visible]), "push": _pct(push),
        "visible_first_third_p50": percentile(first_third, 50) if first_third else math.nan,
        "visible_last_third_p50": percentile(last_third, 50) if last_third else math.nan,
        "never_seen": sum(1 for r in created if r.id in offered and r.id not in seen),
        "never_offered": sum(1 for r in created if r.id not in offered),
        "multi_desk_offers": sum(1 for f in seen.values() if f[3] > 1),
    }


def _traffic_figures(run: ScenarioRun, jobs: int) -> dict:
    s0 = run.stats["load0"]
    s1 = run.stats.get("quiet") or run.stats.get("drained") or run.stats["load1"]  # stale pushes count too
    frames = s1["desk_frames"] + s1["sup_frames"] - s0["desk_frames"] - s0["sup_frames"]
    data = s1["desk_bytes"] + s1["sup_bytes"] - s0["desk_bytes"] - s0["sup_bytes"]
    refreshes = s1["refreshes"] - s0["refreshes"]
    return {"frames_per_job": frames / jobs, "push_frames_per_job": (frames - refreshes) / jobs,
            "frames_per_second": frames / max(1e-9, s1["t"] - s0["t"]),
            "bytes_per_job": data / jobs, "desk_frames": s1["desk_frames"] - s0["desk_frames"],
            "sup_frames": s1["sup_frames"] - s0["sup_frames"], "refreshes": refreshes}


def _cpu_figures(run: ScenarioRun, jobs: int) -> dict:
    c0, c1 = run.cpu["load0"], run.cpu["load1"]
    secs = run.t["load1"] - run.t["load0"]
    lags = [lag for rep in run.reports for (t, lag) in rep["lags"] if run.t["load0"] <= t <= run.t["load1"]]
    d = {k: c1[k] - c0[k] for k in c0}
    other = d["machine"] - d["web"] - d["qcluster"] - d["client"] - d["bench"] - d["redis"]
    return {"web_cpu_per_job": (c1["web"] - c0["web"]) / jobs, "web_cores": (c1["web"] - c0["web"]) / secs,
            "other_cores": max(0.0, other) / secs, "bench_cores": d["bench"] / secs, "redis_cores": d["redis"] / secs,
            "qcluster_cores": (c1["qcluster"] - c0["qcluster"]) / secs,
            "client_cores": (c1["client"] - c0["client"]) / secs, "load_seconds": secs,
            "client_lag_p99": percentile(lags, 99) if lags else math.nan,
            "client_lag_max": max(lags) if lags else math.nan}


def _page_figures(run: ScenarioRun) -> dict:
    desks = [d for rep in run.reports for d in rep["desks"]]
    sups = [s for rep in run.reports for s in rep["supervisors"]]
    errors: Counter = Counter()
    for rep in run.reports:
        errors.update(rep["errors"])
    rtt = {k: [v for rep in run.reports for v in rep["rtt"][k]] for k in ("accept", "complete", "close")}
    out: dict[str, Any] = {
        "accept": _pct(rtt["accept"]), "complete": _pct(rtt["complete"]), "close": _pct(rtt["close"]),
        "lifecycles": sum(rep["lifecycles"] for rep in run.reports), "errors": dict(errors),
        "desks_connected_end": sum(1 for d in desks if d["connected"]),
        "desk_reconnects": sum(max(0, d["connects"] - 1) for d in desks),
        "connect": _pct([d["connect_s"] for d in desks if d["connect_s"] is not None]),
    }
    if "change" in run.t:
        t_change, window = run.t["change"], run.sc.deaf_window
        heard = [d["saw_change"] - t_change for d in desks
                 if d["saw_change"] is not None and d["saw_change"] <= t_change + window]
        out.update(deaf_desks=len(desks) - len(heard), desks_checked=len(desks), heard=_pct(heard),
                   desks_any_frame=sum(1 for d in desks if any(t_change <= t <= t_change + window
                                                                 for t in d["after_mark"])),
                   sups_saw_change=sum(1 for s in sups if s["saw_change"] is not None
                                       and s["saw_change"] <= t_change + window))
    if "load1" in run.t:
        t0, t1 = run.t["load0"], run.t["load1"]
        tail0 = t0 + (t1 - t0) * 2 / 3
        out["deaf_supervisors"] = sum(1 for s in sups if not any(tail0 <= t <= t1 for t in s["frame_times"]))
    return out


def analyse(run: ScenarioRun) -> dict:
    out: dict[str, Any] = {}
    created = [r for r in run.records if not r.error]
    jobs = max(1, len(created))
    if run.records:
        slip = [r.sent - r.scheduled for r in run.records if not math.isnan(r.sent)]
        out.update(jobs=len(run.records), jobs_created=len(created), patch_errors=len(run.records) - len(created),
                   patch=_pct([r.patch_s for r in created]), send_slip_max=max(slip) if slip else math.nan)
    if run.reports:
        out.update(_latency_figures(run, created))
        out.update(_page_figures(run))
    if "load0" in run.stats and len(run.stats) > 1:
        out.update(_traffic_figures(run, jobs))
    if "load1" in run.cpu:
        out.update(_cpu_figures(run, jobs))
    return out


# --------------------------------------------------------------------------------------------------
# The driver: one process per scenario, then the summary table
# --------------------------------------------------------------------------------------------------


def run_scenario_process(sc: Scenario, log: Callable[[str], None]) -> dict:
    tmp = Path(tempfile.mkdtemp(prefix="jobrouter-fanout-"))
    spec = tmp / "scenario.json"
    out = tmp / "result.json"
    spec.write_text(json.dumps({"scenario": asdict(sc), "tmp": str(tmp), "result": str(out)}))
    proc = subprocess.Popen([sys.executable, str(Path(__file__).resolve()), "--_scenario", str(spec)], cwd=ROOT)
    timed_out = False
    try:
        try:
            proc.wait(timeout=sc.hard_timeout)
        except subprocess.TimeoutExpired:
            timed_out = True
            log(f"  [{sc.label}] no result within {sc.hard_timeout:.0f}s: stopping it")
    finally:
        if proc.poll() is None:
            proc.terminate()  # the scenario process stops its servers and clients, and writes its result
            try:
                proc.wait(timeout=45)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        # Whatever it started and could not stop (it records their process groups).
        pgids = tmp / "pgids"
        if pgids.exists():
            for line in pgids.read_text().split():
                try:
                    os.killpg(int(line), signal.SIGKILL)
                except (ProcessLookupError, PermissionError, ValueError):
                    pass
        result: dict[str, Any] = json.loads(out.read_text()) if out.exists() else {
            "status": "COLLAPSED", "problems": [f"scenario process exited with code {proc.returncode}"]}
        if timed_out:
            result["status"] = "COLLAPSED"
            result.setdefault("problems", []).append(f"scenario exceeded {sc.hard_timeout:.0f}s")
        elif result.get("status") == "running":
            result["status"] = "COLLAPSED"
        result.setdefault("label", sc.label)
        result.setdefault("scenario", asdict(sc))
        if sc.keep or result.get("status") != "completed":
            log(f"  [{sc.label}] temp directory kept: {tmp}")
        else:
            shutil.rmtree(tmp, ignore_errors=True)
    return result


def _s(v: Any, digits: int = 2) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "n/a"
    return f"{v:.{digits}f}"


def _ms(v: Any) -> str:
    return "n/a" if v is None or (isinstance(v, float) and math.isnan(v)) else f"{v * 1000:.0f}"


def summary_table(results: list[dict]) -> str:
    def row(name: str, fn: Callable[[dict], str]) -> tuple[str, list[str]]:
        cells = []
        for r in results:
            try:
                cells.append(fn(r))
            except (KeyError, TypeError, ValueError, ZeroDivisionError):
                cells.append("-")
        return name, cells

    def pct(r: dict, k: str, a: str, b: str, f: Callable = _s) -> str:
        return f"{f(r[k].get(a))} / {f(r[k].get(b))}"

    rows = [
        row("status", lambda r: r["status"]),
        row("signs of collapse", lambda r: " ".join(word for word, _ in collapse_signs(r)) or "none"),
        row("layer, web processes", lambda r: f"{r.get('layer', '?')}, {r['scenario']['web_processes']}"),
        row("load average (1 min) at start / end", lambda r: f"{r['load_avg_start'][0]:.2f} / {r['load_avg_end'][0]:.2f}"),
        row("desks / supervisors connected", lambda r: f"{r['desks_connected']}/{r['scenario']['desks']}"
            f" / {r['sups_connected']}/{r['scenario']['supervisors']}"),
        row("desk connect p50 / max (s), all (s)",
            lambda r: f"{pct(r, 'connect', 'p50', 'max')}, {r['connect_seconds']:.0f}"),
        row("jobs created (PATCH errors)", lambda r: f"{r['jobs_created']} ({r['patch_errors']})"),
        row("offer visible p50 / p95 (s)", lambda r: pct(r, "visible", "p50", "p95")),
        row("offer visible p99 / max (s)", lambda r: pct(r, "visible", "p99", "max")),
        row("visible p50 first / last third (s)",
            lambda r: f"{_s(r['visible_first_third_p50'])} / {_s(r['visible_last_third_p50'])}"),
        row("offers never seen / jobs never offered", lambda r: f"{r['never_seen']} / {r['never_offered']}"),
        row("offer row -> desk p50 / p95 (s)", lambda r: pct(r, "push", "p50", "p95")),
        row("frames per job (all pages)", lambda r: f"{r['frames_per_job']:.0f}"),
        row("  without refresh answers", lambda r: f"{r['push_frames_per_job']:.0f}"),
        row("KB received per job", lambda r: f"{r['bytes_per_job'] / 1024:.0f}"),
        row("frames received per second", lambda r: f"{r['frames_per_second']:.0f}"),
        row("web CPU s per job (cores busy)", lambda r: f"{r['web_cpu_per_job']:.3f} ({r['web_cores']:.2f})"),
        row("PATCH p50 / p99 (ms)", lambda r: pct(r, "patch", "p50", "p99", _ms)),
        row("accept round trip p50 / p99 (ms)", lambda r: pct(r, "accept", "p50", "p99", _ms)),
        row("lifecycles closed", lambda r: f"{r['lifecycles']}"),
        row("stale pushes after drain: desks / sups (s)",
            lambda r: " / ".join(">15" if r[f"pushing_after_drain_{k}"] is None
                                 else f"{r[f'pushing_after_drain_{k}']:.1f}" for k in ("desks", "supervisors"))),
        row("deaf desks: change not shown in 5 s", lambda r: f"{r['deaf_desks']}/{r['desks_checked']}"),
        row("  desks with no frame at all in 5 s", lambda r: f"{r['desks_checked'] - r['desks_any_frame']}"),
        row("  shown after p50 / max (s)", lambda r: pct(r, "heard", "p50", "max")),
        row("supervisors: saw change / deaf last third",
            lambda r: f"{r['sups_saw_change']} / {r['deaf_supervisors']} of {r['sups_connected']}"),
        row("client CPU cores, loop lag p99 (ms)", lambda r: f"{r['client_cores']:.2f}, {_ms(r['client_lag_p99'])}"),
        row("cores: qcluster / redis / other processes",
            lambda r: f"{r['qcluster_cores']:.2f} / {r['redis_cores']:.2f} / {r['other_cores']:.2f}"),
    ]
    headers = [r["label"] for r in results]
    width0 = max(len(name) for name, _ in rows) + 2
    widths = [max(len(h), *(len(cells[i]) for _, cells in rows)) + 2 for i, h in enumerate(headers)]
    lines = [f"{'':<{width0}}" + "".join(f"{h:>{w}}" for h, w in zip(headers, widths, strict=True))]
    lines.append("-" * (width0 + sum(widths)))
    for name, cells in rows:
        lines.append(f"{name:<{width0}}" + "".join(f"{c:>{w}}" for c, w in zip(cells, widths, strict=True)))
    for r in results:
        lines += [f"  {r['label']}: {note}" for note in _notes(r)]
    return "\n".join(lines)


def collapse_signs(r: dict) -> list[tuple[str, str]]:
    """(word, detail) flags for a scenario that completed but where the desk path did not keep up."""
    signs = []
    first, last = r.get("visible_first_third_p50", math.nan), r.get("visible_last_third_p50", math.nan)
    if last > 1.0 and last > 1.5 * first:
        signs.append(("lag", f"offer-visible p50 grew x{last / first:.1f} from the first to the last third"))
    if r.get("never_seen"):
        signs.append(("unseen", f"{r['never_seen']} offers never shown on a desk"))
    if r.get("never_offered"):
        signs.append(("unoffered", f"{r['never_offered']} jobs never offered (no desk free)"))
    if r.get("jobs_created") and r.get("lifecycles", 0) < r["jobs_created"]:
        signs.append(("unclosed", f"{r.get('lifecycles', 0)} of {r['jobs_created']} jobs accepted, completed and closed"))
    if r.get("deaf_desks"):
        signs.append(("deaf", f"{r['deaf_desks']} of {r['desks_checked']} desks did not see a change within 5 s"))
    return signs


def _notes(r: dict) -> list[str]:
    notes = list(r.get("problems", []))
    if r.get("status") == "completed" and collapse_signs(r):
        notes.append("signs of collapse: " + "; ".join(detail for _, detail in collapse_signs(r)))
    if r.get("errors"):
        notes.append("desk action errors: " + ", ".join(f"{k} x{v}" for k, v in sorted(r["errors"].items())))
    if r.get("send_slip_max", 0) > 0.5:
        notes.append(f"PATCH sends slipped up to {r['send_slip_max']:.1f}s behind schedule (client pool)")
    if r.get("client_cores", 0) > 0.8 or r.get("client_lag_p99", 0) > 0.2:
        notes.append(f"client process used {r['client_cores']:.2f} cores (loop lag p99"
                     f" {_ms(r['client_lag_p99'])} ms): it may be a bottleneck; try --client-processes 2")
    if r.get("other_cores", 0) > 0.3:
        notes.append(f"other processes on the machine used {r['other_cores']:.2f} cores during the load")
    return notes


def main(argv: list[str] | None = None) -> int:
    args, scenarios = parse_args(argv)
    if args._client:
        return client_main(args._client)
    if args._scenario:
        return scenario_main(args._scenario)

    def log(msg: str) -> None:
        print(msg, flush=True)

    def on_signal(signum, _frame):
        raise KeyboardInterrupt(f"signal {signum}")

    signal.signal(signal.SIGTERM, on_signal)
    started = time.perf_counter()
    import websockets

    log(f"Fan-out benchmark ({'quick' if args.quick else 'full'} mode): {', '.join(s.label for s in scenarios)};"
        f" {scenarios[0].duration:g}s of load each")
    log(f"  python {platform.python_version()}, websockets {websockets.__version__}, {os.cpu_count()} CPUs,"
        f" load average {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    results: list[dict] = []
    try:
        for sc in scenarios:
            log(f"\n{sc.label}, {sc.duration:g}s, {sc.web_processes} web process(es),"
                f" {'Redis ' + sc.redis if sc.redis else 'no Redis'}")
            results.append(run_scenario_process(sc, log))
    except KeyboardInterrupt:
        log("\ninterrupted")
        return 130
    finally:
        if results:
            log(f"\nSummary (run time {time.perf_counter() - started:.0f}s; latencies from the job PATCH being sent"
                " to the offer frame at the offered desk)")
            log(summary_table(results))
        if args.json and results:
            Path(args.json).write_text(json.dumps(results, indent=1, default=str))
    return 0 if all(r.get("status") == "completed" for r in results) and len(results) == len(scenarios) else 1


if __name__ == "__main__":
    sys.exit(main())
