"""After-commit notifications of router changes to live listeners (agent desks, dashboards).

Each function is registered with `after_commit` by the domain operation that made the change and
sends one typed message to the Channels group of the worker concerned. Listeners re-read state
from the database, so a lost message costs freshness, never correctness.
"""

from __future__ import annotations

import logging
from typing import Any, TypedDict

from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer

from routing.models import Offer

logger = logging.getLogger("routing.notify")


class WorkerEvent(TypedDict):
    type: str  # Channels handler name, e.g. "router.event"
    event: str  # offerIssued | offerEnded | assignmentChanged | workerChanged
    workerId: str
    offerId: str | None
    jobId: str | None


def worker_group(worker_id: str) -> str:
    """The Channels group name for one worker (group names allow only [A-Za-z0-9._-])."""
    safe = "".join(ch if ch.isalnum() or ch in "-_." else f"_{ord(ch):x}_" for ch in worker_id)
    return f"worker.{safe}"[:99]


def _send(group: str, message: dict[str, Any]) -> None:
    layer = get_channel_layer()
    if layer is None:
        return
    async_to_sync(layer.group_send)(group, message)


def notify_worker(*, worker_id: str, event: str, offer_id: str | None = None, job_id: str | None = None) -> None:
    message: WorkerEvent = {
        "type": "router.event", "event": event, "workerId": worker_id, "offerId": offer_id, "jobId": job_id,
    }
    _send(worker_group(worker_id), dict(message))


def notify_offer_issued(*, offer_id) -> None:
    offer = Offer.objects.filter(pk=offer_id).values("worker_id", "job_id").first()
    if offer:
        notify_worker(worker_id=offer["worker_id"], event="offerIssued", offer_id=str(offer_id), job_id=offer["job_id"])


def notify_offer_ended(*, offer_id) -> None:
    offer = Offer.objects.filter(pk=offer_id).values("worker_id", "job_id").first()
    if offer:
        notify_worker(worker_id=offer["worker_id"], event="offerEnded", offer_id=str(offer_id), job_id=offer["job_id"])
