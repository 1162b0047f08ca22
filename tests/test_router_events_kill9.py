"""`kill -9` of the background worker while it delivers loses no event: the subscription's lease
lapses, a restarted worker claims it and sends what was not acknowledged (at least once)."""

from __future__ import annotations

import os
import signal
import threading
import time

import pytest

from routing.models import DeliveryStatus, EventDelivery
from tests.conftest import _stop, eventually, start_background_worker
from tests.event_receiver import EventReceiver, rest, subscribe
from tests.test_router_events_delivery import _jobs

pytestmark = pytest.mark.postgres


_worker = start_background_worker


def test_kill_9_of_the_background_worker_during_delivery_loses_no_event(
    router, only_these_processes, live_admin_client, live_client, http_endpoint
):
    # A short delivery timeout: the lease of a killed worker lapses after 2 + 5 s.
    env = {**router.env, "JOBROUTER_EVENT_DELIVERY_TIMEOUT_SECONDS": "2"}
    receiver = EventReceiver(http_endpoint)
    answer = receiver.handle

    arrived = threading.Event()

    def slow_first(rec):
        if rec.headers.get("aeg-event-type") == "Notification" and not arrived.is_set():
            arrived.set()
            time.sleep(3)  # the worker is killed while it waits for this answer
        return answer(rec)

    http_endpoint.routes["/events"] = slow_first
    first = _worker(env)
    try:
        subscribe(live_client, "k9", receiver.url)
        eventually(lambda: rest(live_client, "GET", "/routing/eventSubscriptions/k9").json()["provisioningState"]
                   == "Succeeded", timeout=20)
        _jobs(live_admin_client, live_client, 3)
        assert arrived.wait(timeout=10)
        os.killpg(first.pid, signal.SIGKILL)
    finally:
        first.wait()
    owed = {str(d.event.id) for d in EventDelivery.objects.select_related("event")}
    assert EventDelivery.objects.exclude(status=DeliveryStatus.DELIVERED).exists()

    second = _worker(env)
    try:
        eventually(lambda: not EventDelivery.objects.exclude(status=DeliveryStatus.DELIVERED).exists(), timeout=30)
    finally:
        _stop(second)
    assert {e["id"] for e in receiver.events()} == owed
    assert len(owed) == 6
