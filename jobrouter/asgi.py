"""ASGI entry point: HTTP through Django, websockets through Channels (agent desk)."""

import os

import django
from django.contrib.staticfiles.handlers import ASGIStaticFilesHandler

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "jobrouter.settings")
django.setup(set_prefix=False)

from jobrouter.handlers import SyncChainASGIHandler  # noqa: E402

# Static files (admin, desk) are served by the app itself: a self-hosted router should not need
# a separate web server in front of it.
django_asgi_app = ASGIStaticFilesHandler(SyncChainASGIHandler())

from channels.auth import AuthMiddlewareStack  # noqa: E402
from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402

from agents.routing import websocket_urlpatterns  # noqa: E402
from jobrouter.origins import RouterOriginValidator  # noqa: E402

application = ProtocolTypeRouter(
    {
        "http": django_asgi_app,
        # Only pages of the allowed origins may open a socket (JOBROUTER_ALLOWED_ORIGINS).
        "websocket": RouterOriginValidator(AuthMiddlewareStack(URLRouter(websocket_urlpatterns))),
    }
)
