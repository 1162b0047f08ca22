"""`manage.py createcustomer USERNAME --password PW`

Creates (or updates the password of) a customer login: a Django user with no worker and no
staff rights, who signs in at `/accounts/login/?next=/queue/` and joins a queue on the
self-service page (`/queue/`), as a job on JOBROUTER_SELF_SERVICE_CHANNEL. CommandError when
the username belongs to an agent (a login linked to a worker) or to staff.
"""

from django.conf import settings
from django.contrib.auth.models import User
from django.core.management.base import BaseCommand, CommandError

from routing.models import Worker


class Command(BaseCommand):
    help = "Create a customer login for the self-service page (/queue/)."

    def add_arguments(self, parser):
        parser.add_argument("username")
        parser.add_argument("--password", required=True)

    def handle(self, *args, **options):
        user, created = User.objects.get_or_create(username=options["username"])
        if not created and (user.is_staff or Worker.objects.filter(user=user).exists()):
            raise CommandError(f"{user.username!r} is an agent or staff login, not a customer.")
        user.set_password(options["password"])
        user.save()
        verb = "Created" if created else "Updated"
        self.stdout.write(
            f"{verb} customer {user.username}: sign in at /accounts/login/?next=/queue/ and join a queue"
            f" (jobs on channel {settings.JOBROUTER_SELF_SERVICE_CHANNEL!r})."
        )
