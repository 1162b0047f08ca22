"""An ASGI handler whose middleware chain runs synchronously, entered with one thread hop.

Every view of this project is synchronous. Django's ASGIHandler builds an async middleware
chain, and under it each MiddlewareMixin hook (process_request, process_response, …) runs
through its own `sync_to_async` hop: about two hops per middleware per request, on top of the
hop into the view. Building the chain in sync mode and calling it once through `sync_to_async`
keeps the request on one worker thread from the first middleware to the view and back (measured
with benchmarks/run.py; see the README). Websockets are unaffected (Channels handles them).
"""

from __future__ import annotations

from asgiref.sync import sync_to_async
from django.core.handlers.asgi import ASGIHandler


class SyncChainASGIHandler(ASGIHandler):
    def __init__(self) -> None:
        # Skip ASGIHandler.__init__ (it builds the async chain); build the sync one instead.
        super(ASGIHandler, self).__init__()
        self.load_middleware(is_async=False)

    async def get_response_async(self, request):
        # thread_sensitive: the request's sync code shares one thread per request context, as
        # Django does for sync views under ASGI (database connections stay on that thread).
        return await sync_to_async(self.get_response, thread_sensitive=True)(request)
