"""`manage.py eventsubscription ID --url URL [--type T]... [--schema cloudevents]`: create or
update a webhook subscription to router events from the command line (ops), through the same
`event_subscription_upsert` as `PATCH /routing/eventSubscriptions/{id}` and the admin. Prints the
subscription; at creation, its signing secret (shown only then)."""

from __future__ import annotations

import json

from django.core.management.base import BaseCommand, CommandError

from routing.api import wire
from routing.errors import RouterError
from routing.patches import EventSubscriptionPatch
from routing.services.subscriptions import event_subscription_upsert

SCHEMAS = {"eventgrid": "EventGridSchema", "cloudevents": "CloudEventSchemaV1_0"}


class Command(BaseCommand):
    help = "Create or update an Event Grid webhook subscription to router events."

    def add_arguments(self, parser):
        parser.add_argument("id", help="Subscription id.")
        parser.add_argument("--url", required=True, help="Webhook endpoint (https://; http:// needs "
                            "JOBROUTER_ALLOW_HTTP_WEBHOOKS=true).")
        parser.add_argument("--type", action="append", default=None, dest="types", metavar="T",
                            help="An event type to include (repeatable; e.g. RouterWorkerOfferIssued or "
                                 "Microsoft.Communication.RouterWorkerOfferIssued). Default: all.")
        parser.add_argument("--schema", choices=sorted(SCHEMAS), default=None,
                            help="Delivery schema (default eventgrid).")

    def handle(self, *args, **options):
        body: dict = {"endpointUrl": options["url"]}
        if options["types"] is not None:
            body["includedEventTypes"] = [
                t if t.startswith("Microsoft.") else f"Microsoft.Communication.{t}" for t in options["types"]
            ]
        if options["schema"]:
            body["eventDeliverySchema"] = SCHEMAS[options["schema"]]
        try:
            sub, created = event_subscription_upsert(
                subscription_id=options["id"], patch=EventSubscriptionPatch.from_wire(body)
            )
        except RouterError as exc:
            raise CommandError(exc.message) from exc
        self.stdout.write(json.dumps(wire.event_subscription(sub, with_secret=created), indent=2))
        self.stdout.write("created" if created else "updated")
