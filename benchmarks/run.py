#!/usr/bin/env python
"""End-to-end benchmark of the job router against a baseline measured in the same run.

    python benchmarks/run.py            # full mode (about 3-5 minutes on 2 cores)
    python benchmarks/run.py --quick    # CI mode (under 1 minute)

What it does (details in benchmarks/README.md):

1. Creates a throw-away SQLite database in a temp directory, migrates it, generates an access key
   and starts the real server processes against it, exactly as tests/conftest.py does:
   `python -m daphne ... benchmarks.baseline_app:application` (the router application plus one
   baseline endpoint) and `python manage.py qcluster` (django-q2 cluster + timer loop).
2. Throughput, in interleaved rounds (baseline, lifecycles, lifecycles, baseline, ...) so both
   see the same background load and database growth, N client threads each:
   - baseline: signed `POST /baseline/rows` (HMAC check + DRF + one INSERT);
   - full job lifecycles through the REST API with signed requests, one worker per thread:
     PATCH job -> GET worker until the offer shows -> accept -> complete -> close.
   Reports rates, their ratios, and the server CPU time per request / lifecycle (from /proc).
3. Job-created-to-offer-visible latency with 1,000 workers and a backlog of 100 / 10,000 /
   100,000 queued jobs seeded in bulk through the ORM.
4. Prints a summary table; stops the servers (also on error) and removes the temp directory.

Only the standard library, Django (the project's settings) and `requests` are used.
"""

from __future__ import annotations

import argparse
import base64
import json
import math
import os
import platform
import secrets
import shutil
import signal
import socket
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any, Callable
from urllib.parse import urlsplit

ROOT = Path(__file__).resolve().parent.parent
API_VERSION = "api-version=2023-11-01"
ASGI_APP = "benchmarks.baseline_app:application"
REQUEST_TIMEOUT = 60

if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))


# --------------------------------------------------------------------------------------------------
# Configuration
# --------------------------------------------------------------------------------------------------


@dataclass
class Config:
    quick: bool
    threads: int
    rounds: int  # interleaved baseline / lifecycle measurement rounds
    warmup: float  # seconds of load before each measurement window (not counted)
    baseline_window: float  # seconds per baseline window
    lifecycle_window: float  # seconds per lifecycle window
    backlogs: list[int]
    workers: int  # workers in the latency scenario
    samples: int  # latency samples per backlog size
    keep: bool
    settings: str  # DJANGO_SETTINGS_MODULE for this script and the servers

    @classmethod
    def from_args(cls, argv: list[str] | None = None) -> "Config":
        parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
        parser.add_argument("--quick", action="store_true", help="short CI run (backlogs 100 and 10,000 only)")
        parser.add_argument("--threads", type=int, default=8, help="client threads for the throughput tests")
        parser.add_argument("--rounds", type=int, help="interleaved baseline/lifecycle rounds (default 5, quick 2)")
        parser.add_argument("--window", type=float, help="seconds per lifecycle window (default 15, quick 5); "
                            "baseline windows are 2/3 of it")
        parser.add_argument("--samples", type=int, help="latency samples per backlog size (default 50, quick 15)")
        parser.add_argument("--backlogs", help="comma-separated backlog sizes (default 100,10000,100000; quick 100,10000)")
        parser.add_argument("--workers", type=int, default=1000, help="workers in the latency scenario")
        parser.add_argument("--keep", action="store_true", help="keep the temp directory (database, server logs)")
        parser.add_argument("--settings", default="jobrouter.settings",
                            help="Django settings module for the servers (to compare a variant, e.g. other middleware)")
        args = parser.parse_args(argv)
        quick = args.quick
        backlogs = (
            [int(x) for x in args.backlogs.split(",")] if args.backlogs
            else ([100, 10_000] if quick else [100, 10_000, 100_000])
        )
        window = args.window or (5.0 if quick else 15.0)
        return cls(
            quick=quick,
            threads=args.threads,
            rounds=args.rounds or (2 if quick else 5),
            warmup=1.0 if quick else 2.0,
            baseline_window=round(window * 2 / 3, 1),
            lifecycle_window=window,
            backlogs=sorted(backlogs),
            workers=args.workers,
            samples=args.samples or (15 if quick else 50),
            keep=args.keep,
            settings=args.settings,
        )


class BenchError(RuntimeError):
    pass


# --------------------------------------------------------------------------------------------------
# Environment, database and server processes
# --------------------------------------------------------------------------------------------------


def prepare_environment(tmp: Path, settings_module: str) -> dict[str, str]:
    """Point this process (and, through the returned env, the servers) at a fresh database."""
    key = base64.b64encode(secrets.token_bytes(32)).decode()
    os.environ["DJANGO_SETTINGS_MODULE"] = settings_module
    os.environ["DATABASE_URL"] = f"sqlite:///{tmp / 'bench.sqlite3'}"
    os.environ["JOBROUTER_ACCESS_KEY"] = key
    os.environ["JOBROUTER_VAR_DIR"] = str(tmp)  # nothing may land in the repo's var/
    os.environ.setdefault("DJANGO_ALLOWED_HOSTS", "*")
    os.environ.pop("DJANGO_DEBUG", None)  # DEBUG would record every query in the server
    os.environ.pop("REDIS_URL", None)  # same setup as the tests: ORM broker, in-memory channel layer
    return dict(os.environ)


def setup_django() -> None:
    import django
    from django.core.management import call_command

    django.setup()
    call_command("migrate", verbosity=0, interactive=False)
    from django.db import connection

    connection.close()


def _free_port(taken: tuple[int, ...] = ()) -> int:
    while True:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        if port not in taken:
            return port


def process_group_cpu(groups: dict[int, str]) -> dict[str, float]:
    """CPU time (user + system) used so far by each process group {pgid: name} (Linux /proc);
    names may repeat (their groups are summed)."""
    totals = {name: 0.0 for name in groups.values()}
    tick = os.sysconf("SC_CLK_TCK")
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        pgrp = int(fields[2])
        if pgrp in groups:
            totals[groups[pgrp]] += (int(fields[11]) + int(fields[12])) / tick
    return totals


class Servers:
    """Web process(es) (daphne serving `app`, default benchmarks.baseline_app) and one
    `manage.py qcluster`. With several web processes they are named daphne, daphne-2, ..."""

    def __init__(self, env: dict[str, str], tmp: Path, app: str = ASGI_APP, web_processes: int = 1) -> None:
        self.env = env
        self.tmp = tmp
        self.app = app
        self.ports: list[int] = []
        for _ in range(web_processes):
            self.ports.append(_free_port(tuple(self.ports)))
        self.port = self.ports[0]
        self.procs: list[tuple[str, subprocess.Popen, Path]] = []

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def endpoints(self) -> list[str]:
        return [f"http://127.0.0.1:{port}" for port in self.ports]

    @property
    def web_names(self) -> list[str]:
        return ["daphne" if i == 0 else f"daphne-{i + 1}" for i in range(len(self.ports))]

    def pgids(self) -> dict[int, str]:
        """{process group id: name} of every server process started (each leads its own group)."""
        return {proc.pid: name for name, proc, _log in self.procs}

    def _spawn(self, name: str, args: list[str]) -> subprocess.Popen:
        log = self.tmp / f"{name}.log"
        with open(log, "wb") as fh:
            proc = subprocess.Popen(
                [sys.executable, *args], cwd=ROOT, env=self.env, stdout=fh, stderr=subprocess.STDOUT,
                start_new_session=True,  # its own process group: qcluster's children are stopped with it
            )
        self.procs.append((name, proc, log))
        return proc

    def start(self) -> None:
        webs = [
            (name, port, self._spawn(name, ["-m", "daphne", "-b", "127.0.0.1", "-p", str(port), self.app]))
            for name, port in zip(self.web_names, self.ports)
        ]
        self._spawn("qcluster", ["manage.py", "qcluster"])
        deadline = time.monotonic() + 60
        for name, port, web in webs:
            while True:
                if web.poll() is not None:
                    raise BenchError(f"{name} exited early with code {web.returncode}\n{self.log_tail(name)}")
                try:
                    with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                        break
                except OSError:
                    if time.monotonic() > deadline:
                        raise BenchError(f"{name} did not listen on {port} within 60s")
                    time.sleep(0.05)

    def check_alive(self) -> None:
        for name, proc, _log in self.procs:
            if proc.poll() is not None:
                raise BenchError(f"{name} exited with code {proc.returncode}\n{self.log_tail(name)}")

    def log_tail(self, name: str, lines: int = 30) -> str:
        for n, _proc, log in self.procs:
            if n == name and log.exists():
                return "\n".join(log.read_text(errors="replace").splitlines()[-lines:])
        return ""

    def cpu_seconds(self) -> dict[str, float]:
        """CPU time (user + system) used so far by each server process group (Linux /proc)."""
        return process_group_cpu(self.pgids())

    def stop(self) -> None:
        for _name, proc, _log in reversed(self.procs):
            if proc.poll() is None:
                proc.terminate()
        for _name, proc, _log in reversed(self.procs):
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                try:
                    os.killpg(proc.pid, signal.SIGKILL)  # the group this script created for it
                except ProcessLookupError:
                    pass
                proc.wait()
            # Children that outlived their parent (qcluster's django-q workers) are in its group.
            try:
                os.killpg(proc.pid, signal.SIGTERM)
            except (ProcessLookupError, PermissionError):
                pass


# --------------------------------------------------------------------------------------------------
# Signed HTTP client
# --------------------------------------------------------------------------------------------------


class SignedClient:
    """A `requests.Session` that signs every request like the Azure SDK (HMAC-SHA256)."""

    def __init__(self, endpoint: str, access_key: str) -> None:
        import requests

        from routing.api.auth import sign_request

        self._sign = sign_request
        self.base = endpoint
        self.host = urlsplit(endpoint).netloc
        self.key = access_key
        self.session = requests.Session()
        self.requests = 0
        self.record: Callable[[str, float], None] | None = None

    def call(self, op: str, method: str, path: str, body: Any = None, expect: tuple[int, ...] = (200, 201)) -> Any:
        data = b"" if body is None else json.dumps(body, separators=(",", ":")).encode()
        headers = self._sign(method=method, path_and_query=path, host=self.host, body=data, access_key=self.key)
        if body is not None:
            headers["Content-Type"] = "application/merge-patch+json" if method == "PATCH" else "application/json"
        t0 = time.perf_counter()
        resp = self.session.request(method, self.base + path, data=data or None, headers=headers, timeout=REQUEST_TIMEOUT)
        elapsed = time.perf_counter() - t0
        self.requests += 1
        if self.record is not None:
            self.record(op, elapsed)
        if resp.status_code not in expect:
            raise BenchError(f"{method} {path} -> HTTP {resp.status_code}: {resp.text[:500]}")
        return resp.json() if resp.content else None

    def close(self) -> None:
        self.session.close()


def api(path: str) -> str:
    return f"{path}?{API_VERSION}"


# --------------------------------------------------------------------------------------------------
# Statistics helpers
# --------------------------------------------------------------------------------------------------


def percentile(values: list[float], p: float) -> float:
    """Nearest-rank percentile (p in 0..100); with n samples, p99 is the max when n < 100."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    rank = max(1, math.ceil(p / 100 * len(ordered)))
    return ordered[rank - 1]


def ms(seconds: float) -> str:
    return "n/a" if math.isnan(seconds) else f"{seconds * 1000:.1f}"


# --------------------------------------------------------------------------------------------------
# CPU accounting (Linux /proc): who used the 2 cores during a measurement window
# --------------------------------------------------------------------------------------------------


def _own_cpu() -> float:
    t = os.times()
    return t.user + t.system


def _machine_busy_cpu() -> float:
    """CPU seconds (all cores) the whole machine spent not idle, from /proc/stat."""
    try:
        fields = [int(x) for x in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    except (OSError, ValueError):
        return float("nan")
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)  # idle + iowait
    return (sum(fields[:8]) - idle) / os.sysconf("SC_CLK_TCK")


@dataclass
class CpuSnapshot:
    t: float
    servers: dict[str, float]
    client: float
    machine: float

    @classmethod
    def take(cls, servers: "Servers") -> "CpuSnapshot":
        return cls(time.perf_counter(), servers.cpu_seconds(), _own_cpu(), _machine_busy_cpu())


@dataclass
class CpuUse:
    """CPU seconds used in a window by daphne, qcluster, this script, and everything else."""

    daphne: float = 0.0
    qcluster: float = 0.0
    client: float = 0.0
    other: float = 0.0

    @classmethod
    def between(cls, a: CpuSnapshot, b: CpuSnapshot) -> "CpuUse":
        daphne = b.servers.get("daphne", 0) - a.servers.get("daphne", 0)
        qcluster = b.servers.get("qcluster", 0) - a.servers.get("qcluster", 0)
        client = b.client - a.client
        other = max(0.0, (b.machine - a.machine) - daphne - qcluster - client)
        return cls(daphne, qcluster, client, other)

    def __add__(self, o: "CpuUse") -> "CpuUse":
        return CpuUse(self.daphne + o.daphne, self.qcluster + o.qcluster, self.client + o.client, self.other + o.other)


# --------------------------------------------------------------------------------------------------
# Closed-loop load driver (shared by the baseline and the lifecycle test)
# --------------------------------------------------------------------------------------------------


@dataclass
class LoadResult:
    name: str
    threads: int
    seconds: float
    units: int  # rows (baseline) or completed lifecycles
    requests: int
    cpu: CpuUse
    op_times: dict[str, list[float]] = field(default_factory=dict)
    rounds: list["LoadResult"] = field(default_factory=list)

    @property
    def units_per_s(self) -> float:
        return self.units / self.seconds

    @property
    def requests_per_s(self) -> float:
        return self.requests / self.seconds

    @property
    def daphne_ms_per_request(self) -> float:
        return self.cpu.daphne / max(1, self.requests) * 1000

    @staticmethod
    def combine(name: str, parts: list["LoadResult"]) -> "LoadResult":
        ops: dict[str, list[float]] = defaultdict(list)
        cpu = CpuUse()
        for p in parts:
            cpu = cpu + p.cpu
            for op, times in p.op_times.items():
                ops[op].extend(times)
        return LoadResult(
            name, parts[0].threads, sum(p.seconds for p in parts), sum(p.units for p in parts),
            sum(p.requests for p in parts), cpu, dict(ops), list(parts),
        )


def run_load(
    name: str,
    warmup: float,
    window: float,
    servers: Servers,
    clients: list[SignedClient],
    body: Callable[[int, SignedClient, threading.Event, list[int]], None],
) -> LoadResult:
    """Run `body(index, client, stop, units)` in one thread per client until stopped; count the
    units (body increments `units[index]`) and requests completed in a window of `window` seconds
    that starts after `warmup` seconds of load."""
    stop = threading.Event()
    measuring = threading.Event()
    units = [0] * len(clients)
    errors: list[BaseException] = []
    op_times: dict[str, list[float]] = defaultdict(list)
    lock = threading.Lock()

    def recorder(op: str, elapsed: float) -> None:
        if measuring.is_set():
            with lock:
                op_times[op].append(elapsed)

    def target(i: int) -> None:
        try:
            body(i, clients[i], stop, units)
        except BaseException as exc:  # noqa: BLE001 - re-raised by the main thread
            errors.append(exc)
            stop.set()

    for c in clients:
        c.record = recorder
    threads = [threading.Thread(target=target, args=(i,), name=f"{name}-{i}", daemon=True) for i in range(len(clients))]
    for t in threads:
        t.start()
    try:
        if stop.wait(warmup):
            raise errors[0] if errors else BenchError(f"{name}: stopped during warm-up")
        units0, req0 = sum(units), sum(c.requests for c in clients)
        cpu0 = CpuSnapshot.take(servers)
        measuring.set()
        stop.wait(window)
        measuring.clear()
        units1, req1 = sum(units), sum(c.requests for c in clients)
        cpu1 = CpuSnapshot.take(servers)
    finally:
        stop.set()
        for t in threads:
            t.join(timeout=REQUEST_TIMEOUT + 5)
        for c in clients:
            c.record = None
    if errors:
        raise errors[0]
    servers.check_alive()
    return LoadResult(
        name, len(clients), cpu1.t - cpu0.t, units1 - units0, req1 - req0, CpuUse.between(cpu0, cpu1), dict(op_times)
    )


# --------------------------------------------------------------------------------------------------
# 1. Baseline: signed POST /baseline/rows
# --------------------------------------------------------------------------------------------------


def baseline_window(cfg: Config, servers: Servers, key: str) -> LoadResult:
    clients = [SignedClient(servers.endpoint, key) for _ in range(cfg.threads)]

    def body(i: int, client: SignedClient, stop: threading.Event, units: list[int]) -> None:
        payload = {"tag": f"t{i}"}
        while not stop.is_set():
            client.call("POST /baseline/rows", "POST", "/baseline/rows", payload, expect=(201,))
            units[i] += 1

    try:
        return run_load("baseline", cfg.warmup, cfg.baseline_window, servers, clients, body)
    finally:
        for c in clients:
            c.close()


# --------------------------------------------------------------------------------------------------
# 2. Full lifecycles through the REST API
# --------------------------------------------------------------------------------------------------

DISTRIBUTION_POLICY = "bench-longest-idle"
LIFECYCLE_QUEUE = "bench-lifecycle-q"


def setup_policy(client: SignedClient) -> None:
    client.call(
        "setup", "PATCH", api(f"/routing/distributionPolicies/{DISTRIBUTION_POLICY}"),
        {
            "name": "benchmark longest idle",
            "offerExpiresAfterSeconds": 300,
            "mode": {"kind": "longestIdle", "minConcurrentOffers": 1, "maxConcurrentOffers": 1},
        },
    )


def setup_queue(client: SignedClient, queue_id: str) -> None:
    client.call("setup", "PATCH", api(f"/routing/queues/{queue_id}"),
                {"name": queue_id, "distributionPolicyId": DISTRIBUTION_POLICY})


def setup_lifecycles(cfg: Config, servers: Servers, key: str) -> list[str]:
    """Policy, queue and one worker per client thread (capacity 1, channel voice), via the API."""
    admin = SignedClient(servers.endpoint, key)
    try:
        setup_policy(admin)
        setup_queue(admin, LIFECYCLE_QUEUE)
        worker_ids = [f"bench-lc-w{i}" for i in range(cfg.threads)]
        for worker_id in worker_ids:
            admin.call(
                "setup", "PATCH", api(f"/routing/workers/{worker_id}"),
                {
                    "capacity": 1,
                    "queues": [LIFECYCLE_QUEUE],
                    "channels": [{"channelId": "voice", "capacityCostPerJob": 1}],
                    "availableForOffers": True,
                },
            )
    finally:
        admin.close()
    return worker_ids


def lifecycle_window(cfg: Config, servers: Servers, key: str, worker_ids: list[str]) -> LoadResult:
    clients = [SignedClient(servers.endpoint, key) for _ in range(cfg.threads)]
    run_id = secrets.token_hex(3)

    def body(i: int, client: SignedClient, stop: threading.Event, units: list[int]) -> None:
        worker_id = worker_ids[i]
        n = 0
        while not stop.is_set():  # a started lifecycle always runs to its close
            job_id = f"lc-{run_id}-{i}-{n}"
            n += 1
            client.call(
                "PATCH job", "PATCH", api(f"/routing/jobs/{job_id}"),
                {
                    "channelId": "voice",
                    "queueId": LIFECYCLE_QUEUE,
                    # Only this thread's worker matches, so threads never see each other's offers.
                    "requestedWorkerSelectors": [{"key": "Id", "labelOperator": "equal", "value": worker_id}],
                },
            )
            deadline = time.monotonic() + 30
            while True:
                worker = client.call("GET worker", "GET", api(f"/routing/workers/{worker_id}"))
                offer = next((o for o in worker.get("offers", []) if o["jobId"] == job_id), None)
                if offer is not None:
                    break
                if time.monotonic() > deadline:
                    raise BenchError(f"no offer for {job_id} to {worker_id} within 30s: {worker}")
                time.sleep(0.001)
            accepted = client.call(
                "POST accept", "POST", api(f"/routing/workers/{worker_id}/offers/{offer['offerId']}:accept"), {}
            )
            assignment = accepted["assignmentId"]
            client.call("POST complete", "POST", api(f"/routing/jobs/{job_id}/assignments/{assignment}:complete"), {})
            client.call("POST close", "POST", api(f"/routing/jobs/{job_id}/assignments/{assignment}:close"), {})
            units[i] += 1

    try:
        return run_load("lifecycles", cfg.warmup, cfg.lifecycle_window, servers, clients, body)
    finally:
        for c in clients:
            c.close()


def bench_throughput(
    cfg: Config, servers: Servers, key: str, log: Callable[[str], None]
) -> tuple[LoadResult, LoadResult]:
    """Interleave baseline and lifecycle windows (B L, L B, B L, ...) so that both see the same
    mix of background load and database growth; returns the combined results."""
    worker_ids = setup_lifecycles(cfg, servers, key)
    baselines: list[LoadResult] = []
    lifecycles: list[LoadResult] = []
    for r in range(cfg.rounds):
        order = ("baseline", "lifecycles") if r % 2 == 0 else ("lifecycles", "baseline")
        for kind in order:
            if kind == "baseline":
                res = baseline_window(cfg, servers, key)
                baselines.append(res)
            else:
                res = lifecycle_window(cfg, servers, key, worker_ids)
                lifecycles.append(res)
            log(
                f"  round {r + 1}/{cfg.rounds} {kind:<10} {res.units_per_s:7.1f} {'rows' if kind == 'baseline' else 'lifecycles'}/s"
                f"  {res.requests_per_s:7.1f} req/s   daphne {res.cpu.daphne / res.seconds:.2f} cores,"
                f" other processes {res.cpu.other / res.seconds:.2f} cores"
            )
    return LoadResult.combine("baseline", baselines), LoadResult.combine("lifecycles", lifecycles)


# --------------------------------------------------------------------------------------------------
# 3. Job created -> offer visible, with a large backlog and 1,000 workers
# --------------------------------------------------------------------------------------------------


@dataclass
class LatencyResult:
    backlog: int
    workers: int
    visible: list[float]  # PATCH start -> Offer row visible to another reader
    patch_rtt: list[float]
    accept_rtt: list[float]
    complete_rtt: list[float]
    close_rtt: list[float]
    seed_seconds: float
    other_cpu_cores: float = 0.0  # CPU used by unrelated processes while sampling


def seed_workers(queue_id: str, count: int) -> None:
    from django.db import transaction
    from django.utils import timezone

    from routing.models import Worker, WorkerChannel, WorkerQueue

    now = timezone.now()
    ids = [f"lat-w{i:05d}" for i in range(count)]
    with transaction.atomic():
        Worker.objects.bulk_create(
            [
                Worker(
                    id=w, capacity=1, labels={"Id": w}, tags={}, available_for_offers=True,
                    # Distinct idle times, so longest-idle has a real order to pick from.
                    idle_since=now - timedelta(seconds=count - i), created_at=now, updated_at=now,
                )
                for i, w in enumerate(ids)
            ],
            batch_size=500,
        )
        WorkerQueue.objects.bulk_create([WorkerQueue(worker_id=w, queue_id=queue_id) for w in ids], batch_size=500)
        WorkerChannel.objects.bulk_create(
            [WorkerChannel(worker_id=w, channel_id="voice", capacity_cost_per_job=1) for w in ids], batch_size=500
        )


def seed_backlog(queue_id: str, start: int, stop: int) -> None:
    """Queued jobs on channel "backlog", which no worker serves: they stay queued and sit in the
    same queue (and the same (queue, status, ...) index range) as the jobs being measured."""
    from django.db import transaction
    from django.utils import timezone

    from routing.models import Job, JobStatus

    now = timezone.now()
    chunk = 10_000
    for lo in range(start, stop, chunk):
        hi = min(stop, lo + chunk)
        with transaction.atomic():
            Job.objects.bulk_create(
                [
                    Job(
                        id=f"backlog-{n:07d}", created_at=now, updated_at=now, status=JobStatus.QUEUED,
                        enqueued_at=now - timedelta(seconds=stop - n), channel_id="backlog", queue_id=queue_id,
                        priority=1, matching_mode={"kind": "queueAndMatch"},
                    )
                    for n in range(lo, hi)
                ],
                batch_size=1000,
            )


def measure_latency(cfg: Config, servers: Servers, key: str, queue_id: str, backlog: int, seed_s: float) -> LatencyResult:
    from django.db import connection

    from routing.models import Offer

    client = SignedClient(servers.endpoint, key)
    result = LatencyResult(backlog, cfg.workers, [], [], [], [], [], seed_s)
    warmup = 3
    try:
        for n in range(warmup + cfg.samples):
            job_id = f"lat-{backlog}-{n}-{secrets.token_hex(2)}"
            started = threading.Event()
            outcome: dict[str, Any] = {}

            def patch() -> None:
                try:
                    outcome["t0"] = time.perf_counter()
                    started.set()
                    client.call("PATCH job", "PATCH", api(f"/routing/jobs/{job_id}"), {"channelId": "voice", "queueId": queue_id})
                    outcome["t1"] = time.perf_counter()
                except BaseException as exc:  # noqa: BLE001
                    outcome["error"] = exc
                    started.set()

            sender = threading.Thread(target=patch, daemon=True)
            sender.start()
            started.wait()
            # "Visible": any other reader of the database sees the offer row (committed).
            deadline = time.monotonic() + 30
            while True:
                row = Offer.objects.filter(job_id=job_id).values_list("id", "worker_id").first()
                if row is not None:
                    t_visible = time.perf_counter()
                    break
                if "error" in outcome:
                    raise outcome["error"]
                if time.monotonic() > deadline:
                    raise BenchError(f"no offer for {job_id} within 30s (backlog {backlog})")
                time.sleep(0.001)
            sender.join()
            if "error" in outcome:
                raise outcome["error"]
            offer_id, worker_id = row
            # Free the worker again through the API (accept -> complete -> close), timing each call;
            # close also runs match_worker for the freed worker, which walks the queue.
            t = time.perf_counter()
            accepted = client.call("POST accept", "POST", api(f"/routing/workers/{worker_id}/offers/{offer_id}:accept"), {})
            t_accept = time.perf_counter() - t
            assignment = accepted["assignmentId"]
            t = time.perf_counter()
            client.call("POST complete", "POST", api(f"/routing/jobs/{job_id}/assignments/{assignment}:complete"), {})
            t_complete = time.perf_counter() - t
            t = time.perf_counter()
            client.call("POST close", "POST", api(f"/routing/jobs/{job_id}/assignments/{assignment}:close"), {})
            t_close = time.perf_counter() - t
            if n >= warmup:
                result.visible.append(t_visible - outcome["t0"])
                result.patch_rtt.append(outcome["t1"] - outcome["t0"])
                result.accept_rtt.append(t_accept)
                result.complete_rtt.append(t_complete)
                result.close_rtt.append(t_close)
    finally:
        client.close()
        connection.close()
    servers.check_alive()
    return result


def bench_latency(cfg: Config, servers: Servers, key: str, log: Callable[[str], None]) -> list[LatencyResult]:
    queue_id = "bench-latency-q"
    admin = SignedClient(servers.endpoint, key)
    setup_policy(admin)
    setup_queue(admin, queue_id)
    admin.close()
    t = time.perf_counter()
    seed_workers(queue_id, cfg.workers)
    log(f"  seeded {cfg.workers:,} workers in {time.perf_counter() - t:.1f}s")
    results = []
    seeded = 0
    for backlog in cfg.backlogs:
        t = time.perf_counter()
        seed_backlog(queue_id, seeded, backlog)
        seed_s = time.perf_counter() - t
        seeded = backlog
        log(f"  backlog {backlog:,} queued jobs (seeded in {seed_s:.1f}s); sampling {cfg.samples} jobs ...")
        cpu0 = CpuSnapshot.take(servers)
        result = measure_latency(cfg, servers, key, queue_id, backlog, seed_s)
        cpu1 = CpuSnapshot.take(servers)
        result.other_cpu_cores = CpuUse.between(cpu0, cpu1).other / (cpu1.t - cpu0.t)
        log(
            f"    offer visible p50 {ms(percentile(result.visible, 50))} ms, p99 {ms(percentile(result.visible, 99))} ms;"
            f" PATCH p50 {ms(percentile(result.patch_rtt, 50))} ms; close p50 {ms(percentile(result.close_rtt, 50))} ms;"
            f" other processes {result.other_cpu_cores:.2f} cores"
        )
        results.append(result)
    return results


# --------------------------------------------------------------------------------------------------
# Report
# --------------------------------------------------------------------------------------------------


def print_load(result: LoadResult, log: Callable[[str], None]) -> None:
    c, secs = result.cpu, result.seconds
    log(
        f"  {result.name} (all rounds, {secs:.0f}s measured): {result.units:,} = {result.units_per_s:,.1f}/s;"
        f" {result.requests:,} requests = {result.requests_per_s:,.1f} req/s"
    )
    log(
        f"    CPU: daphne {c.daphne / secs:.2f} cores ({result.daphne_ms_per_request:.1f} ms/request),"
        f" qcluster {c.qcluster / secs:.2f}, client {c.client / secs:.2f}, other processes {c.other / secs:.2f}"
    )
    log(f"    {'request':<20} {'count':>7} {'p50 ms':>8} {'p90 ms':>8} {'p99 ms':>8}")
    for op, times in sorted(result.op_times.items(), key=lambda kv: -statistics.median(kv[1])):
        log(
            f"    {op:<20} {len(times):>7,} {ms(percentile(times, 50)):>8} {ms(percentile(times, 90)):>8}"
            f" {ms(percentile(times, 99)):>8}"
        )


def summary(cfg: Config, base: LoadResult, life: LoadResult, lat: list[LatencyResult]) -> str:
    base_rps = base.requests_per_s
    ratios = [l.units_per_s / b.requests_per_s for b, l in zip(base.rounds, life.rounds)]
    req_ratios = [l.requests_per_s / b.requests_per_s for b, l in zip(base.rounds, life.rounds)]
    per_lifecycle_ms = life.cpu.daphne / max(1, life.units) * 1000
    rows: list[tuple[str, str]] = [
        (f"baseline: signed POST /baseline/rows, {base.threads} threads",
         f"{base_rps:,.1f} rows/s   (daphne CPU {base.daphne_ms_per_request:.1f} ms/request)"),
        (f"full lifecycles, {life.threads} threads",
         f"{life.units_per_s:,.1f} lifecycles/s   (daphne CPU {per_lifecycle_ms:.1f} ms/lifecycle)"),
        ("  their API requests",
         f"{life.requests_per_s:,.1f} req/s   (daphne CPU {life.daphne_ms_per_request:.1f} ms/request,"
         f" {life.requests / max(1, life.units):.2f} requests/lifecycle)"),
        ("  lifecycles/s / baseline req/s",
         f"{life.units_per_s / base_rps:.3f}   (per round: {min(ratios):.3f} .. {max(ratios):.3f})"),
        ("  requests/s / baseline req/s",
         f"{life.requests_per_s / base_rps:.3f}   (per round: {min(req_ratios):.3f} .. {max(req_ratios):.3f})"),
        ("  server CPU: 1 lifecycle costs",
         f"{per_lifecycle_ms / base.daphne_ms_per_request:.1f} baseline requests"
         f"   (1 API request: {life.daphne_ms_per_request / base.daphne_ms_per_request:.1f})"),
    ]
    for r in lat:
        tag = f"backlog {r.backlog:>7,}, {r.workers:,} workers"
        rows.append((f"{tag}: offer visible p50 / p99",
                     f"{ms(percentile(r.visible, 50))} / {ms(percentile(r.visible, 99))} ms"))
        rows.append((f"{tag}: PATCH round trip p50 / p99",
                     f"{ms(percentile(r.patch_rtt, 50))} / {ms(percentile(r.patch_rtt, 99))} ms"))
        rows.append((f"{tag}: accept / complete / close p50",
                     f"{ms(percentile(r.accept_rtt, 50))} / {ms(percentile(r.complete_rtt, 50))}"
                     f" / {ms(percentile(r.close_rtt, 50))} ms"))
    width = max(len(k) for k, _ in rows) + 2
    lines = [f"{'metric':<{width}}value", "-" * (width + 60)]
    lines += [f"{k:<{width}}{val}" for k, val in rows]
    if lat:
        n = min(len(r.visible) for r in lat)
        lines.append(f"latency: {n} samples per backlog size (after 3 warm-up samples), one at a time; nearest-rank")
        lines.append("percentiles, so with fewer than 100 samples p99 is the slowest sample.")
    busy = (base.cpu.other + life.cpu.other) / (base.seconds + life.seconds)
    if busy > 0.25:
        lines.append(f"NOTE: other processes used {busy:.2f} of {os.cpu_count()} cores during the throughput windows;"
                     " absolute figures are depressed, the interleaved ratios less so.")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    cfg = Config.from_args(argv)
    started = time.perf_counter()

    def log(msg: str) -> None:
        print(msg, flush=True)

    def on_signal(signum, _frame):
        raise KeyboardInterrupt(f"signal {signum}")

    signal.signal(signal.SIGTERM, on_signal)

    tmp = Path(tempfile.mkdtemp(prefix="jobrouter-bench-"))
    env = prepare_environment(tmp, cfg.settings)
    key = env["JOBROUTER_ACCESS_KEY"]
    servers: Servers | None = None
    ok = False
    try:
        import django

        log(f"Job router benchmark ({'quick' if cfg.quick else 'full'} mode)")
        log(
            f"  python {platform.python_version()}, django {django.get_version()}, sqlite {sqlite3.sqlite_version},"
            f" {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.2f}, temp dir {tmp}"
        )
        setup_django()
        servers = Servers(env, tmp)
        servers.start()
        log(f"  server: daphne {ASGI_APP} on {servers.endpoint} + manage.py qcluster, one SQLite file"
            f"{'' if cfg.settings == 'jobrouter.settings' else ', settings ' + cfg.settings}")

        log(
            f"\n[1/2] Throughput, {cfg.threads} client threads, {cfg.rounds} interleaved rounds"
            f" (baseline {cfg.baseline_window:g}s, lifecycles {cfg.lifecycle_window:g}s per round,"
            f" after {cfg.warmup:g}s warm-up each)"
        )
        log("  baseline  = signed POST /baseline/rows (HMAC check + DRF + one INSERT)")
        log("  lifecycle = PATCH job -> GET worker until the offer shows -> accept -> complete -> close")
        base, life = bench_throughput(cfg, servers, key, log)
        print_load(base, log)
        print_load(life, log)

        log(
            f"\n[2/2] Job created -> offer visible, {cfg.workers:,} workers,"
            f" backlogs {', '.join(f'{b:,}' for b in cfg.backlogs)}"
        )
        lat = bench_latency(cfg, servers, key, log)

        log(f"\nSummary (run time {time.perf_counter() - started:.0f}s)")
        log(summary(cfg, base, life, lat))
        ok = True
        return 0
    except KeyboardInterrupt:
        log("\ninterrupted")
        return 130
    except Exception as exc:
        log(f"\nBENCHMARK FAILED: {type(exc).__name__}: {exc}")
        if servers is not None:
            for name in ("daphne", "qcluster"):
                tail = servers.log_tail(name)
                if tail:
                    log(f"--- last lines of {name}.log ---\n{tail}")
        return 1
    finally:
        if servers is not None:
            servers.stop()
        if cfg.keep or not ok:
            log(f"(temp directory kept: {tmp})")
        else:
            shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
