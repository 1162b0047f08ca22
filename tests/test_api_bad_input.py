"""Bad input is a 4xx with the ACS error body, always (hardening issue, item 4).

Each test first sends the input that used to reach the engine and answer 500 (or worse), then
checks the refusal: the status, `error.code`, and that nothing was stored. The bounds are
`routing.limits` (README "Limits")."""

from __future__ import annotations

import json
import logging
import re
import time

import pytest
from django.test import Client

from routing import limits
from routing.api.auth import sign_request
from tests.inprocess import ENDPOINT, after_commit_work, signed_request
from tests.sdk import add_worker

API = "api-version=2023-11-01"
HOST = ENDPOINT.removeprefix("http://")


def call(access_key, method, path, body=None):
    return signed_request(method, f"{path}?{API}", access_key, body)


def raw_call(access_key, method, path, data: bytes, content_type: str, client: Client | None = None):
    """A signed request with exactly these body bytes and content type."""
    target = f"{path}?{API}"
    headers = sign_request(method=method, path_and_query=target, host=HOST, body=data, access_key=access_key)
    with after_commit_work():
        return (client or Client()).generic(
            method, target, data=data, content_type=content_type, headers=headers, REQUEST_URI=target, HTTP_HOST=HOST
        )


def assert_acs_error(response, status: int, code: str | None = None) -> dict:
    assert response.status_code == status, (response.status_code, response.content[:300])
    assert response["Content-Type"].startswith("application/json")
    error = response.json()["error"]
    assert isinstance(error["code"], str) and isinstance(error["message"], str)
    if code is not None:
        assert error["code"] == code
    assert response["x-ms-error-code"] == error["code"]
    return error


def make_queue(access_key, queue_id="q-1", policy=None, exception_policy_id=None):
    body = policy or {"offerExpiresAfterSeconds": 60, "mode": {"kind": "longestIdle"}}
    assert call(access_key, "PATCH", "/routing/distributionPolicies/dp-1", body).status_code in (200, 201)
    queue = {"distributionPolicyId": "dp-1"}
    if exception_policy_id:
        queue["exceptionPolicyId"] = exception_policy_id
    assert call(access_key, "PATCH", f"/routing/queues/{queue_id}", queue).status_code in (200, 201)


# --- numbers the engine turned into dates ----------------------------------------------------


def test_offer_expiry_of_1e308_seconds_is_refused(router_clock, access_key):
    response = call(access_key, "PATCH", "/routing/distributionPolicies/dp-1",
                    {"offerExpiresAfterSeconds": 1e308, "mode": {"kind": "longestIdle"}})
    error = assert_acs_error(response, 400, "InvalidRequest")
    assert error["target"] == "offerExpiresAfterSeconds"
    assert call(access_key, "GET", "/routing/distributionPolicies/dp-1").status_code == 404


def test_offer_expiry_at_the_bound_still_offers_jobs(router_clock, access_key, client):
    make_queue(access_key, policy={"offerExpiresAfterSeconds": limits.MAX_DURATION_SECONDS,
                                   "mode": {"kind": "longestIdle"}})
    add_worker(client, "w-1", ["q-1"])
    response = call(access_key, "PATCH", "/routing/jobs/j-1", {"channelId": "voice", "queueId": "q-1"})
    assert response.status_code == 201
    assert client.get_worker("w-1").offers[0].job_id == "j-1"
    assert call(access_key, "GET", "/routing/jobs/j-1").status_code == 200


@pytest.mark.parametrize("seconds", [1e308, -1, limits.MAX_DURATION_SECONDS + 1])
def test_wait_time_threshold_out_of_bounds_is_refused(router_clock, access_key, seconds):
    rule = {"id": "r1", "trigger": {"kind": "waitTime", "thresholdSeconds": seconds},
            "actions": [{"kind": "cancel"}]}
    response = call(access_key, "PATCH", "/routing/exceptionPolicies/ep-1", {"exceptionRules": [rule]})
    error = assert_acs_error(response, 400, "InvalidRequest")
    assert error["target"] == "exceptionRules[0].trigger.thresholdSeconds"


def test_queue_length_threshold_beyond_the_bound_is_refused(router_clock, access_key):
    rule = {"id": "r1", "trigger": {"kind": "queueLength", "threshold": 2**31 - 1}, "actions": [{"kind": "cancel"}]}
    response = call(access_key, "PATCH", "/routing/exceptionPolicies/ep-1", {"exceptionRules": [rule]})
    assert_acs_error(response, 400, "InvalidRequest")


def test_selector_expiry_of_1e308_seconds_is_refused(router_clock, access_key):
    make_queue(access_key)
    selector = {"key": "skill", "labelOperator": "equal", "value": 1, "expiresAfterSeconds": 1e308}
    response = call(access_key, "PATCH", "/routing/jobs/j-1",
                    {"channelId": "voice", "queueId": "q-1", "requestedWorkerSelectors": [selector]})
    error = assert_acs_error(response, 400, "InvalidRequest")
    assert error["target"] == "requestedWorkerSelectors[0].expiresAfterSeconds"
    assert call(access_key, "GET", "/routing/jobs/j-1").status_code == 404


@pytest.mark.parametrize(("path", "body", "target"), [
    ("/routing/jobs/j-1", {"channelId": "voice", "queueId": "q-1", "priority": 101}, "priority"),
    ("/routing/jobs/j-1", {"channelId": "voice", "queueId": "q-1", "priority": -101}, "priority"),
    ("/routing/workers/w-1", {"capacity": limits.MAX_CAPACITY + 1}, "capacity"),
    ("/routing/workers/w-1", {"capacity": 1, "channels": [{"channelId": "c", "capacityCostPerJob": 2**40}]},
     "channels[0].capacityCostPerJob"),
    ("/routing/workers/w-1", {"labels": {"big": 1e300}}, "labels.big"),
    ("/routing/queues/q-2", {"distributionPolicyId": "dp-1", "priority": 10**6}, "priority"),
    ("/routing/distributionPolicies/dp-2",
     {"offerExpiresAfterSeconds": 60, "mode": {"kind": "longestIdle", "maxConcurrentOffers": 10**6}},
     "mode.maxConcurrentOffers"),
    ("/routing/jobs/j-1", {"channelId": "x" * (limits.MAX_ID_LENGTH + 1), "queueId": "q-1"}, "channelId"),
    ("/routing/workers/w-1", {"labels": {"k": "v" * (limits.MAX_TEXT_LENGTH + 1)}}, "labels.k"),
    ("/routing/workers/w-1", {"labels": {f"k{i}": i for i in range(limits.MAX_LABELS + 1)}}, "labels"),
])
def test_numbers_and_strings_beyond_their_bounds_are_refused(router_clock, access_key, path, body, target):
    make_queue(access_key)
    error = assert_acs_error(call(access_key, "PATCH", path, body), 400, "InvalidRequest")
    assert error["target"] == target


def test_an_id_longer_than_the_column_is_refused(router_clock, access_key):
    response = call(access_key, "PATCH", "/routing/workers/" + "w" * 300, {"capacity": 1})
    assert_acs_error(response, 400, "InvalidRequest")


# --- JSON itself ------------------------------------------------------------------------------


def test_json_nested_1000_levels_is_a_400(router_clock, access_key):
    data = ('{"labels": ' + "[" * 1000 + "]" * 1000 + "}").encode()
    response = raw_call(access_key, "PATCH", "/routing/workers/w-1", data, "application/merge-patch+json")
    error = assert_acs_error(response, 400, "BadRequest")
    assert "deeper than 64" in error["message"]


def test_json_nested_just_past_the_depth_limit_is_a_400(router_clock, access_key):
    depth = limits.MAX_JSON_DEPTH
    data = ('{"labels": ' + "[" * depth + "]" * depth + "}").encode()
    response = raw_call(access_key, "PATCH", "/routing/workers/w-1", data, "application/merge-patch+json")
    assert_acs_error(response, 400, "BadRequest")


@pytest.mark.parametrize("literal", ["1e999", "-1e999", "NaN", "Infinity", "1" * 4301])
def test_non_finite_numbers_are_a_400(router_clock, access_key, literal):
    data = ('{"kind": "static", "value": ' + literal + "}").encode()
    body = b'{"queueSelectorAttachments": [], "prioritizationRule": ' + data + b"}"
    response = raw_call(access_key, "PATCH", "/routing/classificationPolicies/cp-1", body, "application/merge-patch+json")
    assert_acs_error(response, 400, "BadRequest")
    assert call(access_key, "GET", "/routing/classificationPolicies/cp-1").status_code == 404


def test_a_static_priority_outside_the_range_fails_classification_not_the_server(router_clock, access_key, client):
    make_queue(access_key)
    policy = {"fallbackQueueId": "q-1", "prioritizationRule": {"kind": "static", "value": 1e15}}
    assert call(access_key, "PATCH", "/routing/classificationPolicies/cp-1", policy).status_code == 201
    response = call(access_key, "PATCH", "/routing/jobs/j-1", {"channelId": "voice", "classificationPolicyId": "cp-1"})
    assert response.status_code == 201
    job = call(access_key, "GET", "/routing/jobs/j-1").json()
    assert job["status"] == "classificationFailed"
    assert "outside -100..100" in job["classificationError"]


def test_body_over_the_limit_is_a_413_with_the_acs_body(router_clock, access_key):
    data = json.dumps({"labels": {"k": "x" * (3 * 1024 * 1024)}}).encode()  # 3 MB: over 2.5 MB too
    response = raw_call(access_key, "PATCH", "/routing/workers/w-1", data, "application/merge-patch+json")
    assert_acs_error(response, 413, "RequestEntityTooLarge")


def test_the_body_limit_is_exact(router_clock, access_key):
    def body_of(size: int) -> bytes:
        head, tail = b'{"name": "', b'"}'
        return head + b"x" * (size - len(head) - len(tail)) + tail

    at_limit = raw_call(access_key, "PATCH", "/routing/queues/q-1", body_of(limits.MAX_BODY_BYTES), "application/json")
    assert at_limit.status_code == 400  # read and parsed: the name is too long, not the body
    assert at_limit.json()["error"]["target"] == "name"
    over = raw_call(access_key, "PATCH", "/routing/queues/q-1", body_of(limits.MAX_BODY_BYTES + 1), "application/json")
    assert_acs_error(over, 413, "RequestEntityTooLarge")


@pytest.mark.parametrize("content_type", [
    "multipart/form-data; boundary=xyz", "application/x-www-form-urlencoded", "text/plain", "",
])
def test_bodies_that_are_not_json_are_a_415(router_clock, access_key, content_type):
    data = b'--xyz\r\nContent-Disposition: form-data; name="capacity"\r\n\r\n1\r\n--xyz--\r\n'
    response = raw_call(access_key, "PATCH", "/routing/workers/w-1", data, content_type)
    assert_acs_error(response, 415, "UnsupportedMediaType")
    assert call(access_key, "GET", "/routing/workers/w-1").status_code == 404


def test_json_with_a_charset_parameter_is_accepted(router_clock, access_key):
    response = raw_call(access_key, "PATCH", "/routing/workers/w-1", b'{"capacity": 1}',
                        "application/merge-patch+json; charset=utf-8")
    assert response.status_code == 201


# --- date-times -------------------------------------------------------------------------------


def test_a_note_dated_year_1_at_plus_14_is_refused(router_clock, access_key):
    make_queue(access_key)
    body = {"channelId": "voice", "queueId": "q-1", "notes": [{"message": "m", "addedAt": "0001-01-01T00:00:00+14:00"}]}
    error = assert_acs_error(call(access_key, "PATCH", "/routing/jobs/j-1", body), 400, "InvalidRequest")
    assert error["target"] == "notes[0].addedAt"


@pytest.mark.parametrize("moment", ["9999-12-31T23:59:59-14:00", "9000-01-01T00:00:00Z"])
def test_schedule_times_outside_the_supported_range_are_refused(router_clock, access_key, moment):
    make_queue(access_key)
    body = {"channelId": "voice", "queueId": "q-1", "matchingMode": {"kind": "scheduleAndSuspend", "scheduleAt": moment}}
    assert_acs_error(call(access_key, "PATCH", "/routing/jobs/j-1", body), 400, "InvalidRequest")


# --- expressions ------------------------------------------------------------------------------


def test_an_expression_with_a_4301_digit_literal_is_refused(router_clock, access_key):
    policy = {"prioritizationRule": {"kind": "expression", "expression": "1" * 4301 + " + 1"}}
    error = assert_acs_error(call(access_key, "PATCH", "/routing/classificationPolicies/cp-1", policy), 400)
    assert "Number too long" in error["message"]


def test_an_expression_concatenating_a_label_200_times_fails_fast_and_stores_little(router_clock, access_key):
    make_queue(access_key)
    expression = "Value(" + " & ".join(["job.big"] * 200) + ")"
    policy = {"fallbackQueueId": "q-1", "prioritizationRule": {"kind": "expression", "expression": expression}}
    assert call(access_key, "PATCH", "/routing/classificationPolicies/cp-1", policy).status_code == 201
    big = "9" * limits.MAX_TEXT_LENGTH  # the longest label value there is
    started = time.perf_counter()
    response = call(access_key, "PATCH", "/routing/jobs/j-1",
                    {"channelId": "voice", "classificationPolicyId": "cp-1", "labels": {"big": big}})
    elapsed = time.perf_counter() - started
    assert response.status_code == 201
    got = call(access_key, "GET", "/routing/jobs/j-1")
    job = got.json()
    assert job["status"] == "classificationFailed"
    assert "Text too long" in job["classificationError"]
    assert len(job["classificationError"]) <= limits.MAX_STORED_ERROR_LENGTH
    assert len(got.content) < 10_000
    # The upsert includes classification; the report measured 38 s before.
    assert elapsed < 1.0, elapsed


def test_a_long_rule_answer_is_stored_truncated(router_clock, access_key):
    make_queue(access_key)
    expression = " & ".join(["job.big"] * 30)  # 30,000 characters of text: a valid value, not a number
    policy = {"fallbackQueueId": "q-1", "prioritizationRule": {"kind": "expression", "expression": expression}}
    assert call(access_key, "PATCH", "/routing/classificationPolicies/cp-1", policy).status_code == 201
    call(access_key, "PATCH", "/routing/jobs/j-1",
         {"channelId": "voice", "classificationPolicyId": "cp-1", "labels": {"big": "x" * 1000}})
    job = call(access_key, "GET", "/routing/jobs/j-1").json()
    assert job["status"] == "classificationFailed"
    assert "not a number" in job["classificationError"]
    assert len(job["classificationError"]) <= limits.MAX_STORED_ERROR_LENGTH


# --- failures nobody expected -----------------------------------------------------------------


def test_an_unexpected_exception_in_a_view_is_a_500_with_the_acs_body_and_a_logged_error_id(
    router_clock, access_key, monkeypatch, caplog
):
    def broken(*args, **kwargs):
        raise RuntimeError("disk on fire")

    monkeypatch.setattr("routing.queries.job_get", broken)
    with caplog.at_level(logging.ERROR, logger="routing.api"):
        response = call(access_key, "GET", "/routing/jobs/j-1")
    error = assert_acs_error(response, 500, "InternalServerError")
    error_id = re.search(r"error id ([0-9a-f-]{36})", error["message"]).group(1)
    assert "disk on fire" not in error["message"]
    logged = [r for r in caplog.records if error_id in r.getMessage()]
    assert logged and logged[0].exc_info and "disk on fire" in str(logged[0].exc_info[1])


def test_a_database_error_is_a_503_with_retry_after(router_clock, access_key, monkeypatch):
    from django.db import OperationalError

    def locked(*args, **kwargs):
        raise OperationalError("database is locked")

    monkeypatch.setattr("routing.queries.job_get", locked)
    response = call(access_key, "GET", "/routing/jobs/j-1")
    assert_acs_error(response, 503, "ServiceUnavailable")
    assert response["Retry-After"] == "1"


def test_an_exception_in_middleware_is_a_500_with_the_acs_body(router_clock, access_key, monkeypatch, caplog):
    def broken(**kwargs):
        raise RuntimeError("middleware broke")

    monkeypatch.setattr("routing.api.auth.verify_signature", broken)
    client = Client(raise_request_exception=False)
    with caplog.at_level(logging.ERROR, logger="routing.api"):
        response = raw_call(access_key, "GET", "/routing/jobs/j-1", b"", "", client=client)
    error = assert_acs_error(response, 500, "InternalServerError")
    assert "error id" in error["message"]
    assert any("middleware broke" in str(r.exc_info[1]) for r in caplog.records if r.exc_info)


def test_pages_outside_the_api_keep_djangos_error_pages(router_clock, monkeypatch):
    def broken(request, *args, **kwargs):
        raise RuntimeError("page broke")

    monkeypatch.setattr("routing.api.auth.HmacAuthenticationMiddleware.check", broken)
    response = Client(raise_request_exception=False).get("/accounts/login/")
    assert response.status_code == 500
    assert not response["Content-Type"].startswith("application/json")
