"""Event subscriptions: webhooks that receive router events as Event Grid delivers them.

`event_subscription_upsert` is the one function the REST API (`PATCH
/routing/eventSubscriptions/{id}`), the admin and `manage.py eventsubscription` call. A new
subscription, or one whose endpoint or schema changed, is `AwaitingManualAction` until its
endpoint passes Event Grid's validation handshake, which the delivery loop
(`routing.services.delivery`) sends outside any transaction: only then (`Succeeded`) does it
receive events. The handshake's `validationUrl` lands in `event_subscription_validate`.
"""

from __future__ import annotations

import base64
import secrets
import uuid
from datetime import datetime
from typing import Iterable

from django.conf import settings
from django.db import transaction

from routing.clock import clock
from routing.errors import Conflict, InvalidRequest
from routing.models import (
    DeliveryStatus,
    EventDelivery,
    EventSubscription,
    ProvisioningState,
    PublishedEvent,
)
from routing.patches import EVENT_SUBSCRIPTION_DEFAULTS, UNSET, EventSubscriptionPatch
from routing.services.common import Precondition, locked_get, upsert

# The `eventType` of the admin's "send test event" (not a Job Router type: receivers that filter
# on Router* types ignore it).
TEST_EVENT_TYPE = "JobRouter.SubscriptionTestEvent"


def new_signing_secret() -> str:
    """A Standard Webhooks secret: `whsec_` + base64 of 32 random bytes."""
    return "whsec_" + base64.b64encode(secrets.token_bytes(32)).decode()


def _check_endpoint(url: str) -> None:
    if url.lower().startswith("http://") and not settings.JOBROUTER_ALLOW_HTTP_WEBHOOKS:
        raise InvalidRequest(
            "endpointUrl must be https:// (plain http:// needs JOBROUTER_ALLOW_HTTP_WEBHOOKS=true).",
            target="endpointUrl",
        )


def event_subscription_upsert(
    *, subscription_id: str, patch: EventSubscriptionPatch, precondition: Precondition | None = None,
    now: datetime | None = None,
) -> tuple[EventSubscription, bool]:
    """Create or merge-patch an event subscription; returns (subscription, created). A created
    one carries its new `signing_secret` (shown to the client only in that answer). A new
    endpoint or schema, or `endpointUrl` sent again after a failed validation, asks for
    validation again (`AwaitingManualAction`). InvalidRequest (400):
    no endpointUrl at creation, or plain http:// without JOBROUTER_ALLOW_HTTP_WEBHOOKS;
    PreconditionFailed (412)."""
    now = clock(now)
    fields = patch.fields()

    def apply(sub: EventSubscription, created: bool) -> None:
        if created:
            if patch.endpoint_url is UNSET:
                raise InvalidRequest("endpointUrl is required.", target="endpointUrl")
            for name, default in EVENT_SUBSCRIPTION_DEFAULTS.items():
                setattr(sub, name, default)
            sub.signing_secret = new_signing_secret()
        # A new endpoint or schema, or an endpoint named again after it failed validation.
        revalidate = created or any(
            name in fields and fields[name] != getattr(sub, name) for name in ("endpoint_url", "delivery_schema")
        ) or ("endpoint_url" in fields and sub.provisioning_state == ProvisioningState.FAILED)
        for name, value in fields.items():
            setattr(sub, name, value)
        _check_endpoint(sub.endpoint_url)
        if revalidate:
            sub.provisioning_state = ProvisioningState.AWAITING
            sub.validation_code = uuid.uuid4().hex
            sub.validation_sent_at = None
            sub.validation_outcome = ""
        return None

    return upsert(EventSubscription, pk=subscription_id, now=now, precondition=precondition, apply=apply)


def event_subscription_delete(*, subscription_id: str) -> None:
    """Delete a subscription and what it still owed. NotFound (404)."""
    with transaction.atomic():
        locked_get(EventSubscription, subscription_id, what="Event subscription").delete()


def event_subscription_validate(*, subscription_id: str, code: str, now: datetime | None = None) -> bool:
    """The handshake's `validationUrl` was fetched (Event Grid manual validation): with the
    right code the subscription becomes `Succeeded`. False for a wrong code or a subscription
    not awaiting validation (compare-and-set on the state)."""
    now = clock(now)
    if not code:
        return False
    return bool(
        EventSubscription.objects.filter(
            pk=subscription_id, provisioning_state=ProvisioningState.AWAITING, validation_code=code
        ).update(provisioning_state=ProvisioningState.SUCCEEDED, validation_outcome="validated through validationUrl",
                 updated_at=now)
    )


def event_subscription_send_test(*, subscription_id: str, now: datetime | None = None) -> PublishedEvent:
    """Owe one test event (`JobRouter.SubscriptionTestEvent`) to this subscription only,
    whatever its filters: the admin's "send test event". Conflict (409) unless validated."""
    now = clock(now)
    with transaction.atomic():
        sub = locked_get(EventSubscription, subscription_id, what="Event subscription")
        if sub.provisioning_state != ProvisioningState.SUCCEEDED:
            raise Conflict(f"Event subscription {subscription_id!r} is {sub.provisioning_state}; validate it first.")
        event = PublishedEvent.objects.create(
            event_type=TEST_EVENT_TYPE, subject=f"eventSubscription/{sub.pk}",
            data={"message": "Test event from the job router", "subscriptionId": sub.pk}, occurred_at=now,
        )
        EventDelivery.objects.create(subscription=sub, event=event, created_at=now, due_at=now)
    return event


def deliveries_redeliver(*, delivery_ids: Iterable[int], now: datetime | None = None) -> int:
    """Send dead-lettered deliveries again from scratch (attempts and time to live restart);
    returns how many were re-queued (compare-and-set: only dead-lettered rows move)."""
    now = clock(now)
    return EventDelivery.objects.filter(pk__in=list(delivery_ids), status=DeliveryStatus.DEAD_LETTERED).update(
        status=DeliveryStatus.PENDING, attempts=0, created_at=now, due_at=now, dead_letter_reason=""
    )
