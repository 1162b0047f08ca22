"""The router in-process: the official SDK clients drive the real Django application through
`django.test.Client` (no socket, no server process), every request's after-commit work runs
before the SDK sees the answer, and the background timer loop is replaced by a simulated clock
that travels to each due time and runs `routing.services.timers.run_due_timers(now=...)`.

Nothing of ours is mocked: requests go through the whole middleware chain (HMAC authentication
included, over exactly the bytes, path and host the SDK signed), the URL map, the views and the
domain code. What is left out is the TCP hop and the second process, which the live-server
modules (tests/test_api_wire.py, tests/test_api_live_smoke.py, the seed, push and browser
modules) keep covering.

Why this is equivalent for behaviour tests: with the live server, after-commit follow-ups run in
the request's thread right after its commit, and everything else that happens later comes from
the timer loop (or the django-q cluster, which runs tasks synchronously here). So between two
requests the only thing that can change the router's state is a timer falling due, and
`eventually` / `holds_for` below step through exactly those moments instead of sleeping.
"""

from __future__ import annotations

from contextlib import contextmanager
from datetime import datetime, timedelta
from typing import Any, Callable, Iterator, TypeVar
from urllib.parse import urlsplit

from azure.core.pipeline.transport import HttpTransport
from azure.core.rest._http_response_impl import HttpResponseImpl
from azure.core.utils import case_insensitive_dict
from django.test import Client, TestCase
from django.utils import timezone

T = TypeVar("T")

# Django's test client answers for this host, and the test settings allow it.
ENDPOINT = "http://testserver"


@contextmanager
def after_commit_work() -> Iterator[None]:
    """Run the on_commit callbacks registered inside the block when it ends, including those
    that callbacks register themselves (queueing → matching → pushes).

    Under the `db` fixture every test runs inside one transaction that is rolled back at the end,
    so the router's after-commit follow-ups would otherwise never run; with the live server they
    run right after each request's commit, which is the same moment seen from the client. Outside
    a transaction (the `transactional_db` fixture) nothing is deferred and this does nothing.
    """
    with TestCase.captureOnCommitCallbacks(execute=True):
        yield


class _DjangoResponse(HttpResponseImpl):
    """An azure-core (rest) response built from a Django test-client response."""

    def __init__(self, *, request, django_response) -> None:
        headers = {name: value for name, value in django_response.items()}
        super().__init__(
            request=request,
            internal_response=django_response,
            status_code=django_response.status_code,
            reason=django_response.reason_phrase,
            content_type=django_response.get("Content-Type"),
            headers=case_insensitive_dict(headers),
            stream_download_generator=None,
        )
        if django_response.streaming:
            self._content = b"".join(django_response.streaming_content)
        else:
            self._content = django_response.content

    def close(self) -> None:
        # The test client already closed the Django response (as a WSGI server does); closing it
        # again would fire request_finished, whose close_old_connections would drop the test's
        # open transaction.
        self._is_closed = True


# Headers the WSGI layer carries outside HTTP_* (or that describe the body it rebuilds).
_NOT_FORWARDED = {"content-type", "content-length", "host"}


class DjangoTestClientTransport(HttpTransport):
    """An azure-core transport that hands each request to `django.test.Client`.

    The request target goes to the application exactly as the SDK put it on the wire: the test
    client derives PATH_INFO and QUERY_STRING from it, and it is also passed as REQUEST_URI (what
    uWSGI provides), which the HMAC middleware reads as the raw, still-encoded target that the
    SDK signed. The Host header is the endpoint's host, the one the SDK signed too.
    """

    def __init__(self) -> None:
        # CSRF checks on, as for a real client: the API must not depend on the test client's
        # exemption.
        self._client = Client(enforce_csrf_checks=True)

    def __enter__(self) -> "DjangoTestClientTransport":
        return self

    def __exit__(self, *args: Any) -> None:
        self.close()

    def open(self) -> None:
        pass

    def close(self) -> None:
        pass

    def send(self, request, **kwargs: Any):
        url = urlsplit(request.url)
        target = url.path + (f"?{url.query}" if url.query else "")
        # `body` is what the SDK's HMAC policy hashed into x-ms-content-sha256.
        body = request.body
        if body is None:
            body = b""
        elif isinstance(body, str):
            body = body.encode("utf-8")
        headers = {k: v for k, v in request.headers.items() if k.lower() not in _NOT_FORWARDED}
        extra: dict[str, str] = {"REQUEST_URI": target, "HTTP_HOST": url.netloc}
        content_type = request.headers.get("Content-Type")
        if content_type:
            extra["CONTENT_TYPE"] = content_type
        with after_commit_work():
            response = self._client.generic(
                request.method, target, data=body, content_type=content_type or "",
                secure=url.scheme == "https", headers=headers, **extra,
            )
        return _DjangoResponse(request=request, django_response=response)


def make_inprocess_clients(access_key: str):
    """(administration client, job client) of the official SDK, wired to the in-process app."""
    from azure.communication.jobrouter import JobRouterAdministrationClient, JobRouterClient
    from azure.core.credentials import AzureKeyCredential

    # retry_total=0: a server error must fail the test, not be retried into a pass.
    return (
        JobRouterAdministrationClient(
            ENDPOINT, AzureKeyCredential(access_key), retry_total=0, transport=DjangoTestClientTransport()
        ),
        JobRouterClient(ENDPOINT, AzureKeyCredential(access_key), retry_total=0, transport=DjangoTestClientTransport()),
    )


# --- the simulated clock -------------------------------------------------------------------------


class RouterClock:
    """The wall clock of the in-process router, moved by time-machine (ticking, so events keep
    their order), and the timer loop's stand-in: moving the clock runs every timer that falls
    due on the way, at its due time, in due-time order (as the loop would, only without waiting).
    """

    def __init__(self, traveller) -> None:
        self._traveller = traveller

    @staticmethod
    def now() -> datetime:
        return timezone.now()

    @staticmethod
    def next_due(*, after: datetime, until: datetime) -> datetime | None:
        """The earliest pending timer due time in (after, until], read from the timer table."""
        from routing.models import RouterTimer

        return (
            RouterTimer.objects.filter(fired_at__isnull=True, due_at__gt=after, due_at__lte=until)
            .order_by("due_at")
            .values_list("due_at", flat=True)
            .first()
        )

    def run_timers(self) -> int:
        """One pass of the timer loop at the current time; returns how many timers ran."""
        from routing.services.timers import run_due_timers

        with after_commit_work():
            return run_due_timers(now=timezone.now())

    def _travel_to(self, moment: datetime) -> None:
        delta = moment - timezone.now()
        if delta > timedelta(0):
            self._traveller.shift(delta)

    def advance_to(self, moment: datetime, *, each: Callable[[], None] | None = None) -> None:
        """Move the clock to `moment`, stopping at every due time on the way to run the timers
        due then (calling `each` after each stop), and finally at `moment` itself.

        Timers already due run first. A timer whose handler fails stays pending, as in the loop,
        which retries it on every pass; looking only for due times after "now" keeps this from
        stopping at it over and over."""
        while True:
            if self.run_timers() and each is not None:
                each()
            due = self.next_due(after=timezone.now(), until=moment)
            if due is None:
                break
            self._travel_to(due)
        self._travel_to(moment)
        self.run_timers()
        if each is not None:
            each()

    def advance(self, seconds: float, *, each: Callable[[], None] | None = None) -> None:
        self.advance_to(timezone.now() + timedelta(seconds=seconds), each=each)

    def eventually(self, check: Callable[[], T], *, timeout: float = 10.0) -> T:
        """`check()` once it is truthy, letting the clock run (timers included) for at most
        `timeout` simulated seconds; fails with the last value otherwise."""
        deadline = timezone.now() + timedelta(seconds=timeout)
        last = check()
        while not last:
            if self.run_timers():  # already due: the loop would run it within a poll
                last = check()
                continue
            if timezone.now() >= deadline:
                raise AssertionError(f"condition not met within {timeout}s (last value: {last!r})")
            # On to the next due time; with none before the deadline, to the deadline itself
            # (state read relative to "now" may still change by then) for a last look.
            due = self.next_due(after=timezone.now(), until=deadline)
            self._travel_to(due or deadline)
            self.run_timers()
            last = check()
        return last

    def holds_for(self, check: Callable[[], Any], seconds: float) -> None:
        """Assert `check()` stays truthy for `seconds` of simulated time: checked now, after
        every timer that runs meanwhile, and at the end."""

        def still() -> None:
            value = check()
            assert value, f"condition stopped holding: {value!r}"

        still()
        self.advance(seconds, each=still)


# The clock of the running test (set by the `router_clock` fixture in conftest), so that the
# module-level helpers below keep the call shape of the live-server `eventually`.
_current: RouterClock | None = None


def current_clock() -> RouterClock:
    if _current is None:
        raise RuntimeError("in-process eventually/holds_for need the router_clock fixture (use client/admin_client)")
    return _current


@contextmanager
def clock_in_use(clock: RouterClock) -> Iterator[RouterClock]:
    global _current
    _current = clock
    try:
        yield clock
    finally:
        _current = None


def eventually(check: Callable[[], T], *, timeout: float = 10.0) -> T:
    """In-process `eventually` (no polling interval: nothing changes between due times); see
    RouterClock.eventually."""
    return current_clock().eventually(check, timeout=timeout)


def holds_for(check: Callable[[], Any], seconds: float) -> None:
    """In-process `holds_for`: see RouterClock.holds_for."""
    current_clock().holds_for(check, seconds)


def signed_request(method: str, path_and_query: str, access_key: str, body: Any = None):
    """A request signed exactly as the SDK signs it, but with any JSON we like (e.g. nulls), sent
    to the in-process application; returns Django's test response (status_code, json(), text)."""
    import json

    from routing.api.auth import sign_request

    data = b"" if body is None else json.dumps(body).encode()
    host = urlsplit(ENDPOINT).netloc
    headers = sign_request(method=method, path_and_query=path_and_query, host=host, body=data, access_key=access_key)
    content_type = ""
    if body is not None:
        content_type = "application/merge-patch+json" if method == "PATCH" else "application/json"
    with after_commit_work():
        return Client(enforce_csrf_checks=True).generic(
            method, path_and_query, data=data, content_type=content_type, headers=headers,
            REQUEST_URI=path_and_query, HTTP_HOST=host,
        )
