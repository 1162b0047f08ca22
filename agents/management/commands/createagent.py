"""`manage.py createagent USERNAME --password PW --queue q1:5 --queue q2 --channel voice:1 --capacity N`

Creates (or updates) a desk login and its router worker in one step. `--queue ID[:PRIORITY]`
may repeat (priority = the agent's priority in that queue, default 0); `--channel ID[:COST]`
may repeat (cost = capacity cost per job, default 1). The worker id defaults to the username.
The agent starts in Do-Not-Disturb unless --available is given; the command says which.

It warns (and still creates the agent, as ACS lets a worker list a queue created later) when a
named queue does not exist yet, and when none of the agent's channels is
JOBROUTER_SELF_SERVICE_CHANNEL, the channel of the jobs customers create on `/queue/`.
"""

from django.conf import settings
from django.contrib.auth.models import User
from django.core.management.base import BaseCommand, CommandError
from django.db import transaction

from routing.errors import RouterError
from routing.models import Queue
from routing.patches import ChannelSpec, WorkerPatch
from routing.services.workers import worker_link_user, worker_upsert


def _split(value: str, default: int, what: str) -> tuple[str, int]:
    name, sep, number = value.partition(":")
    if not name:
        raise CommandError(f"{what} needs an id: {value!r}")
    try:
        return name, int(number) if sep else default
    except ValueError as exc:
        raise CommandError(f"{what} {value!r}: {number!r} is not a whole number") from exc


class Command(BaseCommand):
    help = "Create an agent: a Django user linked to a router worker."

    def add_arguments(self, parser):
        parser.add_argument("username")
        parser.add_argument("--password", required=True)
        parser.add_argument("--queue", action="append", default=[], metavar="ID[:PRIORITY]")
        parser.add_argument("--channel", action="append", default=[], metavar="ID[:COST]")
        parser.add_argument("--capacity", type=int, default=1)
        parser.add_argument("--worker-id", default=None)
        parser.add_argument("--available", action="store_true", help="start available for offers (auto-assign)")

    def handle(self, *args, **options):
        queues = [_split(q, 0, "--queue") for q in options["queue"]]
        channels = [_split(c, 1, "--channel") for c in options["channel"]] or [("voice", 1)]
        worker_id = options["worker_id"] or options["username"]
        try:
            with transaction.atomic():
                user, created = User.objects.get_or_create(username=options["username"])
                user.set_password(options["password"])
                user.save()
                worker_upsert(
                    worker_id=worker_id,
                    patch=WorkerPatch(
                        capacity=options["capacity"],
                        queues=[q for q, _ in queues],
                        queue_priorities=dict(queues),
                        channels=[ChannelSpec(c, cost, None) for c, cost in channels],
                        available_for_offers=options["available"],
                    ),
                )
                worker_link_user(worker_id=worker_id, user=user)
        except RouterError as exc:
            raise CommandError(exc.message) from exc
        verb = "Created" if created else "Updated"
        names = [c for c, _ in channels]
        self.stdout.write(
            f"{verb} agent {user.username} (worker {worker_id}): queues {', '.join(q for q, _ in queues) or 'none'}"
            f" on channels {', '.join(names)}, capacity {options['capacity']}."
        )
        if options["available"]:
            self.stdout.write("Starts available (Auto-assign): offers ring on the desk at once.")
        else:
            self.stdout.write(
                "Starts in Do not disturb: nothing rings until the agent presses Auto-assign on the desk"
                " (or pass --available)."
            )
        self._warn([q for q, _ in queues], names)

    def _warn(self, queue_ids: list[str], channel_ids: list[str]) -> None:
        existing = set(Queue.objects.filter(pk__in=queue_ids).values_list("pk", flat=True))
        for queue_id in queue_ids:
            if queue_id not in existing:
                self.stderr.write(
                    f"warning: queue {queue_id!r} does not exist yet; create it (admin or SDK) before jobs can"
                    " reach this agent through it."
                )
        channel = settings.JOBROUTER_SELF_SERVICE_CHANNEL
        if channel not in channel_ids:
            self.stderr.write(
                f"warning: the agent takes no {channel!r} jobs, the channel of customers who join on /queue/"
                f" (JOBROUTER_SELF_SERVICE_CHANNEL); add --channel {channel} for them."
            )
