"""`manage.py qcluster`: django-q2's cluster plus the router's timer loop.

Replaces django_q's command of the same name (the `routing` app is listed first). The cluster
runs in its own processes; this process runs `routing.services.timers.run_timer_loop` until the
cluster stops (SIGTERM/SIGINT reach the cluster's handler).
"""

from django.conf import settings
from django_q.cluster import Cluster
from django_q.management.commands.qcluster import Command as QclusterCommand

from routing.services.timers import run_timer_loop


class Command(QclusterCommand):
    help = "Starts the django-q2 cluster and the router timer loop (offer expiry, delayed closes)."

    def add_arguments(self, parser):
        super().add_arguments(parser)
        parser.add_argument("--no-timers", action="store_true", help="Run only the django-q2 cluster.")

    def handle(self, *args, **options):
        settings.SECRET_KEY  # noqa: B018 - django-q2 signs tasks with it; fail early if unset
        cluster = Cluster()
        cluster.start()
        if options.get("run_once"):
            cluster.stop()
            return
        if options.get("no_timers"):
            cluster.sentinel.join()
            return
        run_timer_loop(should_stop=lambda: cluster.sentinel is None or not cluster.sentinel.is_alive())
