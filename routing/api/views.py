"""REST views for the ACS Job Router data-plane API, versions 2023-11-01 (§2) and
2022-07-18-preview.

Views are thin: parse the wire input, call one domain function, render the wire output. The
`api-version` query parameter picks a translator (`routing.api.versions`) that turns the request
body into the 2023-11-01 shape the typed patches parse and the 2023-11-01 rendering into the
caller's shape; nothing below the views knows which version called.
Action operations use colon verbs on the last path segment (`/routing/jobs/{id}:cancel`); the
verb is split off on the last `:` and only for POST, so ids may contain colons.
"""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass
from datetime import datetime
from datetime import timezone as dt_timezone
from typing import Any, Callable
from urllib.parse import urlencode

from django.core.exceptions import ImproperlyConfigured
from django.db import models
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.utils.http import http_date, parse_http_date_safe
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from routing import clock, limits, queries
from routing import validation as v
from routing.api import openapi, versions, wire
from routing.api.errors import error_response
from routing.api.parsers import MergePatchJSONParser, RouterJSONParser
from routing.errors import Conflict, InvalidRequest, NotFound, PreconditionFailed
from routing.models import ClassificationPolicy, DistributionPolicy, EventSubscription, ExceptionPolicy, Queue
from routing.patches import (
    ClassificationPolicyPatch,
    DistributionPolicyPatch,
    EventSubscriptionPatch,
    ExceptionPolicyPatch,
    JobPatch,
    QueuePatch,
    WorkerPatch,
)
from routing.services import customers, policies, subscriptions
from routing.services import jobs as job_services
from routing.services import offers as offer_services
from routing.services import workers as worker_services
from routing.services.common import Precondition

SUPPORTED_API_VERSIONS = versions.SUPPORTED_API_VERSIONS
# Attempts at a preview map merge (read, merge, compare-and-set) before answering 409. A request
# loses a round only to one that won it, so up to this many concurrent writers of one resource
# all get through.
MERGE_ATTEMPTS = 16
DEFAULT_PAGE_SIZE = 100
MAX_PAGE_SIZE = 1000
# Longest colon verb (":waitingRoomLink") a POST path segment may carry after an id.
MAX_VERB_LENGTH = 16


def check_path_ids(kwargs: dict[str, Any], *, with_verb: bool) -> None:
    """Path ids are at most `limits.MAX_ID_LENGTH` characters (plus a colon verb on POST);
    InvalidRequest (400) otherwise, before any query sees them."""
    longest = limits.MAX_ID_LENGTH + (MAX_VERB_LENGTH if with_verb else 0)
    for name, value in kwargs.items():
        if isinstance(value, str) and "\x00" in value:
            raise InvalidRequest(f"The {name} in the path contains NUL.", target=name)
        if isinstance(value, str) and len(value) > longest:
            raise InvalidRequest(
                f"The {name} in the path is {len(value)} characters long; at most {limits.MAX_ID_LENGTH} are allowed.",
                target=name,
            )


class RouterView(APIView):
    """Base: checks `api-version` and path id lengths, reads the clock once per request
    (`self.now`)."""

    parser_classes = [RouterJSONParser, MergePatchJSONParser]
    now: datetime
    version: versions.WireVersion

    def initial(self, request: Request, *args: Any, **kwargs: Any) -> None:
        super().initial(request, *args, **kwargs)
        check_path_ids(kwargs, with_verb=request.method == "POST")
        if any("\x00" in key or "\x00" in value for key, value in request.query_params.items()):
            raise InvalidRequest("Query parameters may not contain NUL.")
        self.now = clock.now()
        self.version = versions.version_for(request.query_params.get("api-version"))

    def body(self, request: Request) -> dict[str, Any]:
        """The JSON body as an object; an empty body is `{}`."""
        data = request.data
        if data in (None, "") or (hasattr(data, "dict") and not data):
            return {}
        if not isinstance(data, dict):
            raise InvalidRequest("The request body must be a JSON object.")
        return data

    def upsert(
        self,
        request: Request,
        kind: versions.ResourceKind,
        read_current: Callable[[], dict[str, Any] | None],
        upsert: Callable[[dict[str, Any], Precondition | None], tuple[Any, bool]],
    ) -> tuple[Any, bool]:
        """Translate the body to 2023-11-01 and call `upsert(ga_body, precondition)`.

        A version that merges keyed maps per key (the preview's worker queues and channels, job
        notes, exception rules) is given the stored resource (`read_current`, 2023-11-01 shape)
        and the merged whole list is written only if the resource is still the one read: an
        If-Match on its ETag (If-None-Match: * when it did not exist), retried on a lost race,
        so a concurrent writer's change is never overwritten by a stale merge."""
        body = self.body(request)
        precondition = precondition_from(request)
        if not self.version.needs_current(kind, body):
            return upsert(self.version.to_ga(kind, body, None), precondition)
        for _attempt in range(MERGE_ATTEMPTS):
            current = read_current()
            guard = precondition or (
                Precondition(if_match=f'"{current["etag"]}"') if current else Precondition(if_none_match="*")
            )
            try:
                return upsert(self.version.to_ga(kind, body, current), guard)
            except PreconditionFailed:
                if precondition is not None:
                    raise
        raise Conflict("The resource kept changing while this request merged into it; retry.")


def split_verb(segment: str, verbs: set[str]) -> tuple[str, str]:
    """`"j:1:cancel"` → `("j:1", "cancel")`; NotFound when the verb is unknown."""
    resource_id, sep, verb = segment.rpartition(":")
    if not sep or verb not in verbs or not resource_id:
        raise NotFound(f"No operation {v.quoted(segment)}; expected one of {', '.join(sorted(':' + x for x in verbs))}.")
    return resource_id, verb


def resource_response(data: dict[str, Any], obj: Any, status: int = 200) -> Response:
    """A resource body with its `ETag` and RFC 1123 `Last-Modified` headers."""
    return Response(
        data, status=status, headers={"ETag": f'"{obj.etag}"', "Last-Modified": http_date(obj.updated_at.timestamp())}
    )


def precondition_from(request: Request) -> Precondition | None:
    if_match = request.headers.get("If-Match")
    if_none_match = request.headers.get("If-None-Match")
    raw_since = request.headers.get("If-Unmodified-Since")
    since = None
    if raw_since:
        seconds = parse_http_date_safe(raw_since)
        if seconds is None:
            raise InvalidRequest("If-Unmodified-Since must be an RFC 1123 date.")
        since = datetime.fromtimestamp(seconds, tz=dt_timezone.utc)
    if if_match is None and if_none_match is None and since is None:
        return None
    return Precondition(if_match=if_match, if_none_match=if_none_match, if_unmodified_since=since)


# --- paging (ACS §2.3) ------------------------------------------------------------------------


def page_params(request: Request) -> dict[str, str]:
    """The effective list parameters: those of the request, or for a next-page request those
    carried in its `continuationToken` (the client does not resend filters or page size)."""
    token = request.query_params.get("continuationToken")
    if token:
        try:
            if len(token) > limits.MAX_QUERY_TOKEN_LENGTH:
                raise ValueError
            data = json.loads(base64.urlsafe_b64decode(token.encode() + b"=" * (-len(token) % 4)))
            if not isinstance(data, dict):
                raise ValueError
        except (ValueError, RecursionError) as exc:
            raise InvalidRequest("continuationToken is not valid.", target="continuationToken") from exc
        return {str(k): str(val) for k, val in data.items()}
    return {k: str(val) for k, val in request.query_params.items() if k not in ("api-version",)}


def paged_response(
    request: Request, params: dict[str, str], queryset: QuerySet, render: Callable[[list], list[dict]]
) -> Response:
    """One page `{value, nextLink?}` in id order, keyset-paged after the last id; `nextLink`
    is relative and carries the filters and page size in `continuationToken`."""
    size = v.optional_int(_int_param(params.get("maxpagesize")), "maxpagesize", minimum=1) or DEFAULT_PAGE_SIZE
    size = min(size, MAX_PAGE_SIZE)
    after = params.get("after")
    qs = queryset.order_by("pk")
    if after:
        qs = qs.filter(pk__gt=after)
    items = list(qs[: size + 1])
    body: dict[str, Any] = {"value": render(items[:size])}
    if len(items) > size:
        carried = {k: val for k, val in params.items() if k not in ("continuationToken",)}
        carried.update({"after": items[size - 1].pk, "maxpagesize": str(size)})
        token = base64.urlsafe_b64encode(json.dumps(carried).encode()).decode().rstrip("=")
        body["nextLink"] = f"{request.path}?{urlencode({'continuationToken': token})}"
    return Response(body)


def _int_param(raw: str | None) -> int | None | str:
    if raw is None:
        return None
    try:
        return int(raw)
    except ValueError:
        return raw


def _datetime_param(params: dict[str, str], key: str) -> datetime | None:
    return v.optional_datetime(params.get(key), key)


# --- administration resources (§2.1) ---------------------------------------------------------


@dataclass(frozen=True)
class AdminResource:
    kind: versions.ResourceKind
    model: type[models.Model]
    what: str
    parse: Callable[[dict[str, Any]], Any]
    upsert: Callable[..., tuple[Any, bool]]
    id_kwarg: str
    delete: Callable[..., None]
    render: Callable[[Any], dict[str, Any]]


ADMIN_RESOURCES = {
    "distributionPolicies": AdminResource(
        "distributionPolicy", DistributionPolicy, "Distribution policy", DistributionPolicyPatch.from_wire, policies.distribution_policy_upsert, "policy_id",
        policies.distribution_policy_delete, wire.distribution_policy,
    ),
    "classificationPolicies": AdminResource(
        "classificationPolicy", ClassificationPolicy, "Classification policy", ClassificationPolicyPatch.from_wire,
        policies.classification_policy_upsert, "policy_id",
        policies.classification_policy_delete, wire.classification_policy,
    ),
    "exceptionPolicies": AdminResource(
        "exceptionPolicy", ExceptionPolicy, "Exception policy", ExceptionPolicyPatch.from_wire, policies.exception_policy_upsert, "policy_id",
        policies.exception_policy_delete, wire.exception_policy,
    ),
    "queues": AdminResource(
        "queue", Queue, "Queue", QueuePatch.from_wire, policies.queue_upsert, "queue_id", policies.queue_delete, wire.queue
    ),
}


class AdminResourceView(RouterView):
    """Base of the policy and queue views; `resource` is given by `as_view(resource=...)`."""

    resource: AdminResource | None = None

    @property
    def admin(self) -> AdminResource:
        if self.resource is None:
            raise ImproperlyConfigured(f"{type(self).__name__} needs as_view(resource=...).")
        return self.resource


class AdminCollectionView(AdminResourceView):
    """GET /routing/{distributionPolicies|classificationPolicies|exceptionPolicies|queues}"""

    def get(self, request: Request) -> Response:
        params = page_params(request)
        res = self.admin
        return paged_response(
            request, params, res.model._default_manager.all(),
            lambda items: [self.version.list_item(res.kind, res.render(i)) for i in items],
        )


class AdminItemView(AdminResourceView):
    """GET / PATCH (upsert) / DELETE of one policy or queue."""

    def get(self, request: Request, resource_id: str) -> Response:
        obj = policies.get_or_404(self.admin.model, resource_id, self.admin.what)
        return resource_response(self.version.render(self.admin.kind, self.admin.render(obj)), obj)

    def patch(self, request: Request, resource_id: str) -> Response:
        res = self.admin

        def read_current() -> dict[str, Any] | None:
            stored = res.model._default_manager.filter(pk=resource_id).first()
            return None if stored is None else res.render(stored)

        obj, created = self.upsert(
            request, res.kind, read_current,
            lambda body, precondition: res.upsert(
                **{res.id_kwarg: resource_id}, patch=res.parse(body), precondition=precondition, now=self.now
            ),
        )
        return resource_response(self.version.render(res.kind, res.render(obj)), obj, status=201 if created else 200)

    def delete(self, request: Request, resource_id: str) -> Response:
        self.admin.delete(**{self.admin.id_kwarg: resource_id})
        return Response(status=204)


class EventSubscriptionCollectionView(RouterView):
    """GET /routing/eventSubscriptions (paged like every list). Extension: Event Grid event
    subscriptions on this router."""

    def get(self, request: Request) -> Response:
        return paged_response(
            request, page_params(request), EventSubscription.objects.all(),
            lambda items: [wire.event_subscription(s) for s in items],
        )


class EventSubscriptionItemView(RouterView):
    """GET / PATCH (merge-patch upsert: 201 with the signingSecret, or 200) / DELETE (204) of
    /routing/eventSubscriptions/{id}."""

    def get(self, request: Request, subscription_id: str) -> Response:
        obj = policies.get_or_404(EventSubscription, subscription_id, "Event subscription")
        return resource_response(wire.event_subscription(obj), obj)

    def patch(self, request: Request, subscription_id: str) -> Response:
        obj, created = subscriptions.event_subscription_upsert(
            subscription_id=subscription_id, patch=EventSubscriptionPatch.from_wire(self.body(request)),
            precondition=precondition_from(request), now=self.now,
        )
        return resource_response(wire.event_subscription(obj, with_secret=created), obj, status=201 if created else 200)

    def delete(self, request: Request, subscription_id: str) -> Response:
        subscriptions.event_subscription_delete(subscription_id=subscription_id)
        return Response(status=204)


def event_subscription_validation(request: HttpRequest, subscription_id: str) -> HttpResponse:
    """GET /eventgrid/validate/{id}?code=… : the `validationUrl` of Event Grid's handshake
    (manual validation). Not HMAC-signed: the code is the credential. 200 when it validated the
    subscription, 404 otherwise (wrong code, unknown id, or not awaiting validation)."""
    code = request.GET.get("code", "")[: limits.MAX_ID_LENGTH]
    if subscriptions.event_subscription_validate(subscription_id=subscription_id[: limits.MAX_ID_LENGTH], code=code):
        return JsonResponse({"validationResponse": "Succeeded"})
    return error_response(404, "NotFound", "No event subscription awaits validation with this code.")


class QueueStatisticsView(RouterView):
    """GET /routing/queues/{queueId}/statistics"""

    def get(self, request: Request, queue_id: str) -> Response:
        return Response(wire.queue_statistics(queries.queue_statistics(queue_id, self.now)))


# --- jobs (§2.2) ------------------------------------------------------------------------------


class JobCollectionView(RouterView):
    """GET /routing/jobs with status, queueId, channelId, classificationPolicyId,
    scheduledBefore, scheduledAfter filters."""

    def get(self, request: Request) -> Response:
        params = page_params(request)
        qs = queries.jobs_filtered(
            status=params.get("status", "all"),
            queue_id=params.get("queueId"),
            channel_id=params.get("channelId"),
            classification_policy_id=params.get("classificationPolicyId"),
            scheduled_before=_datetime_param(params, "scheduledBefore"),
            scheduled_after=_datetime_param(params, "scheduledAfter"),
        )
        return paged_response(
            request, params, qs, lambda items: [self.version.list_item("job", wire.job(j, self.now)) for j in items]
        )


class JobItemView(RouterView):
    """GET / PATCH / DELETE /routing/jobs/{jobId}; POST /routing/jobs/{jobId}:cancel|:reclassify,
    and :complete|:close with the `assignmentId` in the body (the 2022-07-18-preview paths of the
    assignment actions, served under every api-version)."""

    verbs = {"cancel", "reclassify", "waitingRoomLink", "complete", "close"}

    def get(self, request: Request, job_id: str) -> Response:
        job = queries.job_get(job_id)
        return resource_response(self.version.render("job", wire.job(job, self.now)), job)

    def patch(self, request: Request, job_id: str) -> Response:
        def read_current() -> dict[str, Any] | None:
            try:
                return wire.job(queries.job_get(job_id), self.now)
            except NotFound:
                return None

        job, created = self.upsert(
            request, "job", read_current,
            lambda body, precondition: job_services.job_upsert(
                job_id=job_id, patch=JobPatch.from_wire(body, now=self.now), precondition=precondition, now=self.now
            ),
        )
        return resource_response(self.version.render("job", wire.job(job, self.now)), job, status=201 if created else 200)

    def delete(self, request: Request, job_id: str) -> Response:
        job_services.job_delete(job_id=job_id)
        return Response(status=204)

    def post(self, request: Request, job_id: str) -> Response:
        job_id, verb = split_verb(job_id, self.verbs)
        body = self.body(request)
        if verb in ("complete", "close"):
            assignment_id = v.optional_id(body.get("assignmentId"), "assignmentId")
            if not assignment_id:
                raise InvalidRequest("assignmentId is required.", target="assignmentId")
            return assignment_action(verb, job_id=job_id, assignment_id=assignment_id, body=body, now=self.now)
        if verb == "cancel":
            job_services.job_cancel(
                job_id=job_id,
                note=v.optional_string(body.get("note"), "note", max_length=limits.MAX_NOTE_LENGTH),
                disposition_code=v.optional_id(body.get("dispositionCode"), "dispositionCode"),
                now=self.now,
            )
        elif verb == "waitingRoomLink":
            # Extension (seed 002 Q12): a signed, expiring link to the customer's waiting room.
            link = customers.waiting_room_link(job_id=job_id, now=self.now)
            return Response({"url": request.build_absolute_uri(link.path), "path": link.path,
                             "expiresAt": v.format_datetime(link.expires_at)})
        else:
            job_services.job_reclassify(job_id=job_id, now=self.now)
        return Response({})


class JobPositionView(RouterView):
    """GET /routing/jobs/{jobId}/position"""

    def get(self, request: Request, job_id: str) -> Response:
        return Response(wire.job_position(queries.job_position(job_id, self.now)))


def assignment_action(verb: str, *, job_id: str, assignment_id: str, body: dict[str, Any], now: datetime) -> Response:
    """:complete (`{note?}`) or :close (`{dispositionCode?, closeAt?, note?}`) of one assignment;
    200 `{}` (close never answers 202: the 2023-11-01 client accepts only 200, the preview both)."""
    note = v.optional_string(body.get("note"), "note", max_length=limits.MAX_NOTE_LENGTH)
    if verb == "complete":
        job_services.job_complete(job_id=job_id, assignment_id=assignment_id, note=note, now=now)
    else:
        job_services.job_close(
            job_id=job_id,
            assignment_id=assignment_id,
            disposition_code=v.optional_id(body.get("dispositionCode"), "dispositionCode"),
            close_at=v.optional_datetime(body.get("closeAt"), "closeAt"),
            note=note,
            now=now,
        )
    return Response({})


class AssignmentActionView(RouterView):
    """POST /routing/jobs/{jobId}/assignments/{assignmentId}:complete|:close|:unassign"""

    verbs = {"complete", "close", "unassign"}

    def post(self, request: Request, job_id: str, assignment: str) -> Response:
        assignment_id, verb = split_verb(assignment, self.verbs)
        body = self.body(request)
        if verb != "unassign":
            return assignment_action(verb, job_id=job_id, assignment_id=assignment_id, body=body, now=self.now)
        job = job_services.job_unassign(
            job_id=job_id,
            assignment_id=assignment_id,
            suspend_matching=bool(v.optional_bool(body.get("suspendMatching"), "suspendMatching")),
            now=self.now,
        )
        return Response({"jobId": job.pk, "unassignmentCount": job.unassignment_count})


# --- workers (§2.2) ---------------------------------------------------------------------------


class WorkerCollectionView(RouterView):
    """GET /routing/workers with state, channelId, queueId, hasCapacity filters."""

    def get(self, request: Request) -> Response:
        params = page_params(request)
        has_capacity = params.get("hasCapacity", "false").lower()
        if has_capacity not in ("true", "false"):
            raise InvalidRequest("hasCapacity must be true or false.", target="hasCapacity")
        qs = queries.workers_filtered(
            now=self.now,
            state=params.get("state", "all"),
            channel_id=params.get("channelId"),
            queue_id=params.get("queueId"),
            has_capacity=has_capacity == "true",
        )
        return paged_response(
            request, params, qs,
            lambda items: [self.version.list_item("worker", wire.worker(w)) for w in queries.worker_views(items, self.now)],
        )


class WorkerItemView(RouterView):
    """GET / PATCH / DELETE /routing/workers/{workerId}; POST /routing/workers/{workerId}:requestJob
    (extension, seed 002 Q14: manual assign of the best waiting job)."""

    verbs = {"requestJob"}

    def post(self, request: Request, worker_id: str) -> Response:
        worker_id, _verb = split_verb(worker_id, self.verbs)
        result = worker_services.worker_request_job(worker_id=worker_id, now=self.now)
        return Response({"assignmentId": result.assignment_id, "jobId": result.job_id, "workerId": result.worker_id})

    def get(self, request: Request, worker_id: str) -> Response:
        view = queries.worker_get(worker_id, self.now)
        return resource_response(self.version.render("worker", wire.worker(view)), view.worker)

    def patch(self, request: Request, worker_id: str) -> Response:
        def read_current() -> dict[str, Any] | None:
            try:
                return wire.worker(queries.worker_get(worker_id, self.now))
            except NotFound:
                return None

        worker, created = self.upsert(
            request, "worker", read_current,
            lambda body, precondition: worker_services.worker_upsert(
                worker_id=worker_id, patch=WorkerPatch.from_wire(body), precondition=precondition, now=self.now
            ),
        )
        view = queries.worker_get(worker.pk, self.now)
        return resource_response(
            self.version.render("worker", wire.worker(view)), view.worker, status=201 if created else 200
        )

    def delete(self, request: Request, worker_id: str) -> Response:
        worker_services.worker_delete(worker_id=worker_id, now=self.now)
        return Response(status=204)


class OfferActionView(RouterView):
    """POST /routing/workers/{workerId}/offers/{offerId}:accept|:decline"""

    verbs = {"accept", "decline"}

    def post(self, request: Request, worker_id: str, offer: str) -> Response:
        offer_id, verb = split_verb(offer, self.verbs)
        if verb == "accept":
            result = offer_services.offer_accept(worker_id=worker_id, offer_id=offer_id, now=self.now)
            return Response({"assignmentId": result.assignment_id, "jobId": result.job_id, "workerId": result.worker_id})
        body = self.body(request)
        offer_services.offer_decline(
            worker_id=worker_id,
            offer_id=offer_id,
            retry_offer_at=v.optional_datetime(body.get("retryOfferAt"), "retryOfferAt"),
            now=self.now,
        )
        return Response({})


class OpenApiView(APIView):
    """GET /routing/openapi.json: the OpenAPI 3 document of this API (routing.api.openapi);
    no api-version needed, HMAC-signed like every /routing request."""

    def get(self, request: Request) -> Response:
        return Response(openapi.document())
