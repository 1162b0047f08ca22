"""Websocket consumers: thin. Authenticate on connect, translate each message into one domain
call and answer with a result; every push comes from the process's hub (`agents.hub`), which
renders each change once and hands the same bytes to every socket that shows it.

Protocol (JSON):
- client → server: `{"action": <name>, "requestId": <any>, ...arguments}`
- server → client: `{"type": "result", "requestId", "action", "ok": true, "data"}` or
  `{"type": "result", "requestId", "action", "ok": false, "error": {"code", "message"}}`, sent
  as soon as the action is done, ahead of the pushes it causes;
  pushed frames (`desk`, `queue`, `catalog`, `workers`, `supervisor`, `waiting`) with `topic`
  and `seq`, and a `heartbeat` with every topic's last `seq` (README, "Websocket protocol").
"""

from __future__ import annotations

import json
from typing import Any, Callable

from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncJsonWebsocketConsumer

from agents.hub import get_hub
from routing import validation as v
from routing.errors import RouterError
from routing.models import Worker
from routing.services import customers, jobs, offers, workers

CLOSE_UNAUTHENTICATED = 4401
CLOSE_FORBIDDEN = 4403
# Longest client frame, in characters (or bytes): an action with a note fits many times over.
MAX_FRAME_CHARS = 65_536


class LiveConsumer(AsyncJsonWebsocketConsumer):
    """Base: hub subscription (`attach`), delivery of pushed frames, and the action dispatch."""

    actions: dict[str, Callable[..., Any]] = {}

    def attach(self) -> None:  # pragma: no cover - abstract
        """Subscribe to the hub and ask it for everything this page shows."""
        raise NotImplementedError

    async def deliver(self, text: str) -> None:
        """Called by the hub: one pushed frame, already rendered."""
        await self.send(text_data=text)

    async def disconnect(self, code: int) -> None:
        get_hub().drop(self)

    async def receive(self, text_data: str | None = None, bytes_data: bytes | None = None, **kwargs: Any) -> None:
        """One client frame: UTF-8 JSON text (or bytes) of at most `MAX_FRAME_CHARS`. Anything
        else is answered with a `BadRequest` result and the socket stays open."""
        raw = text_data if text_data is not None else (bytes_data or b"")
        if len(raw) > MAX_FRAME_CHARS:
            await self.send_json(_error(None, None, "BadRequest", f"Frames are limited to {MAX_FRAME_CHARS} characters."))
            return
        try:
            content = json.loads(raw or "null")
        except (ValueError, RecursionError):  # not JSON, not UTF-8, or nested too deep to parse
            await self.send_json(_error(None, None, "BadRequest", "Frames must be JSON objects."))
            return
        await self.receive_json(content)

    async def receive_json(self, content: Any, **kwargs: Any) -> None:
        if not isinstance(content, dict):
            await self.send_json(_error(None, None, "BadRequest", "Send a JSON object."))
            return
        action = content.get("action")
        request_id = content.get("requestId")
        if action == "refresh":
            self.attach()
            return
        handler = self.actions.get(str(action))
        if handler is None:
            await self.send_json(_error(request_id, action, "UnknownAction", f"Unknown action {action!r}."))
            return
        try:
            data = await database_sync_to_async(handler)(self, content)
            reply = {"type": "result", "requestId": request_id, "action": action, "ok": True, "data": data or {}}
        except RouterError as exc:
            reply = _error(request_id, action, exc.code, exc.message)
        await self.send_json(reply)


def _error(request_id: Any, action: Any, code: str, message: str) -> dict[str, Any]:
    return {"type": "result", "requestId": request_id, "action": action, "ok": False,
            "error": {"code": code, "message": message}}


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
        await self.accept()
        self.attach()

    def attach(self) -> None:
        get_hub().attach_desk(self, self.worker_id)


# --- customer waiting room -------------------------------------------------------------------


def _leave(consumer: "WaitingRoomConsumer", msg: dict) -> dict:
    customers.customer_leave_queue(ticket=consumer.ticket)
    return {"left": True}


class WaitingRoomConsumer(LiveConsumer):
    """`/ws/wait/<token>/`: the job instance a signed waiting-room link names; may only watch
    and leave. A job re-created under the same id later is not this socket's job."""

    ticket: customers.WaitingRoomTicket
    actions = {"leave": _leave}

    async def connect(self) -> None:
        try:
            self.ticket = await database_sync_to_async(customers.job_for_link)(
                self.scope["url_route"]["kwargs"]["token"]
            )
        except RouterError:
            await self.close(code=CLOSE_FORBIDDEN)
            return
        await self.accept()
        self.attach()

    def attach(self) -> None:
        get_hub().attach_waiting(self, self.ticket.job_id, self.ticket.instance)


# --- supervisor ------------------------------------------------------------------------------


class SupervisorConsumer(LiveConsumer):
    """`/ws/supervisor/`: staff only; every queue and worker (a snapshot, then deltas)."""

    async def connect(self) -> None:
        user = self.scope.get("user")
        if user is None or not user.is_authenticated:
            await self.close(code=CLOSE_UNAUTHENTICATED)
            return
        if not user.is_staff:
            await self.close(code=CLOSE_FORBIDDEN)
            return
        await self.accept()
        self.attach()

    def attach(self) -> None:
        get_hub().attach_supervisor(self)
