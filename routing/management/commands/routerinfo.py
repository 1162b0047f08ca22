"""`manage.py routerinfo`: print how an Azure SDK client connects to this router."""

from django.conf import settings
from django.core.management.base import BaseCommand


class Command(BaseCommand):
    help = "Print the endpoint and access key clients use, with a ready-to-paste SDK snippet."

    def add_arguments(self, parser):
        parser.add_argument("--endpoint", default="http://127.0.0.1:8000")

    def handle(self, *args, **options):
        endpoint = options["endpoint"]
        key = settings.JOBROUTER_ACCESS_KEY
        self.stdout.write(
            "\n".join(
                [
                    "",
                    "Job router ready to start.",
                    f"  endpoint:   {endpoint}",
                    f"  access key: {key}",
                    "  admin:      " + endpoint + "/admin/",
                    "  desk:       " + endpoint + "/desk/   self-service: " + endpoint + "/queue/",
                    "",
                    "Next (another terminal): . .venv/bin/activate, then python manage.py createsuperuser,",
                    "createagent, createcustomer: README.md, \"Your first hour\".",
                    "",
                    "Connect with azure-communication-jobrouter 1.0.0:",
                    "  from azure.core.credentials import AzureKeyCredential",
                    "  from azure.communication.jobrouter import JobRouterClient, JobRouterAdministrationClient",
                    f'  client = JobRouterClient("{endpoint}", AzureKeyCredential("{key}"))',
                    f'  admin = JobRouterAdministrationClient("{endpoint}", AzureKeyCredential("{key}"))',
                    "",
                ]
            )
        )
