#!/usr/bin/env python
"""Router events (issue 10): what one webhook subscription costs the lifecycle rate, and how soon
a receiver gets the events, against a baseline measured in the same run.

    python benchmarks/events.py [--quick] [--threads 8] [--rounds 4] [--window 15]

On a fresh SQLite database in a temp directory: one daphne + one `manage.py qcluster` (as
benchmarks/run.py's `1 process, SQLite` layout) and a local webhook receiver in this process
(HTTP/1.1, answers the Event Grid validation handshake and 200 to every notification). Then
interleaved rounds of full job lifecycles through the REST API (PATCH job → GET worker until the
offer shows → accept → complete → close, 8 client threads), alternately:
- without a subscription (baseline): the events are still written (the outbox and the timeline),
  nothing is delivered;
- with one subscription (all 22 types, Event Grid schema, one event per POST) to the receiver.
Reported: lifecycles/s of both and their ratio (target ≥ 0.9), and commit → receiver latency
p50 / p99: from the event's `eventTime` (the transition's clock reading, taken just before its
commit, so this slightly over-states the latency) to its arrival at the receiver.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import shutil
import statistics
import sys
import tempfile
import time
from datetime import datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.run import (  # noqa: E402
    Config,
    LoadResult,
    Servers,
    SignedClient,
    api,
    cores,
    lifecycle_window,
    percentile,
    prepare_environment,
    setup_django,
    setup_lifecycles,
)

SUBSCRIPTION = "bench-events"


def _serve_receiver(record: str, port_pipe) -> None:
    """The receiver process: answers the handshake and 200 to every notification, and appends
    `<event type> <seconds from eventTime to arrival>` per event to `record`."""
    out = open(record, "a", buffering=1)

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_POST(self):  # noqa: N802
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            arrived = time.time()
            events = json.loads(body)
            answer = b""
            if self.headers.get("aeg-event-type") == "SubscriptionValidation":
                answer = json.dumps({"validationResponse": events[0]["data"]["validationCode"]}).encode()
            else:
                for event in events:
                    sent = datetime.fromisoformat(event["eventTime"]).timestamp()
                    out.write(f"{event['eventType'].rsplit('.', 1)[1]} {arrived - sent:.6f}\n")
            self.send_response(200)
            self.send_header("Content-Length", str(len(answer)))
            self.end_headers()
            self.wfile.write(answer)

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    port_pipe.send(server.server_address[1])
    server.serve_forever(poll_interval=0.05)


class Receiver:
    """A webhook receiver in a process of its own (the load generator's threads would otherwise
    delay its answers, and the delivery loop waits for them)."""

    def __init__(self, tmp: Path) -> None:
        self.record = tmp / "received.txt"
        self.record.touch()
        parent, child = multiprocessing.get_context("fork").Pipe()
        self.process = multiprocessing.get_context("fork").Process(
            target=_serve_receiver, args=(str(self.record), child), daemon=True)
        self.process.start()
        self.port = parent.recv()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/events"

    def latencies(self) -> dict[str, list[float]]:
        by_type: dict[str, list[float]] = {}
        for line in self.record.read_text().splitlines():
            name, seconds = line.split()
            by_type.setdefault(name, []).append(float(seconds))
        return by_type

    def stop(self) -> None:
        self.process.terminate()
        self.process.join(5)


def subscribe(client: SignedClient, url: str) -> None:
    client.call("setup", "PATCH", api(f"/routing/eventSubscriptions/{SUBSCRIPTION}"), {"endpointUrl": url})
    deadline = time.monotonic() + 30
    while client.call("setup", "GET", api(f"/routing/eventSubscriptions/{SUBSCRIPTION}"))["provisioningState"] \
            != "Succeeded":
        if time.monotonic() > deadline:
            raise RuntimeError("the subscription was not validated within 30 s")
        time.sleep(0.05)


def unsubscribe(client: SignedClient) -> None:
    client.call("setup", "DELETE", api(f"/routing/eventSubscriptions/{SUBSCRIPTION}"), expect=(204, 404))


def run_rounds(cfg: Config, servers: Servers, key: str, admin: SignedClient, receiver: Receiver,
               worker_ids: list[str]) -> tuple[list[LoadResult], list[LoadResult]]:
    """Interleaved lifecycle windows without and with the subscription (W S, S W, ...)."""
    without: list[LoadResult] = []
    with_sub: list[LoadResult] = []
    for r in range(cfg.rounds):
        order = ("without", "with") if r % 2 == 0 else ("with", "without")
        for kind in order:
            if kind == "with":
                subscribe(admin, receiver.url)
                res = lifecycle_window(cfg, servers, key, worker_ids)
                # Let the last events of the window arrive before the subscription goes.
                time.sleep(1.0)
                unsubscribe(admin)
                with_sub.append(res)
            else:
                res = lifecycle_window(cfg, servers, key, worker_ids)
                without.append(res)
            print(f"  round {r + 1}/{cfg.rounds} {kind + ' subscription':<22} {res.units_per_s:7.1f} lifecycles/s",
                  flush=True)
    return without, with_sub


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[1])
    parser.add_argument("--quick", action="store_true", help="2 rounds of 4 s windows")
    parser.add_argument("--threads", type=int, default=8)
    parser.add_argument("--rounds", type=int)
    parser.add_argument("--window", type=float)
    args = parser.parse_args(argv)
    flags = ["--quick"] if args.quick else []
    flags += ["--threads", str(args.threads)]
    if args.rounds:
        flags += ["--rounds", str(args.rounds)]
    if args.window:
        flags += ["--window", str(args.window)]
    cfg = Config.from_args(flags)
    tmp = Path(tempfile.mkdtemp(prefix="events-bench-"))
    servers = None
    receiver = None
    try:
        env = prepare_environment(tmp, cfg.settings)
        env["JOBROUTER_ALLOW_HTTP_WEBHOOKS"] = "true"
        setup_django()
        key = env["JOBROUTER_ACCESS_KEY"]
        receiver = Receiver(tmp)  # forked before any thread starts
        servers = Servers(env, tmp)
        servers.start()
        admin = SignedClient(servers.endpoint, key)
        worker_ids = setup_lifecycles(servers, key, cfg.threads)
        without, with_sub = run_rounds(cfg, servers, key, admin, receiver, worker_ids)
        base = LoadResult.combine("without", without)
        subscribed = LoadResult.combine("with", with_sub)
        by_type = receiver.latencies()
        lat = sorted(x for values in by_type.values() for x in values)
        print()
        print(f"lifecycles/s without a subscription: {base.units_per_s:.1f}")
        print(f"lifecycles/s with one subscription:  {subscribed.units_per_s:.1f}"
              f"  ({subscribed.units_per_s / base.units_per_s:.2f}x; target >= 0.90)")
        if lat:
            print(f"commit -> receiver latency over {len(lat)} events: p50 {percentile(lat, 50) * 1000:.0f} ms, "
                  f"p99 {percentile(lat, 99) * 1000:.0f} ms, mean {statistics.mean(lat) * 1000:.0f} ms")
        for res in (base, subscribed):
            print(f"  CPU ({res.name} subscription): {cores(res.cpu, res.seconds, False)}")
            print(f"  REST call p50/p99 ({res.name} subscription): " + ", ".join(
                f"{op} {percentile(times, 50) * 1000:.0f}/{percentile(times, 99) * 1000:.0f} ms"
                for op, times in sorted(res.op_times.items())))
        for name, values in sorted(by_type.items()):
            print(f"  {name:<28} p50 {percentile(values, 50) * 1000:6.0f} ms  p99 {percentile(values, 99) * 1000:6.0f} ms")
        admin.close()
        return 0
    finally:
        if servers is not None:
            servers.stop()
        if receiver is not None:
            receiver.stop()
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
