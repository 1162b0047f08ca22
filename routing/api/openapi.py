"""The router's own OpenAPI 3.0 document: the ACS Job Router 2023-11-01 operations this server
implements and our extensions (seed 002), served at `GET /routing/openapi.json` (HMAC-signed like
every `/routing` request). The 2022-07-18-preview (`api-version=2022-07-18-preview`) has the same
paths (plus `:complete` / `:close` on the job, also served under 2023-11-01) with the body shapes
that `routing.api.versions.preview` translates; this document describes the 2023-11-01 shapes.

Written by hand next to the views rather than generated: the views parse bodies through the typed
patches (`routing.patches`), which a generator cannot see. Request schemas carry the bounds of
`routing.limits` (the same constants the validators use); responses are described as objects,
and every error as the ACS error body. `tests/test_openapi.py` checks that every route and
method of `routing.api.urls` is described here and that everything described here is routed;
`tests/test_fuzz_openapi.py` generates requests from it (schemathesis).
"""

from __future__ import annotations

import copy
from typing import Any

from routing import limits
from routing.models import ROUTER_EVENT_TYPES
from routing.validation import (
    ACTION_KINDS,
    ATTACHMENT_KINDS,
    DISTRIBUTION_MODE_KINDS,
    LABEL_OPERATORS,
    MATCHING_MODE_KINDS,
    RULE_KINDS,
    SCORING_PARAMETERS,
    TRIGGER_KINDS,
)

JSON = "application/json"
MERGE_PATCH = "application/merge-patch+json"


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def _string(max_length: int = limits.MAX_TEXT_LENGTH, **extra: Any) -> dict[str, Any]:
    return {"type": "string", "maxLength": max_length, **extra}


def _id() -> dict[str, Any]:
    return _string(limits.MAX_ID_LENGTH)


def _int(minimum: int, maximum: int) -> dict[str, Any]:
    return {"type": "integer", "minimum": minimum, "maximum": maximum}


def _duration() -> dict[str, Any]:
    return {"type": "number", "minimum": 0, "maximum": limits.MAX_DURATION_SECONDS}


def _array(items: dict[str, Any], max_items: int = limits.MAX_LIST_ITEMS) -> dict[str, Any]:
    return {"type": "array", "items": items, "maxItems": max_items}


def _object(properties: dict[str, Any], required: tuple[str, ...] = ()) -> dict[str, Any]:
    schema: dict[str, Any] = {"type": "object", "properties": properties}
    if required:
        schema["required"] = list(required)
    return schema


def _kind(kinds: tuple[str, ...]) -> dict[str, Any]:
    return {"type": "string", "enum": list(kinds)}


DATE_TIME = {"type": "string", "format": "date-time"}

SCHEMAS: dict[str, Any] = {
    "AcsError": _object(
        {"error": _object({"code": {"type": "string"}, "message": {"type": "string"}, "target": {"type": "string"}},
                          ("code", "message"))},
        ("error",),
    ),
    "LabelValue": {
        "oneOf": [
            _string(),
            {"type": "number", "minimum": -limits.MAX_LABEL_NUMBER, "maximum": limits.MAX_LABEL_NUMBER},
            {"type": "boolean"},
        ]
    },
    "Labels": {
        "type": "object",
        "maxProperties": limits.MAX_LABELS,
        "additionalProperties": {"oneOf": [_ref("LabelValue"), {"type": "null"}]},
    },
    "WorkerSelector": _object(
        {"key": _id(), "labelOperator": _kind(LABEL_OPERATORS), "value": _ref("LabelValue"),
         "expiresAfterSeconds": _duration(), "expedite": {"type": "boolean"}},
        ("key", "labelOperator"),
    ),
    "QueueSelector": _object(
        {"key": _id(), "labelOperator": _kind(LABEL_OPERATORS), "value": _ref("LabelValue")}, ("key", "labelOperator")
    ),
    "RouterRule": _object(
        {
            "kind": _kind(RULE_KINDS),
            "value": _ref("LabelValue"),
            "expression": _string(limits.MAX_EXPRESSION_LENGTH, minLength=1),
            "language": {"type": "string", "enum": ["powerFx"]},
            "functionUri": _string(limits.MAX_URI_LENGTH, format="uri"),
            "credential": _object({"functionKey": _string(), "appKey": _string(), "clientId": _string()}),
            "authorizationServerUri": _string(limits.MAX_URI_LENGTH, format="uri"),
            "webhookUri": _string(limits.MAX_URI_LENGTH, format="uri"),
            "clientCredential": _object({"clientId": _string(), "clientSecret": _string()}),
        },
        ("kind",),
    ),
    "DistributionMode": _object(
        {
            "kind": _kind(DISTRIBUTION_MODE_KINDS),
            "minConcurrentOffers": _int(1, limits.MAX_CONCURRENT_OFFERS),
            "maxConcurrentOffers": _int(1, limits.MAX_CONCURRENT_OFFERS),
            "bypassSelectors": {"type": "boolean"},
            "scoringRule": _ref("RouterRule"),
            "scoringRuleOptions": _object({
                "batchSize": _int(1, limits.MAX_BATCH_SIZE),
                "scoringParameters": _array(_kind(SCORING_PARAMETERS), 2),
                "isBatchScoringEnabled": {"type": "boolean"},
                "descendingOrder": {"type": "boolean"},
            }),
        },
        ("kind",),
    ),
    "DistributionPolicy": _object(
        {"name": _id(), "offerExpiresAfterSeconds": _duration(), "mode": _ref("DistributionMode")}
    ),
    "QueueSelectorAttachment": _object(
        {"kind": _kind(ATTACHMENT_KINDS), "queueSelector": _ref("QueueSelector"), "condition": _ref("RouterRule"),
         "queueSelectors": _array(_ref("QueueSelector")), "key": _id(), "labelOperator": _kind(LABEL_OPERATORS),
         "rule": _ref("RouterRule"),
         "allocations": _array(_object({"weight": {"type": "number", "minimum": 0, "maximum": 1},
                                        "queueSelectors": _array(_ref("QueueSelector"))}))},
        ("kind",),
    ),
    "WorkerSelectorAttachment": _object(
        {"kind": _kind(ATTACHMENT_KINDS), "workerSelector": _ref("WorkerSelector"), "condition": _ref("RouterRule"),
         "workerSelectors": _array(_ref("WorkerSelector")), "key": _id(), "labelOperator": _kind(LABEL_OPERATORS),
         "expiresAfterSeconds": _duration(), "rule": _ref("RouterRule"),
         "allocations": _array(_object({"weight": {"type": "number", "minimum": 0, "maximum": 1},
                                        "workerSelectors": _array(_ref("WorkerSelector"))}))},
        ("kind",),
    ),
    "ClassificationPolicy": _object({
        "name": _id(),
        "fallbackQueueId": _id(),
        "queueSelectorAttachments": _array(_ref("QueueSelectorAttachment")),
        "prioritizationRule": _ref("RouterRule"),
        "workerSelectorAttachments": _array(_ref("WorkerSelectorAttachment")),
    }),
    "ExceptionAction": _object(
        {"kind": _kind(ACTION_KINDS), "id": _id(), "note": _string(limits.MAX_NOTE_LENGTH), "dispositionCode": _id(),
         "queueId": _id(), "priority": _int(limits.MIN_JOB_PRIORITY, limits.MAX_JOB_PRIORITY),
         "workerSelectors": _array(_ref("WorkerSelector")), "classificationPolicyId": _id(),
         "labelsToUpsert": _ref("Labels")},
        ("kind",),
    ),
    "ExceptionRule": _object(
        {"id": _id(),
         "trigger": _object({"kind": _kind(TRIGGER_KINDS), "threshold": _int(0, limits.MAX_QUEUE_LENGTH_THRESHOLD),
                             "thresholdSeconds": _duration()}, ("kind",)),
         "actions": _array(_ref("ExceptionAction"))},
        ("id", "trigger", "actions"),
    ),
    "ExceptionPolicy": _object({"name": _id(), "exceptionRules": _array(_ref("ExceptionRule"))}),
    "RouterQueue": _object({
        "name": _id(),
        "description": _string(limits.MAX_NOTE_LENGTH),
        "distributionPolicyId": _id(),
        "exceptionPolicyId": _id(),
        "labels": _ref("Labels"),
        "priority": _int(limits.MIN_QUEUE_PRIORITY, limits.MAX_QUEUE_PRIORITY),
    }),
    "RouterJob": _object({
        "channelReference": _string(),
        "channelId": _id(),
        "queueId": _id(),
        "classificationPolicyId": _id(),
        "priority": _int(limits.MIN_JOB_PRIORITY, limits.MAX_JOB_PRIORITY),
        "requestedWorkerSelectors": _array(_ref("WorkerSelector")),
        "labels": _ref("Labels"),
        "tags": _ref("Labels"),
        "notes": _array(_object({"message": _string(limits.MAX_NOTE_LENGTH, minLength=1), "addedAt": DATE_TIME},
                                ("message",))),
        "dispositionCode": _id(),
        "matchingMode": _object({"kind": _kind(MATCHING_MODE_KINDS), "scheduleAt": DATE_TIME}, ("kind",)),
    }),
    "RouterWorker": _object({
        "capacity": _int(0, limits.MAX_CAPACITY),
        "labels": _ref("Labels"),
        "tags": _ref("Labels"),
        "availableForOffers": {"type": "boolean"},
        "channels": _array(_object(
            {"channelId": _id(), "capacityCostPerJob": _int(0, limits.MAX_CAPACITY),
             "maxNumberOfJobs": _int(1, limits.MAX_CAPACITY)},
            ("channelId", "capacityCostPerJob"),
        )),
        "queues": _array(_id(), limits.MAX_WORKER_QUEUES),
        "queuePriorities": {"type": "object", "maxProperties": limits.MAX_WORKER_QUEUES,
                            "additionalProperties": _int(limits.MIN_QUEUE_PRIORITY, limits.MAX_QUEUE_PRIORITY)},
    }),
    "EventSubscription": _object({
        "endpointUrl": _string(limits.MAX_URI_LENGTH, format="uri"),
        "eventDeliverySchema": _kind(("EventGridSchema", "CloudEventSchemaV1_0")),
        "includedEventTypes": _array(_kind(ROUTER_EVENT_TYPES), len(ROUTER_EVENT_TYPES)),
        "subjectBeginsWith": _string(),
        "subjectEndsWith": _string(),
        "maxDeliveryAttempts": _int(1, 30),
        "eventTimeToLiveInMinutes": _int(1, 1440),
        "maxEventsPerBatch": _int(1, 5000),
        "deadLetterEnabled": {"type": "boolean"},
    }),
    "CancelJobOptions": _object({"note": _string(limits.MAX_NOTE_LENGTH), "dispositionCode": _id()}),
    "CompleteJobOptions": _object({"note": _string(limits.MAX_NOTE_LENGTH)}),
    "CloseJobOptions": _object({"dispositionCode": _id(), "closeAt": DATE_TIME, "note": _string(limits.MAX_NOTE_LENGTH)}),
    # The 2022-07-18-preview paths of complete/close: the assignment id travels in the body.
    "CompleteJobRequest": _object({"assignmentId": _id(), "note": _string(limits.MAX_NOTE_LENGTH)}, ("assignmentId",)),
    "CloseJobRequest": _object({"assignmentId": _id(), "dispositionCode": _id(), "closeAt": DATE_TIME,
                                "note": _string(limits.MAX_NOTE_LENGTH)}, ("assignmentId",)),
    "UnassignJobOptions": _object({"suspendMatching": {"type": "boolean"}}),
    "DeclineJobOfferOptions": _object({"retryOfferAt": DATE_TIME}),
}

_ERRORS = {
    str(status): {"description": description, "content": {JSON: {"schema": _ref("AcsError")}}}
    for status, description in [
        (400, "invalid input"), (401, "missing or wrong HMAC signature"), (404, "no such resource or operation"),
        (405, "method not allowed"), (409, "conflicts with the current state"), (412, "precondition failed"),
        (413, f"body over {limits.MAX_BODY_BYTES} bytes"), (415, "body is not JSON"),
        (500, "unexpected failure (the message carries an error id)"),
        (503, "database unavailable or busy (with Retry-After)"),
    ]
}


def _param(name: str, where: str = "path", schema: dict[str, Any] | None = None) -> dict[str, Any]:
    return {"name": name, "in": where, "required": where == "path",
            "schema": schema or {"type": "string", "minLength": 1, "maxLength": limits.MAX_ID_LENGTH}}


API_VERSION = {"name": "api-version", "in": "query", "required": True,
               "schema": {"type": "string", "enum": ["2023-11-01"]}}
PAGE = [_param("maxpagesize", "query", {"type": "integer", "minimum": 1, "maximum": 1000}),
        _param("continuationToken", "query", _string(limits.MAX_QUERY_TOKEN_LENGTH))]


def _operation(operation_id: str, *, success: str = "200", body: str | None = None,
               media: str = JSON, query: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    op: dict[str, Any] = {
        "operationId": operation_id,
        "parameters": [API_VERSION, *(query or [])],
        "responses": {success: {"description": "success", **({} if success == "204" else {
            "content": {JSON: {"schema": {"type": "object"}}}})}, **_ERRORS},
    }
    if body is not None:
        op["requestBody"] = {"required": False, "content": {media: {"schema": _ref(body)}}}
    return op


def _resource(path_param: str, schema: str, name: str) -> dict[str, Any]:
    """Paths of one upsertable resource: GET / PATCH (upsert, 200 or 201) / DELETE, and colon verbs."""
    item: dict[str, Any] = {
        "parameters": [_param(path_param)],
        "get": _operation(f"get{name}"),
        "patch": _operation(f"upsert{name}", body=schema, media=MERGE_PATCH),
        "delete": _operation(f"delete{name}", success="204"),
    }
    item["patch"]["responses"]["201"] = item["patch"]["responses"]["200"]
    return item


def _verb(path_params: list[str], operation_id: str, body: str | None) -> dict[str, Any]:
    return {"parameters": [_param(p) for p in path_params], "post": _operation(operation_id, body=body)}


def _collection(operation_id: str, filters: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    return {"get": _operation(operation_id, query=[*PAGE, *(filters or [])])}


def _paths() -> dict[str, Any]:
    paths: dict[str, Any] = {}
    for collection, schema, name in [
        ("distributionPolicies", "DistributionPolicy", "DistributionPolicy"),
        ("classificationPolicies", "ClassificationPolicy", "ClassificationPolicy"),
        ("exceptionPolicies", "ExceptionPolicy", "ExceptionPolicy"),
        ("queues", "RouterQueue", "Queue"),
    ]:
        paths[f"/routing/{collection}"] = _collection(f"list{name}s")
        paths[f"/routing/{collection}/{{id}}"] = _resource("id", schema, name)
    paths["/routing/queues/{queueId}/statistics"] = {
        "parameters": [_param("queueId")], "get": _operation("getQueueStatistics")}
    paths["/routing/jobs"] = _collection("listJobs", [
        _param("status", "query", {"type": "string"}), _param("queueId", "query"), _param("channelId", "query"),
        _param("classificationPolicyId", "query"), _param("scheduledBefore", "query", DATE_TIME),
        _param("scheduledAfter", "query", DATE_TIME),
    ])
    paths["/routing/jobs/{jobId}"] = _resource("jobId", "RouterJob", "Job")
    paths["/routing/jobs/{jobId}:cancel"] = _verb(["jobId"], "cancelJob", "CancelJobOptions")
    paths["/routing/jobs/{jobId}:reclassify"] = _verb(["jobId"], "reclassifyJob", None)
    paths["/routing/jobs/{jobId}:complete"] = _verb(["jobId"], "completeJobByBody", "CompleteJobRequest")
    paths["/routing/jobs/{jobId}:close"] = _verb(["jobId"], "closeJobByBody", "CloseJobRequest")
    paths["/routing/jobs/{jobId}:waitingRoomLink"] = _verb(["jobId"], "waitingRoomLink", None)  # extension
    paths["/routing/jobs/{jobId}/position"] = {"parameters": [_param("jobId")], "get": _operation("getQueuePosition")}
    for verb, options in [("complete", "CompleteJobOptions"), ("close", "CloseJobOptions"),
                          ("unassign", "UnassignJobOptions")]:
        paths[f"/routing/jobs/{{jobId}}/assignments/{{assignmentId}}:{verb}"] = _verb(
            ["jobId", "assignmentId"], f"{verb}Job", options)
    paths["/routing/workers"] = _collection("listWorkers", [
        _param("state", "query", {"type": "string", "enum": ["active", "draining", "inactive", "all"]}),
        _param("channelId", "query"), _param("queueId", "query"),
        _param("hasCapacity", "query", {"type": "string", "enum": ["true", "false"]}),
    ])
    paths["/routing/workers/{workerId}"] = _resource("workerId", "RouterWorker", "Worker")
    paths["/routing/workers/{workerId}:requestJob"] = _verb(["workerId"], "requestJob", None)  # extension
    paths["/routing/workers/{workerId}/offers/{offerId}:accept"] = _verb(["workerId", "offerId"], "acceptJobOffer", None)
    paths["/routing/workers/{workerId}/offers/{offerId}:decline"] = _verb(
        ["workerId", "offerId"], "declineJobOffer", "DeclineJobOfferOptions")
    # Extension: Event Grid event subscriptions (webhooks receiving the router's events).
    paths["/routing/eventSubscriptions"] = _collection("listEventSubscriptions")
    paths["/routing/eventSubscriptions/{id}"] = _resource("id", "EventSubscription", "EventSubscription")
    paths["/routing/openapi.json"] = {"get": {
        "operationId": "getOpenApiDocument", "parameters": [],
        "responses": {"200": {"description": "this document", "content": {JSON: {"schema": {"type": "object"}}}}},
    }}
    return paths


def document() -> dict[str, Any]:
    """The OpenAPI 3.0.3 document (a fresh dict: callers may change it)."""
    return {
        "openapi": "3.0.3",
        "info": {
            "title": "Job router (ACS Job Router 2023-11-01 wire-compatible)",
            "version": "2023-11-01",
            "description": "Every request is signed with HMAC-SHA256 as the ACS SDK signs it; errors are "
                           '{"error": {"code", "message", "target"?}}. Bounds: README "Limits".',
        },
        "paths": _paths(),
        "components": {"schemas": copy.deepcopy(SCHEMAS)},
    }
