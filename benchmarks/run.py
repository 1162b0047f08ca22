#!/usr/bin/env python
"""End-to-end benchmark of the job router against a baseline measured in the same run.

    python benchmarks/run.py            # full mode (about 8.5 minutes on 2 cores)
    python benchmarks/run.py --quick    # CI mode (about 90 s on 2 cores)

What it does (details in benchmarks/README.md):

1. Creates a throw-away SQLite database in a temp directory, migrates it and generates an access
   key, exactly as tests/conftest.py does.
2. Throughput, once per deployment layout, each on a fresh database and its own server processes:
   - `1 process, SQLite`: `python -m daphne ... benchmarks.baseline_app:application` (the router
     application plus one baseline endpoint) and `python manage.py qcluster` (django-q2 cluster +
     timer loop), as scripts/web runs by default;
   - `N processes, SQLite`: `gunicorn benchmarks.baseline_app:application -k
     uvicorn.workers.UvicornWorker -w N` with scripts/web's flags (JOBROUTER_WEB_WORKERS=N) + qcluster;
   - the same two on PostgreSQL, when it is installed: a throw-away server started here
     (initdb in a temp dir, fsync off), removed at the end.
   In each layout, interleaved rounds (baseline, lifecycles, lifecycles, baseline, ...) so both
   see the same background load and database growth, 8 client threads per web process each:
   - baseline: signed `POST /baseline/rows` (HMAC check + DRF + one INSERT);
   - full job lifecycles through the REST API with signed requests, one worker per thread:
     PATCH job -> GET worker until the offer shows -> accept -> complete -> close.
   Reports rates, their ratios, and the server CPU time per request / lifecycle (from /proc):
   web processes, background worker and database server separately.
3. Job-created-to-offer-visible latency with 1,000 workers and a backlog of 100 / 10,000 /
   100,000 queued jobs seeded in bulk through the ORM (1 process, SQLite).
4. Prints a summary (the layouts side by side); stops every server (also on error, Ctrl-C and
   SIGTERM) and removes the temp directories.

Only the standard library, Django (the project's settings) and `requests` are used.
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import json
import math
import os
import platform
import secrets
import shlex
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
from typing import Any, Callable, Iterator
from urllib.parse import urlsplit

ROOT = Path(__file__).resolve().parent.parent
API_VERSION = "api-version=2023-11-01"
ASGI_APP = "benchmarks.baseline_app:application"
REQUEST_TIMEOUT = 60
PG_BIN_GLOB = "/usr/lib/postgresql/*/bin"
LAYOUT_KEYS = ("sqlite-1", "sqlite-n", "postgres-1", "postgres-n")

if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))


# --------------------------------------------------------------------------------------------------
# Configuration
# --------------------------------------------------------------------------------------------------


@dataclass
class Config:
    quick: bool
    threads: int  # client threads per web process in the throughput tests
    rounds: int  # interleaved baseline / lifecycle measurement rounds
    warmup: float  # seconds of load before each measurement window (not counted)
    baseline_window: float  # seconds per baseline window
    lifecycle_window: float  # seconds per lifecycle window
    backlogs: list[int]
    workers: int  # workers in the latency scenario
    samples: int  # latency samples per backlog size
    keep: bool
    settings: str  # DJANGO_SETTINGS_MODULE for this script and the servers
    web_workers: int = 2  # gunicorn worker processes in the multi-process layouts
    postgres: bool = True  # measure the PostgreSQL layouts when PostgreSQL is installed
    layouts: tuple[str, ...] = LAYOUT_KEYS

    @classmethod
    def from_args(cls, argv: list[str] | None = None) -> "Config":
        parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
        parser.add_argument("--quick", action="store_true",
                            help="short CI run (2 rounds of 4 s windows per layout; backlogs 100 and 10,000 only)")
        parser.add_argument("--threads", type=int, default=8,
                            help="client threads per web process for the throughput tests (default 8)")
        parser.add_argument("--web-workers", type=int, default=2, metavar="N",
                            help="gunicorn worker processes in the multi-process layouts (default 2)")
        parser.add_argument("--no-postgres", action="store_true", help="skip the PostgreSQL layouts")
        parser.add_argument("--layouts", default=",".join(LAYOUT_KEYS),
                            help=f"comma-separated subset of {','.join(LAYOUT_KEYS)} (default: all)")
        parser.add_argument("--rounds", type=int, help="interleaved baseline/lifecycle rounds per layout (default 4, quick 2)")
        parser.add_argument("--window", type=float, help="seconds per lifecycle window (default 15, quick 4); "
                            "baseline windows are 2/3 of it")
        parser.add_argument("--samples", type=int, help="latency samples per backlog size (default 50, quick 15)")
        parser.add_argument("--backlogs", help="comma-separated backlog sizes (default 100,10000,100000; quick 100,10000)")
        parser.add_argument("--workers", type=int, default=1000, help="workers in the latency scenario")
        parser.add_argument("--keep", action="store_true", help="keep the temp directory (database, server logs)")
        parser.add_argument("--settings", default="jobrouter.settings",
                            help="Django settings module for the servers (to compare a variant, e.g. other middleware)")
        args = parser.parse_args(argv)
        quick = args.quick
        layouts = tuple(k.strip() for k in args.layouts.split(",") if k.strip())
        unknown = [k for k in layouts if k not in LAYOUT_KEYS]
        if unknown or not layouts:
            parser.error(f"--layouts: unknown {', '.join(unknown) or '(none given)'}; choose from {', '.join(LAYOUT_KEYS)}")
        if args.web_workers < 1 or args.threads < 1:
            parser.error("--web-workers and --threads must be at least 1")
        backlogs = (
            [int(x) for x in args.backlogs.split(",")] if args.backlogs
            else ([100, 10_000] if quick else [100, 10_000, 100_000])
        )
        window = args.window or (4.0 if quick else 15.0)
        return cls(
            quick=quick,
            threads=args.threads,
            rounds=args.rounds or (2 if quick else 4),
            warmup=1.0 if quick else 2.0,
            baseline_window=round(window * 2 / 3, 1),
            lifecycle_window=window,
            backlogs=sorted(backlogs),
            workers=args.workers,
            samples=args.samples or (15 if quick else 50),
            keep=args.keep,
            settings=args.settings,
            web_workers=args.web_workers,
            postgres=not args.no_postgres,
            layouts=tuple(k for k in LAYOUT_KEYS if k in layouts),
        )


@dataclass(frozen=True)
class Layout:
    """A deployment layout: the database and the web server(s) in front of it."""

    key: str  # one of LAYOUT_KEYS
    database: str  # "sqlite" | "postgres"
    gunicorn_workers: int  # 0: one daphne process (scripts/web's default); N: gunicorn -w N

    @property
    def processes(self) -> int:
        return max(1, self.gunicorn_workers)

    @property
    def label(self) -> str:
        db = "SQLite" if self.database == "sqlite" else "PostgreSQL"
        if self.gunicorn_workers == 0:
            return f"1 process, {db}"
        if self.gunicorn_workers == 1:
            return f"1 gunicorn process, {db}"
        return f"{self.gunicorn_workers} processes, {db}"

    @property
    def web_server(self) -> str:
        return "daphne" if self.gunicorn_workers == 0 else f"gunicorn -w {self.gunicorn_workers}"

    @classmethod
    def all(cls, cfg: Config) -> list["Layout"]:
        n = cfg.web_workers
        made = {
            "sqlite-1": cls("sqlite-1", "sqlite", 0), "sqlite-n": cls("sqlite-n", "sqlite", n),
            "postgres-1": cls("postgres-1", "postgres", 0), "postgres-n": cls("postgres-n", "postgres", n),
        }
        return [made[k] for k in cfg.layouts]


class BenchError(RuntimeError):
    pass


# --------------------------------------------------------------------------------------------------
# Signals: cleanup is never cut short
# --------------------------------------------------------------------------------------------------


def _raise_interrupt(signum, _frame):
    raise KeyboardInterrupt(f"signal {signum}")


@contextlib.contextmanager
def signals_deferred(reraise: bool = True) -> Iterator[None]:
    """Run a cleanup block to its end even if Ctrl-C / SIGTERM / SIGHUP arrives meanwhile; the
    signal is then raised (as KeyboardInterrupt) when the block is left, unless `reraise` is
    false. Main thread only."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    pending: list[int] = []
    names = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
    previous = {s: signal.signal(s, lambda signum, _f: pending.append(signum)) for s in names}
    try:
        yield
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)
        if pending and reraise:
            raise KeyboardInterrupt(f"signal {pending[0]}")


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


def copy_sqlite(source: Path, target: Path) -> None:
    """A consistent copy of a SQLite database (its WAL included), through SQLite's backup API."""
    src, dst = sqlite3.connect(source), sqlite3.connect(target)
    try:
        src.backup(dst)
    finally:
        dst.close()
        src.close()


def _free_port(taken: tuple[int, ...] = ()) -> int:
    while True:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        if port not in taken:
            return port


def _process_table() -> list[tuple[int, int, int, float]]:
    """(pid, ppid, process group, CPU seconds) of every process (Linux /proc). The CPU is user +
    system of the process plus that of its children it has already waited for (cutime, cstime),
    so processes that exited during a window (a PostgreSQL backend, a recycled worker) still count
    through their parent."""
    tick = os.sysconf("SC_CLK_TCK")
    rows = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
            pid = int(stat.parent.name)
        except (OSError, IndexError, ValueError):
            continue
        rows.append((pid, int(fields[1]), int(fields[2]), sum(int(x) for x in fields[11:15]) / tick))
    return rows


def process_group_cpu(groups: dict[int, str], table: list[tuple[int, int, int, float]] | None = None) -> dict[str, float]:
    """CPU time (user + system, with waited-for children) used so far by each process group
    {pgid: name} (Linux /proc); names may repeat (their groups are summed)."""
    totals = {name: 0.0 for name in groups.values()}
    for _pid, _ppid, pgrp, cpu in table if table is not None else _process_table():
        if pgrp in groups:
            totals[groups[pgrp]] += cpu
    return totals


def _tail(path: Path, lines: int = 30) -> str:
    if not path.exists():
        return ""
    return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])


class PostgresServer:
    """A throw-away PostgreSQL server, as scripts/test starts one: initdb in a temp dir (owned by
    the `postgres` user when run as root), listening on 127.0.0.1:<free port> and a socket in the
    same dir, fsync off. `stop()` shuts it down and removes the dir."""

    def __init__(self, bin_dir: Path) -> None:
        self.bin = bin_dir
        self.dir = Path(tempfile.mkdtemp(prefix="jobrouter-bench-pg-"))
        self.data = self.dir / "data"
        self.log = self.dir / "postgres.log"
        self.port = _free_port()
        self.pid: int | None = None  # the postmaster's
        self.stopped = False
        if os.geteuid() == 0:
            import pwd

            pw = pwd.getpwnam("postgres")
            os.chown(self.dir, pw.pw_uid, pw.pw_gid)

    @staticmethod
    def find() -> tuple[Path | None, str]:
        """(bin dir of the newest installed PostgreSQL, or None with the reason)."""
        import glob

        dirs = sorted((Path(p) for p in glob.glob(PG_BIN_GLOB)),
                      key=lambda p: [int(x) if x.isdigit() else 0 for x in p.parent.name.split(".")])
        dirs = [d for d in dirs if (d / "initdb").exists() and (d / "pg_ctl").exists()]
        if not dirs:
            return None, f"PostgreSQL is not installed (no {PG_BIN_GLOB}/initdb)"
        if os.geteuid() == 0:
            import pwd

            try:
                pwd.getpwnam("postgres")
            except KeyError:
                return None, "running as root and there is no `postgres` user to run PostgreSQL as"
        return dirs[-1], ""

    def _run(self, *args: str, timeout: float = 120) -> str:
        line = shlex.join(args)
        argv = ["su", "postgres", "-s", "/bin/sh", "-c", line] if os.geteuid() == 0 else ["/bin/sh", "-c", line]
        proc = subprocess.run(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                              start_new_session=True, timeout=timeout, check=False)
        out = proc.stdout.decode(errors="replace")
        if proc.returncode != 0:
            raise BenchError(f"{args[0]} failed ({proc.returncode}): {out[-2000:]}\n{_tail(self.log, 20)}")
        return out

    def start(self) -> None:
        self._run(str(self.bin / "initdb"), "-D", str(self.data), "-A", "trust", "-U", "postgres", "--no-sync")
        options = (f"-p {self.port} -k {shlex.quote(str(self.dir))} -c listen_addresses=127.0.0.1"
                   " -c max_connections=200 -c fsync=off")
        self._run(str(self.bin / "pg_ctl"), "-D", str(self.data), "-w", "-t", "60", "-l", str(self.log),
                  "-o", options, "start")
        self.pid = int((self.data / "postmaster.pid").read_text().split()[0])

    @property
    def version(self) -> str:
        try:
            return subprocess.run([str(self.bin / "postgres"), "--version"], capture_output=True, text=True,
                                  check=False).stdout.strip().replace("postgres (PostgreSQL) ", "")
        except OSError:
            return "?"

    def url(self, database: str) -> str:
        return f"postgres://postgres@127.0.0.1:{self.port}/{database}"

    def create_database(self, name: str, template: str | None = None) -> None:
        extra = ("-T", template) if template else ()
        self._run(str(self.bin / "createdb"), "-h", "127.0.0.1", "-p", str(self.port), "-U", "postgres", *extra, name)

    def cpu_seconds(self, table: list[tuple[int, int, int, float]] | None = None) -> float:
        """CPU used so far by the postmaster and its children (backends, including the ones that
        already exited: the postmaster waits for them, so they are in its cutime/cstime)."""
        if self.pid is None:
            return 0.0
        rows = table if table is not None else _process_table()
        return sum(cpu for pid, ppid, _pgrp, cpu in rows if pid == self.pid or ppid == self.pid)

    def _alive(self) -> bool:
        if self.pid is None:
            return False
        try:
            os.kill(self.pid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            return True
        return True

    def stop(self) -> None:
        if self.stopped:
            return
        if self.pid is None and (self.data / "postmaster.pid").exists():  # interrupted during start
            with contextlib.suppress(OSError, ValueError, IndexError):
                self.pid = int((self.data / "postmaster.pid").read_text().split()[0])
        if self.pid is not None:
            with contextlib.suppress(BenchError, subprocess.TimeoutExpired, OSError):
                self._run(str(self.bin / "pg_ctl"), "-D", str(self.data), "-m", "immediate", "-w", "-t", "20", "stop",
                          timeout=30)
            deadline = time.monotonic() + 10
            while self._alive() and time.monotonic() < deadline:
                time.sleep(0.1)
            if self._alive():  # pg_ctl failed: the postmaster we started, then its children
                children = [pid for pid, ppid, _g, _c in _process_table() if ppid == self.pid]
                for pid in [self.pid, *children]:
                    with contextlib.suppress(ProcessLookupError):
                        os.kill(pid, signal.SIGKILL)
        shutil.rmtree(self.dir, ignore_errors=True)
        self.stopped = True


class Servers:
    """Web process(es) serving `app` (default benchmarks.baseline_app) and one
    `manage.py qcluster`, each in its own process group; logs go to `tmp`.

    * default: one daphne; with `web_processes` > 1 several daphnes on their own ports, named
      daphne, daphne-2, ...;
    * `gunicorn_workers` = N > 0: one gunicorn (named "gunicorn") with N uvicorn worker processes
      on one port, with scripts/web's flags; its CPU is the whole group (master + workers).

    `database`, when given, is a PostgresServer whose CPU is reported as "postgres"."""

    def __init__(self, env: dict[str, str], tmp: Path, app: str = ASGI_APP, web_processes: int = 1,
                 gunicorn_workers: int = 0, database: PostgresServer | None = None) -> None:
        self.env = env
        self.tmp = tmp
        self.app = app
        self.gunicorn_workers = gunicorn_workers
        self.database = database
        self.ports: list[int] = []
        for _ in range(1 if gunicorn_workers else web_processes):
            self.ports.append(_free_port(tuple(self.ports)))
        self.port = self.ports[0]
        self.procs: list[tuple[str, subprocess.Popen, Path]] = []
        self.stopped = False

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def endpoints(self) -> list[str]:
        return [f"http://127.0.0.1:{port}" for port in self.ports]

    @property
    def web_names(self) -> list[str]:
        if self.gunicorn_workers:
            return ["gunicorn"]
        return ["daphne" if i == 0 else f"daphne-{i + 1}" for i in range(len(self.ports))]

    @property
    def names(self) -> list[str]:
        return [name for name, _proc, _log in self.procs]

    def pgids(self) -> dict[int, str]:
        """{process group id: name} of every server process started (each leads its own group)."""
        return {proc.pid: name for name, proc, _log in self.procs}

    def _spawn(self, name: str, args: list[str]) -> subprocess.Popen:
        self.tmp.mkdir(parents=True, exist_ok=True)
        log = self.tmp / f"{name}.log"
        with open(log, "wb") as fh:
            proc = subprocess.Popen(
                [sys.executable, *args], cwd=ROOT, env=self.env, stdout=fh, stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,  # its own process group: qcluster's children are stopped with it
            )
        self.procs.append((name, proc, log))
        return proc

    def gunicorn_args(self) -> list[str]:
        """scripts/web with JOBROUTER_WEB_WORKERS=N, serving `app`. The control socket (gunicorn
        >= 24) goes to the temp dir instead of ~/.gunicorn, so that no other gunicorn is disturbed."""
        args = ["-m", "gunicorn", self.app, "-k", "uvicorn.workers.UvicornWorker", "-w", str(self.gunicorn_workers),
                "-b", f"127.0.0.1:{self.port}", "--graceful-timeout", "5", "--timeout", "60", "--access-logfile", "-"]
        with contextlib.suppress(ImportError):
            from gunicorn.config import KNOWN_SETTINGS

            if any(s.name == "control_socket" for s in KNOWN_SETTINGS):
                args += ["--control-socket", str(self.tmp / "gunicorn.ctl")]
        return args

    def start(self) -> None:
        if self.gunicorn_workers:
            webs = [("gunicorn", self.port, self._spawn("gunicorn", self.gunicorn_args()))]
        else:
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
        if self.gunicorn_workers:
            # The master listens before its workers have imported the application.
            while self.log_tail("gunicorn", 10_000).count("Application startup complete") < self.gunicorn_workers:
                if webs[0][2].poll() is not None or time.monotonic() > deadline:
                    raise BenchError(f"gunicorn: {self.gunicorn_workers} workers not up within 60s\n{self.log_tail('gunicorn')}")
                time.sleep(0.05)

    def check_alive(self) -> None:
        for name, proc, _log in self.procs:
            if proc.poll() is not None:
                raise BenchError(f"{name} exited with code {proc.returncode}\n{self.log_tail(name)}")

    def log_tail(self, name: str, lines: int = 30) -> str:
        for n, _proc, log in self.procs:
            if n == name:
                return _tail(log, lines)
        return ""

    def cpu_seconds(self, table: list[tuple[int, int, int, float]] | None = None) -> dict[str, float]:
        """CPU time (user + system) used so far by each server process group (Linux /proc), and by
        the database server as "postgres" when there is one."""
        table = table if table is not None else _process_table()
        cpu = process_group_cpu(self.pgids(), table)
        if self.database is not None:
            cpu["postgres"] = self.database.cpu_seconds(table)
        return cpu

    def web_process_cpu(self, table: list[tuple[int, int, int, float]]) -> dict[int, float]:
        """{pid: CPU so far} of each process in the web process groups (gunicorn: master and workers)."""
        webs = {pgid for pgid, name in self.pgids().items() if name in self.web_names}
        return {pid: cpu for pid, _ppid, pgrp, cpu in table if pgrp in webs}

    def stop(self) -> None:
        if self.stopped:
            return
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
        self.stopped = True


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
# CPU accounting (Linux /proc): who used the cores during a measurement window
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
    web_names: list[str]
    web_pids: dict[int, float]  # per web process, to show how the load spreads over gunicorn's workers
    client: float
    machine: float

    @classmethod
    def take(cls, servers: "Servers") -> "CpuSnapshot":
        table = _process_table()
        return cls(time.perf_counter(), servers.cpu_seconds(table), servers.web_names, servers.web_process_cpu(table),
                   _own_cpu(), _machine_busy_cpu())


@dataclass
class CpuUse:
    """CPU seconds used in a window by the web process(es) (all of them: daphne, or gunicorn's
    master and workers), qcluster (the background worker), the database server (PostgreSQL; 0 for
    SQLite, whose work is done inside the web processes), this script, and everything else."""

    web: float = 0.0
    qcluster: float = 0.0
    db: float = 0.0
    client: float = 0.0
    other: float = 0.0
    web_split: list[float] = field(default_factory=list)  # per web process, busiest first (several only)

    @classmethod
    def between(cls, a: CpuSnapshot, b: CpuSnapshot) -> "CpuUse":
        def used(name: str) -> float:
            return b.servers.get(name, 0.0) - a.servers.get(name, 0.0)

        web = sum(used(name) for name in b.web_names)
        qcluster, db = used("qcluster"), used("postgres")
        client = b.client - a.client
        other = max(0.0, (b.machine - a.machine) - web - qcluster - db - client)
        split = sorted((cpu - a.web_pids.get(pid, 0.0) for pid, cpu in b.web_pids.items()), reverse=True)
        return cls(web, qcluster, db, client, other, split if len(split) > 1 else [])

    def __add__(self, o: "CpuUse") -> "CpuUse":
        split = [x + y for x, y in zip(self.web_split, o.web_split, strict=False)] if self.web_split else o.web_split
        return CpuUse(self.web + o.web, self.qcluster + o.qcluster, self.db + o.db, self.client + o.client,
                      self.other + o.other, split)


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
    def web_ms_per_request(self) -> float:
        return self.cpu.web / max(1, self.requests) * 1000

    @property
    def db_ms_per_request(self) -> float:
        return self.cpu.db / max(1, self.requests) * 1000

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
    interrupted = False
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
    except BaseException:
        interrupted = True
        raise
    finally:
        stop.set()
        # Normally each thread finishes the lifecycle it started; when interrupted, the servers
        # are stopped next, so the (daemon) threads are not waited for long.
        deadline = time.monotonic() + (2 if interrupted else REQUEST_TIMEOUT + 5)
        for t in threads:
            t.join(timeout=max(0.0, deadline - time.monotonic()))
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


def baseline_window(cfg: Config, servers: Servers, key: str, threads: int) -> LoadResult:
    clients = [SignedClient(servers.endpoint, key) for _ in range(threads)]

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
LIFECYCLE_OPS = ("PATCH job", "GET worker", "POST accept", "POST complete", "POST close")


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


def setup_lifecycles(servers: Servers, key: str, threads: int) -> list[str]:
    """Policy, queue and one worker per client thread (capacity 1, channel voice), via the API."""
    admin = SignedClient(servers.endpoint, key)
    try:
        setup_policy(admin)
        setup_queue(admin, LIFECYCLE_QUEUE)
        worker_ids = [f"bench-lc-w{i}" for i in range(threads)]
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
    clients = [SignedClient(servers.endpoint, key) for _ in worker_ids]
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


def cores(cpu: CpuUse, seconds: float, database: bool) -> str:
    db = f" postgres {cpu.db / seconds:.2f}," if database else ""
    split = f" ({'+'.join(f'{x / seconds:.2f}' for x in cpu.web_split)})" if cpu.web_split else ""
    return (f"web {cpu.web / seconds:.2f}{split} cores, qcluster {cpu.qcluster / seconds:.2f},{db}"
            f" client {cpu.client / seconds:.2f}, other processes {cpu.other / seconds:.2f}")


def bench_throughput(
    cfg: Config, servers: Servers, key: str, log: Callable[[str], None], threads: int | None = None
) -> tuple[LoadResult, LoadResult]:
    """Interleave baseline and lifecycle windows (B L, L B, B L, ...) so that both see the same
    mix of background load and database growth; returns the combined results."""
    threads = threads or cfg.threads
    worker_ids = setup_lifecycles(servers, key, threads)
    baselines: list[LoadResult] = []
    lifecycles: list[LoadResult] = []
    for r in range(cfg.rounds):
        order = ("baseline", "lifecycles") if r % 2 == 0 else ("lifecycles", "baseline")
        for kind in order:
            if kind == "baseline":
                res = baseline_window(cfg, servers, key, threads)
                baselines.append(res)
            else:
                res = lifecycle_window(cfg, servers, key, worker_ids)
                lifecycles.append(res)
            log(
                f"  round {r + 1}/{cfg.rounds} {kind:<10} {res.units_per_s:7.1f} {'rows' if kind == 'baseline' else 'lifecycles'}/s"
                f"  {res.requests_per_s:7.1f} req/s   {cores(res.cpu, res.seconds, servers.database is not None)}"
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
# Deployment layouts
# --------------------------------------------------------------------------------------------------

PG_TEMPLATE_DB = "bench_template"


@dataclass
class LayoutResult:
    layout: Layout
    threads: int
    base: LoadResult | None = None
    life: LoadResult | None = None
    error: str | None = None


class Run:
    """What the whole run started and must stop: cleanups run in reverse order at the end (and
    after each layout for its own servers), never cut short by a signal."""

    def __init__(self, cfg: Config, tmp: Path, env: dict[str, str], log: Callable[[str], None]) -> None:
        self.cfg = cfg
        self.tmp = tmp
        self.env = env
        self.key = env["JOBROUTER_ACCESS_KEY"]
        self.log = log
        self.cleanups: list[Callable[[], None]] = []
        self.pg: PostgresServer | None = None
        self.pg_error: str | None = None
        self.failed = False

    def cleanup(self) -> None:
        while self.cleanups:
            fn = self.cleanups.pop()
            try:
                fn()
            except Exception as exc:  # noqa: BLE001 - go on stopping the rest
                self.log(f"cleanup: {type(exc).__name__}: {exc}")

    def start_postgres(self, bin_dir: Path) -> None:
        """The PostgreSQL server for the PostgreSQL layouts, and a migrated template database
        that each layout copies (CREATE DATABASE ... TEMPLATE)."""
        pg = PostgresServer(bin_dir)
        self.pg = pg

        def stop() -> None:
            with contextlib.suppress(OSError):  # its log outlives it, with the servers' logs
                shutil.copy(pg.log, self.tmp / "postgres.log")
            pg.stop()

        self.cleanups.append(stop)
        t = time.perf_counter()
        try:
            pg.start()
            pg.create_database(PG_TEMPLATE_DB)
            env = {**self.env, "DATABASE_URL": pg.url(PG_TEMPLATE_DB), "JOBROUTER_VAR_DIR": str(self.tmp / "pg-migrate")}
            proc = subprocess.run([sys.executable, "manage.py", "migrate", "--noinput", "-v0"], cwd=ROOT, env=env,
                                  stdin=subprocess.DEVNULL, capture_output=True, text=True, start_new_session=True,
                                  timeout=300, check=False)
            if proc.returncode != 0:
                raise BenchError(f"migrate on PostgreSQL failed: {(proc.stdout + proc.stderr)[-2000:]}")
        except BenchError as exc:
            self.pg_error = f"PostgreSQL set-up failed: {exc}"
            self.failed = True
            self.log(f"  {self.pg_error}")
            return
        self.log(f"  PostgreSQL {pg.version} on 127.0.0.1:{pg.port} (temp dir {pg.dir}, fsync off),"
                 f" template database migrated in {time.perf_counter() - t:.1f}s")

    def layout_env(self, layout: Layout) -> tuple[dict[str, str], Path]:
        """Environment of the layout's servers (a fresh, migrated database of its own) and its log dir."""
        if layout.key == "sqlite-1":  # the database this process's Django uses (latency seeding too)
            return dict(self.env), self.tmp / "sqlite-1"
        var = self.tmp / layout.key
        var.mkdir(parents=True, exist_ok=True)
        if layout.database == "sqlite":
            copy_sqlite(self.tmp / "template.sqlite3", var / "bench.sqlite3")
            url = f"sqlite:///{var / 'bench.sqlite3'}"
        else:
            assert self.pg is not None
            name = "bench_" + layout.key.replace("-", "_")
            self.pg.create_database(name, template=PG_TEMPLATE_DB)
            url = self.pg.url(name)
        return {**self.env, "DATABASE_URL": url, "JOBROUTER_VAR_DIR": str(var)}, var

    def servers(self, env: dict[str, str], logs: Path, gunicorn_workers: int = 0,
                database: PostgresServer | None = None) -> Servers:
        servers = Servers(env, logs, gunicorn_workers=gunicorn_workers, database=database)
        self.cleanups.append(servers.stop)
        return servers

    def release(self, servers: Servers) -> None:
        with signals_deferred():
            servers.stop()
            if servers.stop in self.cleanups:
                self.cleanups.remove(servers.stop)

    def report_failure(self, what: str, exc: BaseException, servers: Servers | None) -> None:
        self.failed = True
        self.log(f"\n  {what} FAILED: {type(exc).__name__}: {exc}")
        for name in servers.names if servers is not None else []:
            tail = servers.log_tail(name, 15)
            if tail:
                self.log(f"  --- last lines of {name}.log ---\n{tail}")
        if servers is not None and servers.database is not None:
            tail = _tail(servers.database.log, 15)
            if tail:
                self.log(f"  --- last lines of postgres.log ---\n{tail}")

    def run_layout(self, layout: Layout) -> LayoutResult:
        cfg = self.cfg
        result = LayoutResult(layout, cfg.threads * layout.processes)
        if layout.database == "postgres" and self.pg_error:
            result.error = self.pg_error
            return result
        env, logs = self.layout_env(layout)
        pg = self.pg if layout.database == "postgres" else None
        servers = self.servers(env, logs, layout.gunicorn_workers, pg)
        self.log(f"\n  -- {layout.label} --")
        try:
            servers.start()
            web = (f"daphne {ASGI_APP}" if not layout.gunicorn_workers else
                   f"gunicorn {ASGI_APP} -k uvicorn.workers.UvicornWorker -w {layout.gunicorn_workers}")
            db = "one SQLite file" if pg is None else f"PostgreSQL database {urlsplit(env['DATABASE_URL']).path[1:]}"
            self.log(f"  {web} on {servers.endpoint} + manage.py qcluster, {db}; {result.threads} client threads")
            base, life = bench_throughput(cfg, servers, self.key, self.log, result.threads)
            print_load(base, self.log, pg is not None)
            print_load(life, self.log, pg is not None)
            result.base, result.life = base, life
        except Exception as exc:  # noqa: BLE001 - reported; the other layouts still run
            result.error = f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"[:200]
            self.report_failure(layout.label, exc, servers)
        finally:
            self.release(servers)
        return result


# --------------------------------------------------------------------------------------------------
# Report
# --------------------------------------------------------------------------------------------------


def print_load(result: LoadResult, log: Callable[[str], None], database: bool = False) -> None:
    c, secs = result.cpu, result.seconds
    log(
        f"  {result.name} (all rounds, {secs:.0f}s measured): {result.units:,} = {result.units_per_s:,.1f}/s;"
        f" {result.requests:,} requests = {result.requests_per_s:,.1f} req/s"
    )
    db = f" + postgres {result.db_ms_per_request:.1f}" if database else ""
    log(f"    CPU: {cores(c, secs, database)}; web {result.web_ms_per_request:.1f}{db} ms/request")
    log(f"    {'request':<20} {'count':>7} {'p50 ms':>8} {'p90 ms':>8} {'p99 ms':>8}")
    for op, times in sorted(result.op_times.items(), key=lambda kv: -statistics.median(kv[1])):
        log(
            f"    {op:<20} {len(times):>7,} {ms(percentile(times, 50)):>8} {ms(percentile(times, 90)):>8}"
            f" {ms(percentile(times, 99)):>8}"
        )


def _cpu_ratio(base: LoadResult, life: LoadResult, with_db: bool = False) -> float:
    """CPU per API request / CPU per baseline request (web processes, optionally + database)."""
    def per_request(r: LoadResult) -> float:
        return (r.cpu.web + (r.cpu.db if with_db else 0.0)) / max(1, r.requests)

    return per_request(life) / per_request(base)


def _range(values: list[float], fmt: str) -> str:
    return f"{format(min(values), fmt)}..{format(max(values), fmt)}" if len(values) > 1 else ""


def layout_rows(res: LayoutResult) -> list[tuple[str, str]]:
    """(metric, value) rows of one layout's column in the summary table."""
    base, life, pg = res.base, res.life, res.layout.database == "postgres"
    assert base is not None and life is not None
    pairs = list(zip(base.rounds, life.rounds, strict=True))
    ratio_rounds = [_cpu_ratio(b, lc) for b, lc in pairs]
    ratio_db_rounds = [_cpu_ratio(b, lc, True) for b, lc in pairs]
    life_rate_rounds = [lc.units_per_s / b.requests_per_s for b, lc in pairs]
    units = max(1, life.units)
    mix = [len(life.op_times.get(op, [])) / units for op in LIFECYCLE_OPS]
    api_times = [t for op in LIFECYCLE_OPS for t in life.op_times.get(op, [])]
    base_times = [t for times in base.op_times.values() for t in times]
    lsecs, bsecs = life.seconds, base.seconds
    na = "-"
    return [
        ("web server (client threads)", f"{res.layout.web_server} ({res.threads})"),
        ("baseline req/s", f"{base.requests_per_s:,.1f}"),
        ("lifecycles/s", f"{life.units_per_s:,.1f}"),
        ("API requests/s", f"{life.requests_per_s:,.1f}"),
        ("lifecycles/s / baseline req/s", f"{life.units_per_s / base.requests_per_s:.3f}"
         f" ({_range(life_rate_rounds, '.3f')})"),
        ("CPU/API req / CPU/baseline req (web)", f"{_cpu_ratio(base, life):.2f} ({_range(ratio_rounds, '.2f')})"),
        ("  the same, web + database", f"{_cpu_ratio(base, life, True):.2f} ({_range(ratio_db_rounds, '.2f')})"
         if pg else "(in web)"),
        ("1 lifecycle costs N baseline requests", f"{life.cpu.web / units / (base.cpu.web / max(1, base.requests)):.1f}"),
        ("web CPU ms / baseline request", f"{base.web_ms_per_request:.2f}"),
        ("web CPU ms / API request", f"{life.web_ms_per_request:.2f}"),
        ("web CPU ms / lifecycle", f"{life.cpu.web / units * 1000:.1f}"),
        ("postgres CPU ms / baseline req, API req", f"{base.db_ms_per_request:.2f}, {life.db_ms_per_request:.2f}"
         if pg else na),
        ("postgres CPU ms / lifecycle", f"{life.cpu.db / units * 1000:.1f}" if pg else na),
        ("background worker CPU ms / lifecycle", f"{life.cpu.qcluster / units * 1000:.2f}"),
        ("requests / lifecycle", f"{sum(mix):.2f}"),
        ("  PATCH+GET+accept+complete+close", "+".join(f"{m:.2f}" for m in mix)),
        ("baseline p50 / p99 ms", f"{ms(percentile(base_times, 50))} / {ms(percentile(base_times, 99))}"),
        ("API request p50 / p99 ms", f"{ms(percentile(api_times, 50))} / {ms(percentile(api_times, 99))}"),
        ("web cores: baseline / lifecycles", f"{base.cpu.web / bsecs:.2f} / {life.cpu.web / lsecs:.2f}"),
        ("lifecycles: qcluster / postgres cores", f"{life.cpu.qcluster / lsecs:.2f} / "
         + (f"{life.cpu.db / lsecs:.2f}" if pg else na)),
        ("lifecycles: client / other cores", f"{life.cpu.client / lsecs:.2f} / {life.cpu.other / lsecs:.2f}"),
    ]


def layout_table(results: list[LayoutResult]) -> list[str]:
    columns: list[dict[str, str]] = []
    metrics: list[str] = []
    for res in results:
        if res.base is None or res.life is None:
            columns.append({"status": "FAILED (see below)" if res.error else "not run"})
            continue
        rows = layout_rows(res)
        columns.append(dict(rows))
        if not metrics:
            metrics = [k for k, _ in rows]
    if not metrics:
        metrics = ["status"]
    elif any("status" in c for c in columns):
        metrics = ["status", *metrics]
    headers = [r.layout.label for r in results]
    cells = [[c.get(m, "ok" if m == "status" else "") for c in columns] for m in metrics]
    width0 = max(len(m) for m in metrics) + 2
    widths = [max(len(h), *(len(row[i]) for row in cells)) + 2 for i, h in enumerate(headers)]
    lines = [f"{'layout':<{width0}}" + "".join(f"{h:>{w}}" for h, w in zip(headers, widths, strict=True))]
    lines.append("-" * (width0 + sum(widths)))
    lines += [f"{m:<{width0}}" + "".join(f"{v:>{w}}" for v, w in zip(row, widths, strict=True))
              for m, row in zip(metrics, cells, strict=True)]
    for res in results:
        if res.error:
            lines.append(f"  {res.layout.label}: {res.error}")
    return lines


def latency_rows(lat: list[LatencyResult]) -> list[str]:
    rows: list[tuple[str, str]] = []
    for r in lat:
        tag = f"backlog {r.backlog:>7,}, {r.workers:,} workers"
        rows.append((f"{tag}: offer visible p50 / p99",
                     f"{ms(percentile(r.visible, 50))} / {ms(percentile(r.visible, 99))} ms"))
        rows.append((f"{tag}: PATCH round trip p50 / p99",
                     f"{ms(percentile(r.patch_rtt, 50))} / {ms(percentile(r.patch_rtt, 99))} ms"))
        rows.append((f"{tag}: accept / complete / close p50",
                     f"{ms(percentile(r.accept_rtt, 50))} / {ms(percentile(r.complete_rtt, 50))}"
                     f" / {ms(percentile(r.close_rtt, 50))} ms"))
    if not rows:
        return []
    width = max(len(k) for k, _ in rows) + 2
    lines = [f"{'metric':<{width}}value", "-" * (width + 40)]
    lines += [f"{k:<{width}}{val}" for k, val in rows]
    n = min(len(r.visible) for r in lat)
    lines.append(f"latency: {n} samples per backlog size (after 3 warm-up samples), one at a time; nearest-rank")
    lines.append("percentiles, so with fewer than 100 samples p99 is the slowest sample.")
    return lines


def summary(results: list[LayoutResult], lat: list[LatencyResult]) -> str:
    lines = ["Throughput by deployment layout (lifecycle = PATCH job -> GET worker -> accept -> complete -> close;"
             " CPU from /proc during the measured windows)"]
    lines += layout_table(results)
    if lat:
        lines += ["", "Job created -> offer visible (1 process, SQLite)"]
        lines += latency_rows(lat)
    for res in results:
        if res.base is None or res.life is None:
            continue
        secs = res.base.seconds + res.life.seconds
        busy = (res.base.cpu.other + res.life.cpu.other) / secs
        if busy > 0.25:
            lines.append(f"NOTE: {res.layout.label}: other processes used {busy:.2f} of {os.cpu_count()} cores during"
                         " the throughput windows; absolute figures are depressed, the interleaved ratios less so.")
        client = res.life.cpu.client / res.life.seconds
        if client > 0.7:
            lines.append(f"NOTE: {res.layout.label}: the client (this script, one Python process) used {client:.2f}"
                         " cores during the lifecycle windows; it may limit the rates, not the CPU ratios.")
    return "\n".join(lines)


def _loadavg() -> str:
    return " / ".join(f"{x:.2f}" for x in os.getloadavg())


def main(argv: list[str] | None = None) -> int:
    cfg = Config.from_args(argv)
    started = time.perf_counter()

    def log(msg: str) -> None:
        print(msg, flush=True)

    # Also SIGINT: a shell starts background jobs with it ignored, and `kill -INT` must still stop us.
    for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(signum, _raise_interrupt)

    tmp = Path(tempfile.mkdtemp(prefix="jobrouter-bench-"))
    env = prepare_environment(tmp, cfg.settings)
    run = Run(cfg, tmp, env, log)
    lat_servers: Servers | None = None
    code = 1
    try:
        import django

        log(f"Job router benchmark ({'quick' if cfg.quick else 'full'} mode), {time.strftime('%a %d %b %Y %H:%M %Z')}")
        log(
            f"  python {platform.python_version()}, django {django.get_version()}, sqlite {sqlite3.sqlite_version},"
            f" {os.cpu_count()} CPUs, load average {_loadavg()} (1/5/15 min), temp dir {tmp}"
            f"{'' if cfg.settings == 'jobrouter.settings' else ', settings ' + cfg.settings}"
        )
        setup_django()
        copy_sqlite(tmp / "bench.sqlite3", tmp / "template.sqlite3")  # migrated, empty: for the other SQLite layouts

        layouts = Layout.all(cfg)
        if any(lay.database == "postgres" for lay in layouts):
            bin_dir, reason = PostgresServer.find() if cfg.postgres else (None, "--no-postgres")
            if bin_dir is None:
                log(f"  PostgreSQL layouts skipped: {reason}")
                layouts = [lay for lay in layouts if lay.database != "postgres"]
            else:
                run.start_postgres(bin_dir)

        log(
            f"\n[1/2] Throughput by layout ({', '.join(lay.label for lay in layouts)}): {cfg.threads} client threads"
            f" per web process, {cfg.rounds} interleaved rounds per layout (baseline {cfg.baseline_window:g}s,"
            f" lifecycles {cfg.lifecycle_window:g}s per round, after {cfg.warmup:g}s warm-up each)"
        )
        log("  baseline  = signed POST /baseline/rows (HMAC check + DRF + one INSERT)")
        log("  lifecycle = PATCH job -> GET worker until the offer shows -> accept -> complete -> close")
        results = [run.run_layout(layout) for layout in layouts]

        lat: list[LatencyResult] = []
        if cfg.backlogs:
            log(
                f"\n[2/2] Job created -> offer visible, 1 process, SQLite (the database of its throughput run),"
                f" {cfg.workers:,} workers, backlogs {', '.join(f'{b:,}' for b in cfg.backlogs)}"
            )
            lat_servers = run.servers(dict(env), tmp / "latency")
            try:
                lat_servers.start()
                lat = bench_latency(cfg, lat_servers, run.key, log)
            except Exception as exc:  # noqa: BLE001 - reported with the throughput results
                run.report_failure("latency", exc, lat_servers)
            finally:
                run.release(lat_servers)

        log(f"\nSummary (run time {time.perf_counter() - started:.0f}s, load average at the end {_loadavg()})")
        log(summary(results, lat))
        code = 1 if run.failed else 0
        if code:
            log("\nBENCHMARK FAILED: see the errors above")
        return code
    except KeyboardInterrupt:
        log("\ninterrupted")
        code = 130
        return code
    except Exception as exc:  # noqa: BLE001
        log(f"\nBENCHMARK FAILED: {type(exc).__name__}: {exc}")
        return 1
    finally:
        with signals_deferred(reraise=False):
            run.cleanup()
            if cfg.keep or code == 1:
                log(f"(temp directory kept: {tmp})")
            else:
                shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
