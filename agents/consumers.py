"""Websocket consumers: thin. Authenticate on connect, translate each message into one domain
call, answer with a result, and push fresh state whenever a router event arrives.

Protocol (JSON):
- client → server: `{"action": <name>, "requestId": <any>, ...arguments}`
- server → client: `{"type": "result", "requestId", "action", "ok": true, "data"}` or
  `{"type": "result", "requestId", "action", "ok": false, "error": {"code", "message"}}`;
  `{"type": "state", ...}` (desk), `{"type": "waiting", ...}` (waiting room),
  `{"type": "supervisor", ...}` (supervisor view): the full current state, sent on connect,
  after every action, on every router event, and on `{"action": "refresh"}`.
"""

from __future__ import annotations

import asyncio
from typing import Any, Callable

from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncJsonWebsocketConsumer

from agents import state
from agents.relay import ensure_relay
from routing import validation as v
from routing.errors import RouterError
from routing.models import Job, Worker, WorkerQueue
from routing.services import customers, jobs, offers, workers
from routing.services.notify import SUPERVISOR_TOPIC, group_for

# Several events in a burst (accept revokes, notifies worker, job, queue) give one push.
PUSH_DEBOUNCE_SECONDS = 0.05
CLOSE_UNAUTHENTICATED = 4401
CLOSE_FORBIDDEN = 4403


class LiveConsumer(AsyncJsonWebsocketConsumer):
    """Base: group membership, debounced state pushes, and the action dispatch."""

    topics: list[str]
    actions: dict[str, Callable[..., Any]] = {}
    _push_pending = False

    async def join(self, topics: list[str]) -> None:
        current = set(getattr(self, "topics", []))
        for topic in current - set(topics):
            await self.channel_layer.group_discard(group_for(topic), self.channel_name)
        for topic in set(topics) - current:
            await self.channel_layer.group_add(group_for(topic), self.channel_name)
        self.topics = topics

    async def disconnect(self, code: int) -> None:
        for topic in getattr(self, "topics", []):
            await self.channel_layer.group_discard(group_for(topic), self.channel_name)

    async def router_event(self, message: dict[str, Any]) -> None:
        if self._push_pending:
            return
        self._push_pending = True
        await asyncio.sleep(PUSH_DEBOUNCE_SECONDS)
        self._push_pending = False
        await self.push_state()

    async def push_state(self) -> None:  # pragma: no cover - abstract
        raise NotImplementedError

    async def receive_json(self, content: Any, **kwargs: Any) -> None:
        if not isinstance(content, dict):
            await self.send_json({"type": "result", "ok": False, "error": {"code": "BadRequest", "message": "Send a JSON object."}})
            return
        action = content.get("action")
        request_id = content.get("requestId")
        if action == "refresh":
            await self.push_state()
            return
        handler = self.actions.get(str(action))
        if handler is None:
            await self.send_json({"type": "result", "requestId": request_id, "action": action, "ok": False,
                                  "error": {"code": "UnknownAction", "message": f"Unknown action {action!r}."}})
            return
        try:
            data = await database_sync_to_async(handler)(self, content)
            reply = {"type": "result", "requestId": request_id, "action": action, "ok": True, "data": data or {}}
        except RouterError as exc:
            reply = {"type": "result", "requestId": request_id, "action": action, "ok": False,
                     "error": {"code": exc.code, "message": exc.message}}
        await self.send_json(reply)
        await self.push_state()


# --- agent desk ------------------------------------------------------------------------------


def _accept(consumer: "DeskConsumer", msg: dict) -> dict:
    result = offers.offer_accept(worker_id=consumer.worker_id, offer_id=str(msg.get("offerId")))
    return {"assignmentId": result.assignment_id, "jobId": result.job_id, "workerId": result.worker_id}


def _decline(consumer: "DeskConsumer", msg: dict) -> dict:
    offers.offer_decline(worker_id=consumer.worker_id, offer_id=str(msg.get("offerId")),
                         retry_offer_at=v.optional_datetime(msg.get("retryOfferAt"), "retryOfferAt"))
    return {}


def _complete(consumer: "DeskConsumer", msg: dict) -> dict:
    jobs.job_complete(job_id=str(msg.get("jobId")), assignment_id=str(msg.get("assignmentId")),
                      note=v.optional_string(msg.get("note"), "note") or None, worker_id=consumer.worker_id)
    return {}


def _close(consumer: "DeskConsumer", msg: dict) -> dict:
    jobs.job_close(job_id=str(msg.get("jobId")), assignment_id=str(msg.get("assignmentId")),
                   disposition_code=v.optional_string(msg.get("dispositionCode"), "dispositionCode") or None,
                   note=v.optional_string(msg.get("note"), "note") or None, worker_id=consumer.worker_id)
    return {}


def _set_availability(consumer: "DeskConsumer", msg: dict) -> dict:
    available = v.optional_bool(msg.get("available"), "available")
    if available is None:
        raise RouterError("available must be true or false.", code="BadRequest")
    workers.worker_set_availability(worker_id=consumer.worker_id, available=available)
    return {"available": available}


def _request_job(consumer: "DeskConsumer", msg: dict) -> dict:
    result = workers.worker_request_job(worker_id=consumer.worker_id)
    return {"assignmentId": result.assignment_id, "jobId": result.job_id, "workerId": result.worker_id}


def _start_serving(consumer: "DeskConsumer", msg: dict) -> dict:
    queue_id = v.optional_string(msg.get("queueId"), "queueId")
    if not queue_id:
        raise RouterError("queueId is required.", code="BadRequest")
    priority = v.optional_int(msg.get("priority"), "priority") or 0
    workers.worker_serve_queue(worker_id=consumer.worker_id, queue_id=queue_id, priority=priority)
    return {"queueId": queue_id, "priority": priority}


def _stop_serving(consumer: "DeskConsumer", msg: dict) -> dict:
    queue_id = v.optional_string(msg.get("queueId"), "queueId")
    if not queue_id:
        raise RouterError("queueId is required.", code="BadRequest")
    workers.worker_stop_serving(worker_id=consumer.worker_id, queue_id=queue_id)
    return {"queueId": queue_id}


class DeskConsumer(LiveConsumer):
    """`/ws/desk/`: the logged-in agent's own worker, and nothing else."""

    worker_id: str
    actions = {
        "accept": _accept,
        "decline": _decline,
        "complete": _complete,
        "close": _close,
        "setAvailability": _set_availability,
        "requestJob": _request_job,
        "startServing": _start_serving,
        "stopServing": _stop_serving,
    }

    async def connect(self) -> None:
        user = self.scope.get("user")
        if user is None or not user.is_authenticated:
            await self.close(code=CLOSE_UNAUTHENTICATED)
            return
        worker_id = await database_sync_to_async(
            lambda: Worker.objects.filter(user=user).values_list("pk", flat=True).first()
        )()
        if worker_id is None:
            await self.close(code=CLOSE_FORBIDDEN)
            return
        self.worker_id = worker_id
        ensure_relay()
        await self.accept()
        await self.push_state()

    async def push_state(self) -> None:
        snapshot, queue_ids = await database_sync_to_async(self._snapshot)()
        await self.join([f"worker:{self.worker_id}", *[f"queue:{q}" for q in queue_ids]])
        await self.send_json(snapshot)

    def _snapshot(self) -> tuple[dict, list[str]]:
        snapshot = state.desk_state(self.worker_id)
        queue_ids = list(WorkerQueue.objects.filter(worker_id=self.worker_id).values_list("queue_id", flat=True))
        return snapshot, queue_ids


# --- customer waiting room -------------------------------------------------------------------


def _leave(consumer: "WaitingRoomConsumer", msg: dict) -> dict:
    customers.customer_leave_queue(job_id=consumer.job_id)
    return {"left": True}


class WaitingRoomConsumer(LiveConsumer):
    """`/ws/wait/<token>/`: the job a signed waiting-room link names; may only watch and leave."""

    job_id: str
    actions = {"leave": _leave}

    async def connect(self) -> None:
        try:
            self.job_id = customers.job_for_link(self.scope["url_route"]["kwargs"]["token"])
        except RouterError:
            await self.close(code=CLOSE_FORBIDDEN)
            return
        ensure_relay()
        await self.accept()
        await self.push_state()

    async def push_state(self) -> None:
        snapshot, queue_id = await database_sync_to_async(self._snapshot)()
        await self.join([f"job:{self.job_id}", *([f"queue:{queue_id}"] if queue_id else [])])
        await self.send_json(snapshot)

    def _snapshot(self) -> tuple[dict, str | None]:
        return state.waiting_state(self.job_id), Job.objects.filter(pk=self.job_id).values_list("queue_id", flat=True).first()


# --- supervisor ------------------------------------------------------------------------------


class SupervisorConsumer(LiveConsumer):
    """`/ws/supervisor/`: staff only; every queue and worker."""

    # A busy centre produces many events; at most one overview per this many seconds.
    MIN_PUSH_INTERVAL = 0.5

    async def connect(self) -> None:
        user = self.scope.get("user")
        if user is None or not user.is_authenticated:
            await self.close(code=CLOSE_UNAUTHENTICATED)
            return
        if not user.is_staff:
            await self.close(code=CLOSE_FORBIDDEN)
            return
        ensure_relay()
        await self.accept()
        await self.join([SUPERVISOR_TOPIC])
        await self.push_state()

    async def router_event(self, message: dict[str, Any]) -> None:
        if self._push_pending:
            return
        self._push_pending = True
        await asyncio.sleep(self.MIN_PUSH_INTERVAL)
        self._push_pending = False
        await self.push_state()

    async def push_state(self) -> None:
        await self.send_json(await database_sync_to_async(state.supervisor_state)())
