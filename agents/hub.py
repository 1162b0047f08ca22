"""The push hub: one per web process, it turns router changes into frames and fans them out.

Every change a domain operation commits leaves `RouterEvent` rows (`worker:<id>`, `job:<id>`,
`queue:<id>`; `routing.services.notify`), in the same transaction. The hub reads them in id
order — woken at once by a commit in this process, and every `POLL_SECONDS` for commits of other
processes (other web processes, the background worker's timers) — so it sees every change of
every process, whatever the channel layer, and a socket never depends on a channel-layer message
that could expire.

For each batch of changes it renders what changed **once** (`agents.frames`, in its own render
thread, so pushes never queue behind desk actions, which run on the request thread) and sends
the same bytes to every socket showing it:

- `desk:<worker>`: that worker's desk frame, to that worker's desks only, at once;
- `queue:<id>`: the queue's status, to desks serving it and to supervisors, at most every
  `QUEUE_MIN_INTERVAL` seconds per queue and only when it changed;
- `catalog`: the queues agents may serve, when it changed;
- `workers`: supervisor rows of the workers that changed, at most every `WORKERS_MIN_INTERVAL`;
- `waiting:<job>`: a customer's place in line, when the job or its queue changed.

Each frame carries its `topic` and a per-topic `seq` (1, 2, 3, … in this process). Pages check
that `seq` grows by one; every `HEARTBEAT_SECONDS` each socket gets `{"type": "heartbeat",
"seqs": {topic: seq}}` for its topics, so a page that missed the last frame of a topic notices
too, and asks for a `refresh`.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections import defaultdict
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Protocol

from django.db import connection
from django.db.models import Max

from agents import frames
from routing import clock
from routing.models import RouterEvent
from routing.services import notify
from routing.validation import format_datetime

logger = logging.getLogger("agents.hub")

POLL_SECONDS = 0.05
QUEUE_MIN_INTERVAL = 0.25
WORKERS_MIN_INTERVAL = 0.5
HEARTBEAT_SECONDS = 15.0
EVENT_BATCH = 2000
# Yield to the event loop (desk actions, new connections) every this many sends.
SENDS_PER_YIELD = 50

QUEUES_ALL = "queue:*"
WORKERS = "workers"
CATALOG = "catalog"


class Listener(Protocol):
    """A socket the hub pushes to (`agents.consumers`)."""

    async def deliver(self, text: str) -> None: ...


@dataclass
class Changes:
    """What a batch of events touched, after resolving workers and jobs to their queues."""

    last_id: int
    workers: set[str] = field(default_factory=set)
    jobs: set[str] = field(default_factory=set)
    queues: set[str] = field(default_factory=set)
    queue_events: set[str] = field(default_factory=set)


@dataclass
class Plan:
    """What one render pass draws."""

    desks: set[str] = field(default_factory=set)
    rows: set[str] = field(default_factory=set)
    queues: set[str] = field(default_factory=set)
    waiting: set[str] = field(default_factory=set)
    catalog: bool = False
    supervisor_snapshot: bool = False

    def empty(self) -> bool:
        return not (self.desks or self.rows or self.queues or self.waiting or self.catalog or self.supervisor_snapshot)


@dataclass
class Drawn:
    desks: dict[str, dict[str, Any]] = field(default_factory=dict)
    queues: dict[str, dict[str, Any]] = field(default_factory=dict)
    waiting: dict[str, dict[str, Any]] = field(default_factory=dict)
    workers: dict[str, Any] | None = None
    catalog: dict[str, Any] | None = None
    supervisor: dict[str, Any] | None = None


def _latest_event_id() -> int:
    return RouterEvent.objects.aggregate(m=Max("id"))["m"] or 0


def _collect(after: int) -> Changes:
    """Read the events after `after` and resolve them to workers, jobs and queues."""
    rows = list(RouterEvent.objects.filter(id__gt=after).order_by("id").values_list("id", "topic")[:EVENT_BATCH])
    changes = Changes(last_id=rows[-1][0] if rows else after)
    for _id, topic in rows:
        kind, _, ident = topic.partition(":")
        if kind == "worker":
            changes.workers.add(ident)
        elif kind == "job":
            changes.jobs.add(ident)
        elif kind == "queue":
            changes.queue_events.add(ident)
    changes.queues |= changes.queue_events
    # A worker's availability and a job's status show in their queues' frames.
    for served in frames.served_queues(changes.workers).values():
        changes.queues |= served
    changes.queues |= set(frames.job_queues(changes.jobs).values())
    return changes


def _draw(plan: Plan) -> Drawn:
    now = clock.now()
    drawn = Drawn()
    if plan.desks:
        drawn.desks = frames.desk_frames(plan.desks, now)
    if plan.queues:
        drawn.queues = frames.queue_frames(plan.queues, now)
    if plan.waiting:
        drawn.waiting = frames.waiting_frames(plan.waiting, now)
    if plan.rows:
        drawn.workers = frames.workers_frame(plan.rows, now)
    if plan.catalog:
        drawn.catalog = frames.catalog_frame(now)
    if plan.supervisor_snapshot:
        drawn.supervisor = frames.supervisor_frame(now)
    return drawn


def _in_thread(fn: Callable[..., Any]) -> Callable[..., Any]:
    """Run a database read in the render thread. The thread keeps its connection between
    passes (no reconnect per frame); one that failed is closed and replaced on the next pass."""

    def run(*args: Any) -> Any:
        try:
            return fn(*args)
        except Exception:
            # A dropped connection (database restart) is replaced on the next pass.
            connection.close()
            raise

    return run


class Hub:
    """Subscriptions, dirty sets and the render/send loop of one web process (see module doc)."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.listeners: dict[str, set[Listener]] = defaultdict(set)
        self.topics_of: dict[Listener, set[str]] = {}
        self.seq: dict[str, int] = defaultdict(int)
        self.shared: dict[str, str] = {}  # last sent text of queue:<id> and catalog
        self.shared_seq: dict[str, int] = {}
        self.delivered: dict[Listener, dict[str, int]] = defaultdict(dict)  # shared topic → seq sent
        self.fingerprints: dict[str, str] = {}
        self.pending = Plan()
        self.desk_snapshots: set[Listener] = set()
        self.supervisor_snapshots: set[Listener] = set()
        self.waiting_by_queue: dict[str, set[str]] = defaultdict(set)
        self.waiting_instance: dict[Listener, str] = {}  # the job instance a waiting room's link names
        self.queue_due: dict[str, float] = {}
        self.workers_due = 0.0
        self.last_event_id: int | None = None
        self.wake = asyncio.Event()
        self.executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="push-render")
        self.task: asyncio.Task[None] | None = None
        self.last_heartbeat = time.monotonic()

    # --- subscriptions --------------------------------------------------------------------

    def subscribe(self, listener: Listener, topics: set[str]) -> set[str]:
        """Set a listener's topics; returns the topics it newly joined."""
        current = self.topics_of.get(listener, set())
        for topic in current - topics:
            self.listeners[topic].discard(listener)
        for topic in topics - current:
            self.listeners[topic].add(listener)
        self.topics_of[listener] = set(topics)
        return topics - current

    def drop(self, listener: Listener) -> None:
        self.delivered.pop(listener, None)
        self.waiting_instance.pop(listener, None)
        for topic in self.topics_of.pop(listener, set()):
            self.listeners[topic].discard(listener)
        self.desk_snapshots.discard(listener)
        self.supervisor_snapshots.discard(listener)

    def attach_desk(self, listener: Listener, worker_id: str) -> None:
        """A desk opened (or asked for a refresh): send it everything it shows."""
        self.subscribe(listener, {f"desk:{worker_id}", CATALOG} | self._queue_topics(listener))
        self.delivered.pop(listener, None)  # a refresh resends the shared frames too
        self.desk_snapshots.add(listener)
        self.pending.desks.add(worker_id)
        self.nudge()

    def attach_supervisor(self, listener: Listener) -> None:
        self.subscribe(listener, {QUEUES_ALL, WORKERS})
        self.supervisor_snapshots.add(listener)
        self.nudge()

    def attach_waiting(self, listener: Listener, job_id: str, instance: str) -> None:
        """A waiting room opened on the job `job_id` as created at `instance` (the `createdAt`
        of its frames): it is sent that job's frames, and `gone` once the row under that id is
        another instance."""
        self.subscribe(listener, {f"waiting:{job_id}"})
        self.waiting_instance[listener] = instance
        self.pending.waiting.add(job_id)
        self.nudge()

    def _queue_topics(self, listener: Listener) -> set[str]:
        return {t for t in self.topics_of.get(listener, set()) if t.startswith("queue:") and t != QUEUES_ALL}

    # --- the loop -------------------------------------------------------------------------

    def nudge(self) -> None:
        """Wake the loop now (thread-safe: called after commits on request threads)."""
        try:
            self.loop.call_soon_threadsafe(self.wake.set)
        except RuntimeError:
            pass  # the loop is closed (process shutting down, or a finished test)

    def start(self) -> None:
        if self.task is None or self.task.done():
            self.task = self.loop.create_task(self._run())

    async def _run(self) -> None:
        while True:
            try:
                await self._cycle()
            except asyncio.CancelledError:
                raise
            except Exception:
                logger.exception("push cycle failed; retrying")
                await asyncio.sleep(POLL_SECONDS)
            await self._sleep()

    async def _sleep(self) -> None:
        delay = POLL_SECONDS
        if self.queue_due and self._watched_dirty_queues():
            delay = max(0.0, min(delay, min(self.queue_due.values()) - time.monotonic()))
        try:
            await asyncio.wait_for(self.wake.wait(), timeout=delay)
        except TimeoutError:
            pass
        self.wake.clear()

    async def _thread(self, fn: Callable[..., Any], *args: Any) -> Any:
        return await self.loop.run_in_executor(self.executor, _in_thread(fn), *args)

    async def _cycle(self) -> None:
        if self.last_event_id is None:
            self.last_event_id = await self._thread(_latest_event_id)
        changes: Changes = await self._thread(_collect, self.last_event_id)
        self.last_event_id = changes.last_id
        self._absorb(changes)
        plan = self._plan()
        if not plan.empty():
            drawn: Drawn = await self._thread(_draw, plan)
            await self._dispatch(drawn)
        if time.monotonic() - self.last_heartbeat >= HEARTBEAT_SECONDS:
            self.last_heartbeat = time.monotonic()
            await self._heartbeat()

    def _absorb(self, changes: Changes) -> None:
        """Turn changes into pending work for the topics someone watches."""
        for worker_id in changes.workers:
            if self.listeners.get(f"desk:{worker_id}"):
                self.pending.desks.add(worker_id)
        if self.listeners.get(WORKERS):
            self.pending.rows |= changes.workers
        for job_id in changes.jobs:
            if self.listeners.get(f"waiting:{job_id}"):
                self.pending.waiting.add(job_id)
        self.pending.queues |= changes.queues
        if changes.queue_events:
            if self.listeners.get(CATALOG):
                self.pending.catalog = True
            else:
                self._forget(CATALOG)

    def _watched(self, queue_id: str) -> bool:
        return bool(self.listeners.get(f"queue:{queue_id}") or self.listeners.get(QUEUES_ALL)
                    or self.waiting_by_queue.get(queue_id))

    def _watched_dirty_queues(self) -> bool:
        return any(self._watched(q) for q in self.pending.queues)

    def _plan(self) -> Plan:
        """Take what is due out of `pending`: desks and waiting rooms at once, queues and
        supervisor rows at their minimum intervals."""
        now = time.monotonic()
        pending, plan = self.pending, Plan()
        plan.desks, pending.desks = pending.desks, set()
        plan.waiting, pending.waiting = pending.waiting, set()
        plan.catalog, pending.catalog = pending.catalog, False
        for queue_id in {q for q in pending.queues if not self._watched(q)}:
            # Nobody shows it: drop the change, and the cached frame it makes stale, so the next
            # page to show this queue gets a fresh render.
            pending.queues.discard(queue_id)
            self._forget(f"queue:{queue_id}")
        plan.queues = {q for q in pending.queues if self.queue_due.get(q, 0.0) <= now}
        pending.queues -= plan.queues
        for queue_id in plan.queues:
            self.queue_due[queue_id] = now + QUEUE_MIN_INTERVAL
            plan.waiting |= self.waiting_by_queue.get(queue_id, set())
        if pending.rows and now >= self.workers_due:
            plan.rows, pending.rows = pending.rows, set()
            self.workers_due = now + WORKERS_MIN_INTERVAL
        if self.supervisor_snapshots:
            plan.supervisor_snapshot = True
        if self.desk_snapshots and CATALOG not in self.shared:
            plan.catalog = True
        return plan

    # --- sending --------------------------------------------------------------------------

    def _stamp(self, topic: str, frame: dict[str, Any]) -> str:
        self.seq[topic] += 1
        return json.dumps({**frame, "topic": topic, "seq": self.seq[topic]}, separators=(",", ":"))

    async def _send(self, listeners: set[Listener] | list[Listener], text: str, shared: str | None = None) -> None:
        """Send one text to each listener; `shared` names a shared topic, whose seq each
        listener is then known to have (so a snapshot does not send it twice)."""
        for i, listener in enumerate(list(listeners)):
            try:
                await listener.deliver(text)
                if shared is not None:
                    self.delivered[listener][shared] = self.shared_seq[shared]
            except Exception:
                logger.info("dropping a listener that could not be sent to", exc_info=True)
                self.drop(listener)
            if i % SENDS_PER_YIELD == SENDS_PER_YIELD - 1:
                await asyncio.sleep(0)

    def _forget(self, topic: str) -> None:
        self.shared.pop(topic, None)
        self.fingerprints.pop(topic, None)

    def _share(self, topic: str, frame: dict[str, Any]) -> None:
        self.shared[topic] = self._stamp(topic, frame)
        self.shared_seq[topic] = self.seq[topic]

    def _changed(self, topic: str, fingerprint: Any) -> bool:
        text = json.dumps(fingerprint, sort_keys=True, separators=(",", ":"))
        if self.fingerprints.get(topic) == text:
            return False
        self.fingerprints[topic] = text
        return True

    async def _dispatch(self, drawn: Drawn) -> None:
        await self._dispatch_desks(drawn)
        await self._dispatch_queues(drawn)
        if drawn.catalog is not None and self._changed(CATALOG, drawn.catalog["queues"]):
            self._share(CATALOG, drawn.catalog)
            await self._send(self.listeners.get(CATALOG, set()), self.shared[CATALOG], shared=CATALOG)
        await self._deliver_snapshots_to_desks()
        if drawn.workers is not None:
            await self._send(self.listeners.get(WORKERS, set()), self._stamp(WORKERS, drawn.workers))
        if drawn.supervisor is not None:
            await self._dispatch_supervisor_snapshot(drawn.supervisor)
        for job_id, frame in drawn.waiting.items():
            await self._dispatch_waiting(job_id, frame)

    async def _dispatch_desks(self, drawn: Drawn) -> None:
        for worker_id, frame in drawn.desks.items():
            topic = f"desk:{worker_id}"
            listeners = self.listeners.get(topic, set())
            wanted = {f"queue:{q['id']}" for q in frame["myQueues"]}
            for listener in listeners:
                joined = self.subscribe(listener, {topic, CATALOG} | wanted)
                if joined - {topic, CATALOG}:
                    self.desk_snapshots.add(listener)
            # Queues the desk started serving need a frame even if nobody else watches them.
            self.pending.queues |= {t.split(":", 1)[1] for t in wanted if t not in self.shared}
            await self._send(listeners, self._stamp(topic, frame))

    async def _dispatch_queues(self, drawn: Drawn) -> None:
        for queue_id, frame in drawn.queues.items():
            topic = f"queue:{queue_id}"
            fingerprint = {k: v for k, v in frame["queue"].items() if k != "longestWaitSeconds"}
            if not self._changed(topic, fingerprint) and topic in self.shared:
                continue
            self._share(topic, frame)
            audience = self.listeners.get(topic, set()) | self.listeners.get(QUEUES_ALL, set())
            await self._send(audience, self.shared[topic], shared=topic)

    async def _deliver_snapshots_to_desks(self) -> None:
        """Desks that opened or joined queues get the shared frames they have not seen."""
        ready = {listener for listener in self.desk_snapshots
                 if all(t in self.shared for t in self._queue_topics(listener))}
        self.desk_snapshots -= ready
        for listener in ready:
            for topic in sorted(self._queue_topics(listener)) + [CATALOG]:
                if topic in self.shared and self.delivered[listener].get(topic) != self.shared_seq[topic]:
                    await self._send([listener], self.shared[topic], shared=topic)

    async def _dispatch_supervisor_snapshot(self, frame: dict[str, Any]) -> None:
        seqs = {t: s for t, s in self.seq.items() if t.startswith("queue:") or t == WORKERS}
        text = json.dumps({**frame, "seqs": seqs}, separators=(",", ":"))
        listeners, self.supervisor_snapshots = self.supervisor_snapshots, set()
        await self._send(listeners, text)

    async def _dispatch_waiting(self, job_id: str, frame: dict[str, Any]) -> None:
        """Send a job's frame to the waiting rooms opened on this instance of it. Rooms opened on
        an earlier instance (the job was deleted and created again under its id) get a `gone`
        frame, outside the topic's sequence, and leave the topic."""
        topic = f"waiting:{job_id}"
        listeners = self.listeners.get(topic, set())
        stale = {listener for listener in listeners if self.waiting_instance.get(listener) != frame.get("createdAt")}
        if stale and frame.get("status") != "gone":
            for listener in stale:
                self.subscribe(listener, self.topics_of.get(listener, set()) - {topic})
            gone = {"type": "waiting", "status": "gone", "serverTime": frame["serverTime"]}
            await self._send(stale, json.dumps(gone, separators=(",", ":")))
            listeners = listeners - stale
        self._track_waiting(job_id, frame)
        await self._send(listeners, self._stamp(topic, frame))

    def _track_waiting(self, job_id: str, frame: dict[str, Any]) -> None:
        for jobs in self.waiting_by_queue.values():
            jobs.discard(job_id)
        if frame.get("status") == "queued" and frame.get("queueId") and self.listeners.get(f"waiting:{job_id}"):
            self.waiting_by_queue[frame["queueId"]].add(job_id)

    async def _heartbeat(self) -> None:
        stamp = format_datetime(clock.now())
        for listener, topics in list(self.topics_of.items()):
            seqs = {t: self.seq[t] for t in topics if t in self.seq}
            text = json.dumps({"type": "heartbeat", "serverTime": stamp, "seqs": seqs}, separators=(",", ":"))
            await self._send([listener], text)


_hub: Hub | None = None


def get_hub() -> Hub:
    """This process's hub, started on the running event loop (a new loop gets a new hub)."""
    global _hub
    loop = asyncio.get_running_loop()
    if _hub is None or _hub.loop is not loop:
        _hub = Hub(loop)
        notify.add_commit_listener(_nudge_current)
    _hub.start()
    return _hub


def _nudge_current() -> None:
    if _hub is not None:
        _hub.nudge()

