"""Webhook delivery of router events, as Event Grid delivers them (MicrosoftDocs azure-docs,
`event-grid/delivery-and-retry.md`, `event-grid-message-headers.md`,
`end-point-validation-event-grid-events-schema.md`, `end-point-validation-cloud-events-schema.md`).

The background worker (`manage.py qcluster`) runs `run_delivery_loop` in a thread beside the
timer loop. Each pass finds the subscriptions with work (a handshake owed, or pending deliveries
due) and hands each to a thread of a small pool (`JOBROUTER_EVENT_DELIVERY_THREADS`), so a slow
or dead endpoint only ever holds its own thread. A thread first claims the subscription by
compare-and-set on its lease (`lease_until` in the past → now + timeout + margin): of several
background workers exactly one sends a subscription's batches, in event order, so one job's
events arrive in the order they happened while the endpoint answers. HTTP never runs inside a
transaction; each outcome is recorded afterwards in its own short write. A process killed
mid-delivery holds its lease until it lapses; the rows it was sending are still pending and go
out again (at least once).

- **Handshake** (`AwaitingManualAction`, not yet sent): Event Grid schema: POST a
  `Microsoft.EventGrid.SubscriptionValidationEvent` (`aeg-event-type: SubscriptionValidation`,
  `data.validationCode`, `data.validationUrl`); an answer 200 `{"validationResponse": code}`
  validates at once, another 2xx leaves the subscription awaiting a GET of `validationUrl`,
  anything else fails it. CloudEvents: `OPTIONS` with `WebHook-Request-Origin`; 200 with a
  matching (or `*`) `WebHook-Allowed-Origin` validates, anything else fails it.
- **Notification**: a JSON array (Event Grid schema, `application/json`) or
  `application/cloudevents-batch+json` of up to `maxEventsPerBatch` events, with `aeg-event-type:
  Notification`, `aeg-subscription-name`, `aeg-delivery-count` (0 on the first try),
  `aeg-data-version`, `aeg-metadata-version`, and the Standard Webhooks `webhook-id`,
  `webhook-timestamp`, `webhook-signature` (HMAC-SHA256 with the subscription's secret, the
  `standardwebhooks` library). 200–204 within the timeout is success.
- **Retry**: 10 s, 30 s, 1 min, 5 min, 10 min, 30 min, 1 h, 3 h, 6 h, then every 12 h, each
  ±20 % jitter, until `maxDeliveryAttempts` or `eventTimeToLiveInMinutes`; 400, 401, 403 and
  413 are not retried. What gives up is dead-lettered (reason, attempts, last outcome kept) or,
  with `deadLetterEnabled` false, dropped.
"""

from __future__ import annotations

import json
import logging
import random
import threading
import time
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Callable

import requests
from django.conf import settings
from django.db import close_old_connections
from django.db.models import F, Q
from standardwebhooks.webhooks import Webhook

from routing import clock
from routing import validation as v
from routing.models import (
    DeliverySchema,
    DeliveryStatus,
    EventDelivery,
    EventSubscription,
    ProvisioningState,
    PublishedEvent,
)
from routing.services import events

logger = logging.getLogger("routing.delivery")

RETRY_SCHEDULE_SECONDS = (10, 30, 60, 300, 600, 1800, 3600, 3 * 3600, 6 * 3600, 12 * 3600)
JITTER = 0.2
NO_RETRY_STATUSES = frozenset({400, 401, 403, 413})
LEASE_MARGIN_SECONDS = 5.0
OUTCOME_LIMIT = 1000
VALIDATION_ORIGIN = "eventgrid.azure.net"
# One claim sends at most this many batches, then lets the loop look at the others again.
BATCHES_PER_CLAIM = 50


def retry_delay(attempts: int, rng: Callable[[], float] = random.random) -> timedelta:
    """Event Grid's delay before try number `attempts + 1` (after `attempts` failed ones), with
    ±20 % jitter; 12 h from the tenth on."""
    base = RETRY_SCHEDULE_SECONDS[min(attempts, len(RETRY_SCHEDULE_SECONDS)) - 1]
    return timedelta(seconds=base * (1 + JITTER * (2 * rng() - 1)))


# --- envelopes ---------------------------------------------------------------------------------


def event_grid_envelope(event: PublishedEvent) -> dict[str, Any]:
    """Event Grid schema: {id, topic, subject, eventType, eventTime, data, dataVersion,
    metadataVersion}."""
    return {
        "id": str(event.id), "topic": settings.JOBROUTER_EVENT_TOPIC, "subject": event.subject,
        "eventType": event.event_type, "eventTime": v.format_datetime(event.occurred_at), "data": event.data,
        "dataVersion": "1.0", "metadataVersion": "1",
    }


def cloud_event_envelope(event: PublishedEvent) -> dict[str, Any]:
    """CloudEvents 1.0 (JSON format): {specversion, id, source, subject, type, time,
    datacontenttype, data}."""
    return {
        "specversion": "1.0", "id": str(event.id), "source": settings.JOBROUTER_EVENT_TOPIC,
        "subject": event.subject, "type": event.event_type, "time": v.format_datetime(event.occurred_at),
        "datacontenttype": "application/json", "data": event.data,
    }


def render_batch(schema: str, batch: list[PublishedEvent]) -> tuple[str, str]:
    """(content type, body) of one delivery."""
    if schema == DeliverySchema.CLOUD_EVENTS:
        return "application/cloudevents-batch+json", json.dumps([cloud_event_envelope(e) for e in batch])
    return "application/json", json.dumps([event_grid_envelope(e) for e in batch])


# --- HTTP (never inside a transaction) ---------------------------------------------------------

_local = threading.local()


def _session() -> requests.Session:
    """One keep-alive session per delivery thread."""
    session = getattr(_local, "session", None)
    if session is None:
        session = _local.session = requests.Session()
        # Not read from the environment on every request (proxy variables, .netrc): that was a
        # fifth of a delivery's CPU. Webhooks are called directly.
        session.trust_env = False
    return session


@dataclass(frozen=True)
class Outcome:
    """What an endpoint answered: `status` (None for a transport error or timeout) and a
    bounded description."""

    status: int | None
    text: str
    body: bytes = b""
    allowed_origin: str = ""

    @property
    def ok(self) -> bool:
        return self.status is not None and 200 <= self.status <= 204


def _http(method: str, url: str, *, headers: dict[str, str], data: str | None = None) -> Outcome:
    timeout = settings.JOBROUTER_EVENT_DELIVERY_TIMEOUT_SECONDS
    try:
        response = _session().request(method, url, headers=headers, data=data, timeout=timeout,
                                      allow_redirects=False)
    except requests.RequestException as exc:
        return Outcome(None, f"{type(exc).__name__}: {exc}"[:OUTCOME_LIMIT])
    return Outcome(response.status_code, f"HTTP {response.status_code}", response.content[:65536],
                   response.headers.get("WebHook-Allowed-Origin", ""))


def signed_headers(secret: str, msg_id: str, body: str, when: datetime) -> dict[str, str]:
    """Standard Webhooks `webhook-id`, `webhook-timestamp` (Unix seconds), `webhook-signature`."""
    return {
        "webhook-id": msg_id, "webhook-timestamp": str(int(when.timestamp())),
        "webhook-signature": Webhook(secret).sign(msg_id=msg_id, timestamp=when, data=body),
    }


# --- the handshake -----------------------------------------------------------------------------


def validation_url(sub: EventSubscription) -> str:
    return f"{settings.JOBROUTER_PUBLIC_URL}/eventgrid/validate/{sub.pk}?code={sub.validation_code}"


def _event_grid_handshake(sub: EventSubscription, now: datetime) -> tuple[str, str]:
    body = json.dumps([{
        "id": str(uuid.uuid4()), "topic": settings.JOBROUTER_EVENT_TOPIC, "subject": "",
        "eventType": "Microsoft.EventGrid.SubscriptionValidationEvent", "eventTime": v.format_datetime(now),
        "data": {"validationCode": sub.validation_code, "validationUrl": validation_url(sub)},
        "dataVersion": "2", "metadataVersion": "1",
    }])
    outcome = _http("POST", sub.endpoint_url, data=body, headers={
        "Content-Type": "application/json", "aeg-event-type": "SubscriptionValidation",
        "aeg-subscription-name": sub.pk.upper(), "aeg-delivery-count": "0", "aeg-data-version": "2",
        "aeg-metadata-version": "1",
    })
    if not outcome.ok:
        return ProvisioningState.FAILED, f"validation refused: {outcome.text}"
    try:
        answer = json.loads(outcome.body or b"null")
    except ValueError:
        answer = None
    if isinstance(answer, dict) and answer.get("validationResponse") == sub.validation_code:
        return ProvisioningState.SUCCEEDED, "validated (validationResponse)"
    return ProvisioningState.AWAITING, f"{outcome.text} without validationResponse: awaiting a GET of validationUrl"


def _cloud_events_handshake(sub: EventSubscription) -> tuple[str, str]:
    outcome = _http("OPTIONS", sub.endpoint_url, headers={
        "WebHook-Request-Origin": VALIDATION_ORIGIN, "WebHook-Request-Rate": "120",
    })
    allowed = outcome.allowed_origin
    if outcome.status == 200 and allowed in (VALIDATION_ORIGIN, "*"):
        return ProvisioningState.SUCCEEDED, "validated (WebHook-Allowed-Origin)"
    return ProvisioningState.FAILED, f"validation refused: {outcome.text}, WebHook-Allowed-Origin {allowed!r}"


def validate_endpoint(sub: EventSubscription, now: datetime) -> str:
    """Send the handshake (outside any transaction) and record its outcome unless the
    subscription changed meanwhile (compare-and-set on its validation code); returns the state."""
    if sub.delivery_schema == DeliverySchema.CLOUD_EVENTS:
        state, text = _cloud_events_handshake(sub)
    else:
        state, text = _event_grid_handshake(sub, now)
    EventSubscription.objects.filter(
        pk=sub.pk, validation_code=sub.validation_code, provisioning_state=ProvisioningState.AWAITING
    ).update(provisioning_state=state, validation_sent_at=now, validation_outcome=text[:OUTCOME_LIMIT])
    logger.info("event subscription %s: %s", sub.pk, text)
    return state


# --- deliveries --------------------------------------------------------------------------------


def _expire(sub: EventSubscription, now: datetime) -> None:
    """Pending rows past the subscription's time to live give up (TimeToLiveExceeded)."""
    stale = EventDelivery.objects.filter(
        subscription_id=sub.pk, status=DeliveryStatus.PENDING,
        created_at__lt=now - timedelta(minutes=sub.event_ttl_minutes),
    )
    if stale.exists():  # a read first: the common case writes nothing
        _give_up(sub, stale, "TimeToLiveExceeded", now)


def _give_up(sub: EventSubscription, rows: Any, reason: str, now: datetime, outcome: str | None = None) -> None:
    status = DeliveryStatus.DEAD_LETTERED if sub.dead_letter_enabled else DeliveryStatus.DROPPED
    fields: dict[str, Any] = {"status": status, "dead_letter_reason": reason}
    if outcome is not None:
        fields["last_outcome"] = outcome
    rows.filter(status=DeliveryStatus.PENDING).update(**fields)


def _record_failure(sub: EventSubscription, batch: list[EventDelivery], outcome: Outcome, now: datetime) -> None:
    """Store a failed attempt (its own short writes, after the HTTP call): retry on Event Grid's
    schedule, or give up (no-retry status, last allowed attempt)."""
    ids = [d.pk for d in batch]
    rows = EventDelivery.objects.filter(pk__in=ids, status=DeliveryStatus.PENDING)
    attempts = batch[0].attempts + 1
    EventSubscription.objects.filter(pk=sub.pk).update(last_failure_at=now, last_failure=outcome.text)
    rows.update(attempts=attempts, last_attempt_at=now, last_outcome=outcome.text)
    if outcome.status in NO_RETRY_STATUSES:
        _give_up(sub, rows, f"NoRetryStatus{outcome.status}", now)
    elif attempts >= sub.max_delivery_attempts:
        _give_up(sub, rows, "MaxDeliveryAttemptsExceeded", now)
    else:
        retry_at = now + retry_delay(attempts)
        rows.update(due_at=retry_at)
        # Whatever else is due waits for the same retry, behind the failed batch: the endpoint
        # is down, and one job's events stay in order for when it is back.
        EventDelivery.objects.filter(
            subscription_id=sub.pk, status=DeliveryStatus.PENDING, due_at__lt=retry_at
        ).exclude(pk__in=ids).update(due_at=retry_at)


def _mark_delivered(ids: list[int], now: datetime) -> None:
    """One write for many delivered rows (see `deliver_claimed`)."""
    if ids:
        EventDelivery.objects.filter(pk__in=ids, status=DeliveryStatus.PENDING).update(
            status=DeliveryStatus.DELIVERED, delivered_at=now, attempts=F("attempts") + 1, last_attempt_at=now,
            last_outcome="delivered (2xx)",
        )
        ids.clear()


def _due_rows(sub: EventSubscription, now: datetime, skip: list[int]) -> list[EventDelivery]:
    """The subscription's next due rows in order (a few batches' worth: one query for many POSTs),
    leaving out rows already sent but not yet marked."""
    pending = EventDelivery.objects.filter(subscription_id=sub.pk, status=DeliveryStatus.PENDING).exclude(pk__in=skip)
    due = pending.filter(due_at__lte=now)
    # A row waiting for its retry holds back every later one: an event written after a failed
    # attempt (due at once) must not overtake it when the endpoint comes back.
    waiting = pending.filter(due_at__gt=now).order_by("pk").values_list("pk", flat=True).first()
    if waiting is not None:
        due = due.filter(pk__lt=waiting)
    return list(due.select_related("event").order_by("due_at", "pk")[: max(sub.max_events_per_batch, 50)])


def send_batch(sub: EventSubscription, batch: list[EventDelivery], now: datetime) -> Outcome:
    """POST one batch with Event Grid's and Standard Webhooks' headers."""
    content_type, body = render_batch(sub.delivery_schema, [d.event for d in batch])
    msg_id = str(batch[0].event.id) if len(batch) == 1 else str(
        uuid.uuid5(uuid.NAMESPACE_URL, ",".join(str(d.event.id) for d in batch))
    )
    headers = {
        "Content-Type": content_type, "aeg-event-type": "Notification", "aeg-subscription-name": sub.pk.upper(),
        "aeg-delivery-count": str(batch[0].attempts), "aeg-data-version": "1.0", "aeg-metadata-version": "1",
        **signed_headers(sub.signing_secret, msg_id, body, now),
    }
    return _http("POST", sub.endpoint_url, data=body, headers=headers)


# Delivered rows are marked in one write per this many rows or seconds: a webhook answers in
# about a millisecond, a write costs more (SQLite serialises writers), so marking each at once
# would cap a subscription at the database's write rate. A process killed in between sends those
# again: Event Grid promises at least once.
MARK_EVERY_ROWS = 200
MARK_EVERY_SECONDS = 1.0
# A claim stays a moment after its queue ran dry, looking again every LOOK_AGAIN_SECONDS: events
# committed by the web processes (which cannot nudge this one) then leave within milliseconds.
LINGER_SECONDS = 1.0
LOOK_AGAIN_SECONDS = 0.02


def _still_ours(sub: EventSubscription, owner: str, lease: timedelta, now: datetime) -> bool:
    """Renew the lease (and note the subscription's last success), unless the subscription was
    deleted, re-pointed (a new validation code) or taken over: then this claim stops."""
    return bool(EventSubscription.objects.filter(
        pk=sub.pk, lease_owner=owner, provisioning_state=ProvisioningState.SUCCEEDED,
        validation_code=sub.validation_code,
    ).update(lease_until=now + lease, last_success_at=now))


def deliver_claimed(sub: EventSubscription, owner: str) -> int:
    """Send a claimed subscription's due batches in order until none has been due for
    LINGER_SECONDS or one fails; returns the events delivered. Writes stay few (SQLite has one
    writer, and the API's transactions wait for it): delivered rows are marked every
    MARK_EVERY_ROWS / MARK_EVERY_SECONDS, the lease renewed every third of its length."""
    lease = timedelta(seconds=settings.JOBROUTER_EVENT_DELIVERY_TIMEOUT_SECONDS + LEASE_MARGIN_SECONDS)
    _expire(sub, clock.now())
    sent: list[int] = []
    delivered = 0
    marked_at = idle_since = renewed_at = time.monotonic()
    try:
        while True:
            rows = _due_rows(sub, clock.now(), sent)
            if not rows:
                _mark_delivered(sent, clock.now())
                if time.monotonic() - idle_since > LINGER_SECONDS:
                    break
                time.sleep(LOOK_AGAIN_SECONDS)
                continue
            for start in range(0, len(rows), sub.max_events_per_batch):
                batch = rows[start:start + sub.max_events_per_batch]
                outcome = send_batch(sub, batch, clock.now())
                if not outcome.ok:
                    _mark_delivered(sent, clock.now())
                    _record_failure(sub, batch, outcome, clock.now())
                    logger.info("delivery to %s failed: %s", sub.pk, outcome.text)
                    return delivered
                sent.extend(d.pk for d in batch)
                delivered += len(batch)
            idle_since = time.monotonic()
            if len(sent) >= MARK_EVERY_ROWS or idle_since - marked_at > MARK_EVERY_SECONDS:
                _mark_delivered(sent, clock.now())
                marked_at = idle_since
            if idle_since - renewed_at > lease.total_seconds() / 3:
                renewed_at = idle_since
                if not _still_ours(sub, owner, lease, clock.now()):
                    break
    finally:
        _mark_delivered(sent, clock.now())
        if delivered:
            EventSubscription.objects.filter(pk=sub.pk).update(last_success_at=clock.now())
    return delivered


def claim(subscription_id: str, owner: str, now: datetime) -> EventSubscription | None:
    """Compare-and-set claim of a subscription for one delivery thread: only one loop (of any
    process) holds it until `lease_until`; a holder killed mid-delivery lets it lapse."""
    lease = timedelta(seconds=settings.JOBROUTER_EVENT_DELIVERY_TIMEOUT_SECONDS + LEASE_MARGIN_SECONDS)
    free = Q(lease_until__isnull=True) | Q(lease_until__lt=now)
    if not EventSubscription.objects.filter(free, pk=subscription_id).update(lease_until=now + lease, lease_owner=owner):
        return None
    return EventSubscription.objects.filter(pk=subscription_id, lease_owner=owner).first()


def release(subscription_id: str, owner: str) -> None:
    EventSubscription.objects.filter(pk=subscription_id, lease_owner=owner).update(lease_until=None, lease_owner="")


def serve_subscription(subscription_id: str) -> int:
    """Claim one subscription, run its handshake or send its due batches, release it. Returns
    the events delivered (0 when another loop holds it)."""
    owner = uuid.uuid4().hex
    now = clock.now()
    sub = claim(subscription_id, owner, now)
    if sub is None:
        return 0
    try:
        if sub.provisioning_state == ProvisioningState.AWAITING:
            if sub.validation_sent_at is None:
                validate_endpoint(sub, now)
            return 0
        if sub.provisioning_state != ProvisioningState.SUCCEEDED:
            return 0
        return deliver_claimed(sub, owner)
    finally:
        release(subscription_id, owner)


def subscriptions_with_work(now: datetime) -> list[str]:
    """Subscriptions not leased by anyone with a handshake owed or a delivery due."""
    free = Q(lease_until__isnull=True) | Q(lease_until__lt=now)
    due = EventDelivery.objects.filter(status=DeliveryStatus.PENDING, due_at__lte=now).values("subscription_id")
    return list(
        EventSubscription.objects.filter(free)
        .filter(
            Q(provisioning_state=ProvisioningState.AWAITING, validation_sent_at__isnull=True)
            | Q(provisioning_state=ProvisioningState.SUCCEEDED, pk__in=due)
        )
        .values_list("pk", flat=True)
    )


def run_delivery_loop(*, should_stop: Callable[[], bool], poll_seconds: float | None = None) -> None:
    """Deliver until `should_stop()`: each pass starts a daemon thread for every subscription
    with work that none serves yet (at most JOBROUTER_EVENT_DELIVERY_THREADS at once), then waits
    for a nudge (an event committed in this process, a thread done) or `poll_seconds`. Daemon
    threads: stopping never waits for an endpoint that hangs (its lease lapses)."""
    poll = poll_seconds if poll_seconds is not None else settings.JOBROUTER_TIMER_POLL_SECONDS
    wake = threading.Event()
    events.add_commit_listener(wake.set)
    in_flight: set[str] = set()
    lock = threading.Lock()

    def serve(subscription_id: str) -> None:
        try:
            close_old_connections()
            serve_subscription(subscription_id)
        except Exception:
            logger.exception("delivery to event subscription %s failed", subscription_id)
        finally:
            close_old_connections()
            with lock:
                in_flight.discard(subscription_id)
            wake.set()

    logger.info("delivery loop started")
    while not should_stop():
        try:
            close_old_connections()
            for subscription_id in subscriptions_with_work(clock.now()):
                with lock:
                    if subscription_id in in_flight or len(in_flight) >= settings.JOBROUTER_EVENT_DELIVERY_THREADS:
                        continue
                    in_flight.add(subscription_id)
                threading.Thread(target=serve, args=(subscription_id,), name=f"delivery {subscription_id}",
                                 daemon=True).start()
        except Exception:
            logger.exception("delivery loop pass failed")
        wake.wait(poll)
        wake.clear()
    logger.info("delivery loop stopped")


def prune_events(*, now: datetime | None = None) -> int:
    """Delete events (and their delivery rows) older than JOBROUTER_EVENT_RETENTION_DAYS;
    returns how many events went. Called by the timer loop's housekeeping."""
    now = clock.clock(now)
    cutoff = now - timedelta(days=settings.JOBROUTER_EVENT_RETENTION_DAYS)
    deleted, per_model = PublishedEvent.objects.filter(occurred_at__lt=cutoff).delete()
    return per_model.get(PublishedEvent._meta.label, 0)
