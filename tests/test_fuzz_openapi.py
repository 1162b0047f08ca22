"""Property-based fuzzing of the whole API from its own OpenAPI document (schemathesis).

Every operation of `routing.api.openapi.document()` gets requests generated from its schema,
both conforming (positive) and violating it (negative), each signed with HMAC exactly as the SDK
signs, sent through the whole Django stack in-process (middleware, views, domain, SQLite), with
the after-commit work (matching, classification) run as a server would. Every answer must be
below 500, and every 4xx must carry the ACS error body. Seeded resources with the id "0" (the
string Hypothesis tries first) let generated bodies reference existing queues and policies.

Derandomized: each run generates the same cases. `JOBROUTER_FUZZ_EXAMPLES` (env) scales the per-operation
budget; the default gives over 10,000 cases per run.
"""

from __future__ import annotations

import json
import os
from urllib.parse import urlencode, urlsplit

import pytest
import schemathesis
from django.test import Client
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode

from routing.api import openapi
from routing.api.auth import sign_request
from tests.inprocess import ENDPOINT, after_commit_work

HOST = urlsplit(ENDPOINT).netloc
EXAMPLES = int(os.environ.get("JOBROUTER_FUZZ_EXAMPLES", "150"))
REQUIRED_CASES = 10_000
# Headers the test client carries outside HTTP_* or that the signature fixes.
_NOT_FORWARDED = {"content-type", "content-length", "host", "authorization", "x-ms-date", "x-ms-content-sha256"}


def _body_bytes(kwargs: dict) -> bytes:
    if "json" in kwargs:
        return json.dumps(kwargs["json"]).encode()
    data = kwargs.get("data")
    if data is None:
        return b""
    return data if isinstance(data, bytes) else str(data).encode()


def send(client: Client, access_key: str, case) -> object:
    """Sign and send one generated case to the in-process application; returns the response."""
    kwargs = case.as_transport_kwargs(base_url=ENDPOINT)
    url = urlsplit(kwargs["url"])
    query = urlencode(kwargs.get("params") or {}, doseq=True)
    target = url.path + (f"?{query}" if query else "")
    body = _body_bytes(kwargs)
    headers = {k: str(v) for k, v in (kwargs.get("headers") or {}).items() if k.lower() not in _NOT_FORWARDED}
    headers.update(sign_request(method=case.method, path_and_query=target, host=HOST, body=body, access_key=access_key))
    content_type = (kwargs.get("headers") or {}).get("Content-Type", "")
    with after_commit_work():
        return client.generic(
            case.method, target, data=body, content_type=content_type, headers=headers,
            REQUEST_URI=target, HTTP_HOST=HOST,
        )


def check(case, response) -> None:
    detail = f"{case.method} {case.formatted_path} {case.body!r:.300} -> {response.status_code} {response.content[:500]!r}"
    assert response.status_code < 500, detail
    if response.status_code >= 400:
        error = response.json().get("error")
        assert isinstance(error, dict), detail
        assert isinstance(error.get("code"), str) and isinstance(error.get("message"), str), detail


def _seed(access_key: str, client: Client) -> None:
    """Resources with id "0" for generated bodies to point at."""
    for path, body in [
        ("/routing/distributionPolicies/0", {"offerExpiresAfterSeconds": 30, "mode": {"kind": "longestIdle"}}),
        ("/routing/exceptionPolicies/0", {"exceptionRules": [
            {"id": "0", "trigger": {"kind": "queueLength", "threshold": 0}, "actions": [{"kind": "reclassify"}]}]}),
        ("/routing/queues/0", {"distributionPolicyId": "0", "exceptionPolicyId": "0", "labels": {"0": "0"}}),
        ("/routing/classificationPolicies/0", {
            "fallbackQueueId": "0",
            "prioritizationRule": {"kind": "expression", "expression": "If(IsBlank(job.'0'), 1, Value(job.'0'))"},
            "workerSelectorAttachments": [{"kind": "passThrough", "key": "0", "labelOperator": "equal"}]}),
        ("/routing/workers/0", {"capacity": 10, "queues": ["0"], "availableForOffers": True,
                                "channels": [{"channelId": "0", "capacityCostPerJob": 1}]}),
        ("/routing/jobs/0", {"channelId": "0", "queueId": "0", "labels": {"0": 1}}),
    ]:
        data = json.dumps(body).encode()
        target = f"{path}?api-version=2023-11-01"
        headers = sign_request(method="PATCH", path_and_query=target, host=HOST, body=data, access_key=access_key)
        with after_commit_work():
            response = client.generic("PATCH", target, data=data, content_type="application/merge-patch+json",
                                      headers=headers, REQUEST_URI=target, HTTP_HOST=HOST)
        assert response.status_code in (200, 201), (path, response.content)


def _fuzz(operation, mode: GenerationMode, access_key: str, client: Client) -> int:
    count = 0

    @given(operation.as_strategy(generation_mode=mode))
    @settings(max_examples=EXAMPLES, derandomize=True, database=None, deadline=None,
              suppress_health_check=list(HealthCheck), phases=[Phase.generate])
    def run(case) -> None:
        nonlocal count
        count += 1
        check(case, send(client, access_key, case))

    run()
    return count


@pytest.mark.timeout(1200)
def test_generated_requests_never_get_a_server_error(router_clock, access_key):
    schema = schemathesis.openapi.from_dict(openapi.document())
    client = Client(raise_request_exception=True)
    _seed(access_key, client)
    counts: dict[str, int] = {}
    for result in schema.get_all_operations():
        operation = result.ok()
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
            try:
                counts[f"{mode.value} {operation.label}"] = _fuzz(operation, mode, access_key, client)
            except (Unsatisfiable, schemathesis.errors.SchemathesisError):
                # No negative variant exists (an operation without inputs to break).
                if mode is GenerationMode.POSITIVE:
                    raise
    total = sum(counts.values())
    print(f"\nschemathesis: {total} generated cases over {len(counts)} operation/mode pairs, 0 server errors")
    if EXAMPLES >= 150:
        assert total >= REQUIRED_CASES, counts
