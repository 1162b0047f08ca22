#!/usr/bin/env python
"""In-process profile of the requests that benchmarks/run.py drives over HTTP.

    python benchmarks/profile_requests.py [--backlog 100000] [--workers 1000] [--cprofile]

No server processes: a temp SQLite database is created and migrated, and each request goes through
Django's full middleware stack (HMAC check included) with `django.test.Client`, signed like the SDK.
For every step of a job lifecycle it prints the number of SQL queries, their total time and the
slowest ones; `--cprofile` adds the top functions by cumulative time. Also prints SQLite's query
plan for the matching queries that depend on the backlog size.
"""

from __future__ import annotations

import argparse
import base64
import cProfile
import io
import json
import os
import pstats
import secrets
import shutil
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

API = "api-version=2023-11-01"


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--backlog", type=int, default=100_000)
    parser.add_argument("--workers", type=int, default=1000)
    parser.add_argument("--cprofile", action="store_true")
    parser.add_argument("--show-sql", type=int, default=4, help="slowest queries shown per request")
    args = parser.parse_args()

    tmp = Path(tempfile.mkdtemp(prefix="jobrouter-profile-"))
    os.environ["DJANGO_SETTINGS_MODULE"] = "jobrouter.settings"
    os.environ["DATABASE_URL"] = f"sqlite:///{tmp / 'profile.sqlite3'}"
    os.environ["JOBROUTER_ACCESS_KEY"] = base64.b64encode(secrets.token_bytes(32)).decode()
    os.environ["JOBROUTER_VAR_DIR"] = str(tmp)
    os.environ.setdefault("DJANGO_ALLOWED_HOSTS", "*")
    try:
        run(args)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return 0


def run(args) -> None:
    import django

    django.setup()
    from django.conf import settings
    from django.core.management import call_command
    from django.db import connection
    from django.test import Client
    from django.test.utils import CaptureQueriesContext

    import benchmarks.baseline_app  # noqa: F401  (installs /baseline/rows)
    from benchmarks.run import seed_backlog, seed_workers
    from routing.api.auth import sign_request
    from routing.models import Job, JobStatus, Offer

    call_command("migrate", verbosity=0)
    key = settings.JOBROUTER_ACCESS_KEY
    client = Client()

    def call(method: str, path: str, body=None):
        data = b"" if body is None else json.dumps(body).encode()
        headers = sign_request(method=method, path_and_query=path, host="testserver", body=data, access_key=key)
        ctype = "application/merge-patch+json" if method == "PATCH" else "application/json"
        extra = {f"HTTP_{k.upper().replace('-', '_')}": val for k, val in headers.items()}
        extra["HTTP_HOST"] = "testserver"
        resp = client.generic(method, path, data=data, content_type=ctype, **extra)
        assert resp.status_code in (200, 201), (method, path, resp.status_code, resp.content[:300])
        return resp.json() if resp.content else None

    def profiled(label: str, method: str, path: str, body=None):
        profiler = cProfile.Profile() if args.cprofile else None
        with CaptureQueriesContext(connection) as ctx:
            t = time.perf_counter()
            if profiler:
                profiler.enable()
            out = call(method, path, body)
            if profiler:
                profiler.disable()
            elapsed = time.perf_counter() - t
        queries = ctx.captured_queries
        sql_s = sum(float(q["time"]) for q in queries)
        kinds = Counter(q["sql"].split()[0].upper() for q in queries)
        print(f"\n{label}: {elapsed * 1000:.1f} ms, {len(queries)} queries ({sql_s * 1000:.1f} ms in SQL) "
              + ", ".join(f"{k} {n}" for k, n in kinds.most_common()))
        for q in sorted(queries, key=lambda q: -float(q["time"]))[: args.show_sql]:
            print(f"   {float(q['time']) * 1000:6.1f} ms  {q['sql'][:260]}")
        if profiler:
            s = io.StringIO()
            stats = pstats.Stats(profiler, stream=s)
            stats.sort_stats("cumulative").print_stats(60)
            own = [line for line in s.getvalue().splitlines() if "/work/main/" in line and "/.venv/" not in line]
            print("   project functions by cumulative time:")
            print("\n".join(own[:14]))
            s.seek(0)
            s.truncate()
            stats.sort_stats("tottime").print_stats(10)
            print("   top functions by own time:")
            print("\n".join(line for line in s.getvalue().splitlines() if "(" in line and "ncalls" not in line))
        return out

    def lifecycle(label: str, queue: str, worker: str | None, selector: bool):
        job_id = f"{label}-{secrets.token_hex(3)}"
        body = {"channelId": "voice", "queueId": queue}
        if selector:
            body["requestedWorkerSelectors"] = [{"key": "Id", "labelOperator": "equal", "value": worker}]
        profiled(f"[{label}] PATCH job", "PATCH", f"/routing/jobs/{job_id}?{API}", body)
        offer = Offer.objects.filter(job_id=job_id).values_list("id", "worker_id").first()
        assert offer, "no offer issued"
        offer_id, worker = offer
        profiled(f"[{label}] GET worker", "GET", f"/routing/workers/{worker}?{API}")
        res = profiled(f"[{label}] POST accept", "POST", f"/routing/workers/{worker}/offers/{offer_id}:accept?{API}", {})
        aid = res["assignmentId"]
        profiled(f"[{label}] POST complete", "POST", f"/routing/jobs/{job_id}/assignments/{aid}:complete?{API}", {})
        profiled(f"[{label}] POST close", "POST", f"/routing/jobs/{job_id}/assignments/{aid}:close?{API}", {})

    print("== setup")
    call("PATCH", f"/routing/distributionPolicies/dp?{API}",
         {"offerExpiresAfterSeconds": 300, "mode": {"kind": "longestIdle", "minConcurrentOffers": 1, "maxConcurrentOffers": 1}})
    for q in ("small-q", "big-q"):
        call("PATCH", f"/routing/queues/{q}?{API}", {"distributionPolicyId": "dp"})
    for i in range(8):
        call("PATCH", f"/routing/workers/w{i}?{API}", {"capacity": 1, "queues": ["small-q"],
             "channels": [{"channelId": "voice", "capacityCostPerJob": 1}], "availableForOffers": True})
    profiled("[baseline] POST /baseline/rows", "POST", "/baseline/rows", {"tag": "x"})

    print("\n== lifecycle, 8 workers, job selector Id equal <worker>, no backlog")
    lifecycle("warm", "small-q", "w0", True)
    lifecycle("small", "small-q", "w1", True)

    print(f"\n== lifecycle, {args.workers:,} workers, backlog {args.backlog:,} queued jobs in the same queue")
    seed_workers("big-q", args.workers)
    seed_backlog("big-q", 0, args.backlog)
    lifecycle("big", "big-q", None, False)

    print("\n== SQLite plan of the backlog-dependent query (the job walk of match_worker)")
    jobs = (
        Job.objects.filter(status=JobStatus.QUEUED, queue_id__in=["big-q"], channel_id__in=["voice"])
        .select_related("queue__distribution_policy")
        .order_by("-queue__priority", "-expedite", "-priority", "enqueued_at", "id")[:500]
    )
    sql, params = jobs.query.sql_with_params()
    with connection.cursor() as cur:
        cur.execute("EXPLAIN QUERY PLAN " + sql, params)
        plan = [row[-1] for row in cur.fetchall()]
        t = time.perf_counter()
        cur.execute(sql, params)
        rows = cur.fetchall()
        took = time.perf_counter() - t
    print(f"{len(rows)} rows in {took * 1000:.1f} ms with {args.backlog:,} queued jobs on another channel in the queue")
    for step in plan:
        print(f"   {step}")


if __name__ == "__main__":
    sys.exit(main())
