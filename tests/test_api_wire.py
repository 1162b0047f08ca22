"""Raw HTTP checks of the wire contract (ACS Job Router 2023-11-01 §1.2, §2, §2.3, §2.4, §3.6)
with `requests` and the project's signer, so that exact status codes, headers and bodies are
visible (the SDK hides most of them)."""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone
from email.utils import parsedate_to_datetime
from urllib.parse import quote

import pytest
import requests
from azure.communication.jobrouter.models import RouterJobStatus

from routing.api.auth import sign_request
from tests.conftest import eventually

API = "api-version=2023-11-01"


class Raw:
    """Signed raw requests against the live server."""

    def __init__(self, endpoint: str, key: str) -> None:
        self.endpoint = endpoint
        self.host = endpoint.split("//", 1)[1]
        self.key = key

    def signed_headers(self, method: str, path: str, body: bytes, **kw) -> dict[str, str]:
        return sign_request(method=method, path_and_query=path, host=self.host, body=body, access_key=self.key, **kw)

    def send(self, method: str, path: str, body: bytes = b"", headers: dict | None = None) -> requests.Response:
        return requests.request(method, self.endpoint + path, data=body, headers=headers or {}, timeout=10)

    def __call__(self, method: str, path: str, body=None, *, content_type: str | None = None,
                 extra: dict | None = None) -> requests.Response:
        data = body if isinstance(body, bytes) else (b"" if body is None else json.dumps(body).encode())
        headers = self.signed_headers(method, path, data)
        if content_type is None and body is not None and not isinstance(body, bytes):
            content_type = "application/merge-patch+json" if method == "PATCH" else "application/json"
        if content_type:
            headers["Content-Type"] = content_type
        headers.update(extra or {})
        return self.send(method, path, data, headers)


@pytest.fixture
def raw(router, transactional_db, access_key) -> Raw:
    return Raw(router.endpoint, access_key)


def assert_error_body(resp: requests.Response, status: int) -> dict:
    assert resp.status_code == status, resp.text
    assert resp.headers["Content-Type"].startswith("application/json")
    body = resp.json()
    assert isinstance(body["error"]["code"], str) and body["error"]["code"]
    assert isinstance(body["error"]["message"], str) and body["error"]["message"]
    # §1.4: a 4xx with Retry-After would make the SDK retry it.
    assert "Retry-After" not in resp.headers
    return body


def no_nulls(value) -> bool:
    if isinstance(value, dict):
        return all(v is not None and no_nulls(v) for v in value.values())
    if isinstance(value, list):
        return all(no_nulls(v) for v in value)
    return True


def make_queue(raw: Raw, queue_id="q-1", policy_id="dp-1", expires=600):
    assert raw("PATCH", f"/routing/distributionPolicies/{quote(policy_id, safe='')}?{API}",
               {"offerExpiresAfterSeconds": expires, "mode": {"kind": "longestIdle"}}).status_code in (200, 201)
    resp = raw("PATCH", f"/routing/queues/{quote(queue_id, safe='')}?{API}", {"distributionPolicyId": policy_id})
    assert resp.status_code in (200, 201), resp.text


def make_worker(raw: Raw, worker_id="w-1", queue_id="q-1"):
    resp = raw("PATCH", f"/routing/workers/{worker_id}?{API}", {
        "capacity": 1, "queues": [queue_id], "channels": [{"channelId": "voice", "capacityCostPerJob": 1}],
        "availableForOffers": True,
    })
    assert resp.status_code == 201, resp.text


def make_job(raw: Raw, encoded_id="j-1", queue_id="q-1"):
    resp = raw("PATCH", f"/routing/jobs/{encoded_id}?{API}", {"channelId": "voice", "queueId": queue_id})
    assert resp.status_code == 201, resp.text
    return resp.json()


def wait_offer(raw: Raw, worker_id="w-1") -> dict:
    return eventually(lambda: raw("GET", f"/routing/workers/{worker_id}?{API}").json()["offers"])[0]


# --- authentication ------------------------------------------------------------------------------


def test_missing_signature_is_401_with_error_body(raw):
    resp = raw.send("GET", f"/routing/jobs?{API}")
    assert_error_body(resp, 401)


def test_wrong_signature_is_401(raw):
    path = f"/routing/jobs?{API}"
    headers = raw.signed_headers("GET", path, b"")
    headers["Authorization"] = (
        "HMAC-SHA256 SignedHeaders=x-ms-date;host;x-ms-content-sha256&Signature=" + "A" * 43 + "="
    )
    assert_error_body(raw.send("GET", path, headers=headers), 401)


def test_signature_with_another_key_is_401(raw):
    path = f"/routing/jobs?{API}"
    headers = sign_request(method="GET", path_and_query=path, host=raw.host, body=b"",
                           access_key="b3RoZXIta2V5LW90aGVyLWtleQ==")
    assert_error_body(raw.send("GET", path, headers=headers), 401)


def test_signature_over_another_path_is_401(raw):
    headers = raw.signed_headers("GET", f"/routing/workers?{API}", b"")
    assert_error_body(raw.send("GET", f"/routing/jobs?{API}", headers=headers), 401)


@pytest.mark.parametrize("offset", [timedelta(hours=-1), timedelta(hours=1)], ids=["past", "future"])
def test_stale_x_ms_date_is_401(raw, offset):
    path = f"/routing/jobs?{API}"
    headers = raw.signed_headers("GET", path, b"", date=datetime.now(timezone.utc) + offset)
    assert_error_body(raw.send("GET", path, headers=headers), 401)


def test_date_within_skew_is_accepted(raw):
    path = f"/routing/jobs?{API}"
    headers = raw.signed_headers("GET", path, b"", date=datetime.now(timezone.utc) - timedelta(minutes=2))
    assert raw.send("GET", path, headers=headers).status_code == 200


def test_body_hash_mismatch_is_401(raw):
    path = f"/routing/distributionPolicies/dp-x?{API}"
    signed_body = json.dumps({"offerExpiresAfterSeconds": 1, "mode": {"kind": "longestIdle"}}).encode()
    sent_body = json.dumps({"offerExpiresAfterSeconds": 9, "mode": {"kind": "longestIdle"}}).encode()
    headers = raw.signed_headers("PATCH", path, signed_body)
    headers["Content-Type"] = "application/merge-patch+json"
    assert_error_body(raw.send("PATCH", path, sent_body, headers), 401)
    # Nothing was written.
    assert raw("GET", path).status_code == 404


@pytest.mark.parametrize("drop", ["x-ms-date", "x-ms-content-sha256"])
def test_missing_signed_header_is_401(raw, drop):
    path = f"/routing/jobs?{API}"
    headers = raw.signed_headers("GET", path, b"")
    del headers[drop]
    assert_error_body(raw.send("GET", path, headers=headers), 401)


def test_malformed_authorization_header_is_401(raw):
    path = f"/routing/jobs?{API}"
    headers = raw.signed_headers("GET", path, b"")
    headers["Authorization"] = "Bearer abc"
    assert_error_body(raw.send("GET", path, headers=headers), 401)


def test_unsigned_non_api_path_is_not_guarded_by_hmac_but_api_paths_are(raw):
    # Every /routing path requires a signature, even unknown ones.
    resp = raw.send("GET", f"/routing/nothing-here?{API}")
    assert resp.status_code == 401


# --- request validation -------------------------------------------------------------------------


def test_malformed_json_is_400_with_error_body(raw):
    body = assert_error_body(
        raw("PATCH", f"/routing/distributionPolicies/dp-bad?{API}", b'{"mode": {"kind": ', content_type="application/merge-patch+json"),
        400,
    )
    assert body["error"]["code"]


def test_json_body_that_is_not_an_object_is_400(raw):
    assert_error_body(raw("PATCH", f"/routing/distributionPolicies/dp-arr?{API}", [1, 2]), 400)


def test_unsupported_api_version_is_400(raw):
    assert_error_body(raw("GET", "/routing/jobs?api-version=2021-04-07-preview1"), 400)


def test_missing_api_version_is_400(raw):
    assert_error_body(raw("GET", "/routing/jobs"), 400)


def test_unknown_id_is_404_with_error_body_and_header(raw):
    for path in ("/routing/jobs/none", "/routing/workers/none", "/routing/queues/none",
                 "/routing/distributionPolicies/none", "/routing/classificationPolicies/none",
                 "/routing/exceptionPolicies/none", "/routing/queues/none/statistics", "/routing/jobs/none/position"):
        resp = raw("GET", f"{path}?{API}")
        body = assert_error_body(resp, 404)
        assert body["error"]["code"] == "NotFound"
        assert resp.headers.get("x-ms-error-code") == "NotFound"
        assert resp.reason == "Not Found"


def test_unknown_colon_verb_is_404(raw):
    make_queue(raw)
    make_job(raw, "j-1")
    assert_error_body(raw("POST", f"/routing/jobs/j-1:explode?{API}", {}), 404)
    assert_error_body(raw("POST", f"/routing/workers/w-1/offers/o-1:snooze?{API}", {}), 404)
    assert raw("GET", f"/routing/jobs/j-1?{API}").json()["status"] != "cancelled"


def test_unsupported_method_is_405_with_error_body(raw):
    assert_error_body(raw("PUT", f"/routing/jobs/j-1?{API}", {"channelId": "voice"}), 405)


def test_unknown_path_is_404_error_body(raw):
    assert_error_body(raw("GET", f"/routing/widgets?{API}"), 404)


# --- response shapes ------------------------------------------------------------------------------


def test_upsert_and_get_send_etag_and_rfc1123_last_modified(raw):
    resp = raw("PATCH", f"/routing/distributionPolicies/dp-h?{API}",
               {"offerExpiresAfterSeconds": 600, "mode": {"kind": "longestIdle"}})
    assert resp.status_code == 201
    assert resp.headers["Content-Type"].startswith("application/json")
    assert resp.headers["ETag"].strip('"') == resp.json()["etag"]
    modified = parsedate_to_datetime(resp.headers["Last-Modified"])
    assert modified.tzinfo is not None
    assert abs(modified - datetime.now(timezone.utc)) < timedelta(minutes=1)
    got = raw("GET", f"/routing/distributionPolicies/dp-h?{API}")
    assert got.headers["ETag"] == resp.headers["ETag"]
    assert got.headers["Last-Modified"] == resp.headers["Last-Modified"]
    assert got.json() == {
        "id": "dp-h", "etag": got.json()["etag"], "offerExpiresAfterSeconds": 600,
        "mode": {"kind": "longestIdle", "minConcurrentOffers": 1, "maxConcurrentOffers": 1, "bypassSelectors": False},
    }


def test_new_job_body_has_every_collection_and_no_nulls(raw):
    make_queue(raw)
    job = make_job(raw, "j-shape")
    assert job["status"] == "created"
    for key, empty in (("requestedWorkerSelectors", []), ("attachedWorkerSelectors", []), ("labels", {}),
                       ("assignments", {}), ("tags", {}), ("notes", [])):
        assert job[key] == empty
    assert job["matchingMode"] == {"kind": "queueAndMatch"}
    assert "classificationPolicyId" not in job and "dispositionCode" not in job
    assert no_nulls(job)


def test_worker_body_shape(raw):
    make_queue(raw)
    make_worker(raw)
    worker = raw("GET", f"/routing/workers/w-1?{API}").json()
    assert worker["channels"] == [{"channelId": "voice", "capacityCostPerJob": 1}]
    assert worker["labels"] == {"Id": "w-1"}
    assert (worker["state"], worker["offers"], worker["assignedJobs"], worker["tags"]) == ("active", [], [], {})
    assert worker["loadRatio"] == 0
    assert no_nulls(worker)


def test_read_only_fields_sent_by_a_raw_caller_are_ignored(raw):
    make_queue(raw)
    resp = raw("PATCH", f"/routing/jobs/j-ro?{API}", {
        "channelId": "voice", "queueId": "q-1", "status": "closed", "assignments": {"x": {"workerId": "w"}},
        "enqueuedAt": "2020-01-01T00:00:00Z", "etag": "forged",
    })
    assert resp.status_code == 201
    job = resp.json()
    assert job["status"] == "created" and job["assignments"] == {} and job["etag"] != "forged"


def test_queue_id_label_cannot_be_removed_or_overridden(raw):
    make_queue(raw, "q-id")
    resp = raw("PATCH", f"/routing/queues/q-id?{API}", {"labels": {"Id": None, "x": 1}})
    assert resp.status_code == 200
    assert resp.json()["labels"] == {"x": 1, "Id": "q-id"}
    resp = raw("PATCH", f"/routing/queues/q-id?{API}", {"labels": {"Id": "other"}})
    assert resp.json()["labels"]["Id"] == "q-id"


def test_kebab_case_kinds_are_accepted_and_returned_camel_case(raw):
    resp = raw("PATCH", f"/routing/distributionPolicies/dp-kebab?{API}",
               {"offerExpiresAfterSeconds": 5, "mode": {"kind": "round-robin"}})
    assert resp.status_code == 201
    assert resp.json()["mode"]["kind"] == "roundRobin"


def test_kind_may_come_last_in_the_object(raw):
    resp = raw("PATCH", f"/routing/classificationPolicies/cp-last?{API}",
               {"prioritizationRule": {"expression": "1 + 1", "kind": "expression"}})
    assert resp.status_code == 201
    assert resp.json()["prioritizationRule"] == {"kind": "expression", "language": "powerFx", "expression": "1 + 1"}


def test_delete_is_exactly_204_with_an_empty_body(raw):
    raw("PATCH", f"/routing/exceptionPolicies/ep-del?{API}", {"exceptionRules": []})
    resp = raw("DELETE", f"/routing/exceptionPolicies/ep-del?{API}")
    assert resp.status_code == 204
    assert resp.content == b""
    assert raw("GET", f"/routing/exceptionPolicies/ep-del?{API}").status_code == 404


def test_post_actions_answer_200_with_a_json_object(raw):
    make_queue(raw)
    make_worker(raw)
    make_job(raw, "j-1")
    offer = wait_offer(raw)
    declined = raw("POST", f"/routing/workers/w-1/offers/{offer['offerId']}:decline?{API}", {})
    assert (declined.status_code, declined.json()) == (200, {})
    assert declined.headers["Content-Type"].startswith("application/json")

    reclassified = raw("POST", f"/routing/jobs/j-1:reclassify?{API}", {})
    assert (reclassified.status_code, reclassified.json()) == (200, {})

    make_job(raw, "j-2")
    offer = wait_offer(raw)
    accepted = raw("POST", f"/routing/workers/w-1/offers/{offer['offerId']}:accept?{API}")
    assert accepted.status_code == 200
    aid = accepted.json()["assignmentId"]
    assert accepted.json() == {"assignmentId": aid, "jobId": "j-2", "workerId": "w-1"}
    completed = raw("POST", f"/routing/jobs/j-2/assignments/{aid}:complete?{API}", {"note": "n"})
    assert (completed.status_code, completed.json()) == (200, {})
    closed = raw("POST", f"/routing/jobs/j-2/assignments/{aid}:close?{API}", {})
    assert (closed.status_code, closed.json()) == (200, {})
    cancelled = raw("POST", f"/routing/jobs/j-1:cancel?{API}", {})
    assert (cancelled.status_code, cancelled.json()) == (200, {})


def test_accept_with_no_body_and_no_content_type_works(raw):
    make_queue(raw)
    make_worker(raw)
    make_job(raw, "j-1")
    offer = wait_offer(raw)
    path = f"/routing/workers/w-1/offers/{offer['offerId']}:accept?{API}"
    headers = raw.signed_headers("POST", path, b"")
    headers["Content-Length"] = "0"
    resp = raw.send("POST", path, b"", headers)
    assert resp.status_code == 200, resp.text
    assert resp.json()["jobId"] == "j-1"
    assert raw("GET", f"/routing/jobs/j-1?{API}").json()["status"] == "assigned"


def test_cancel_with_an_empty_json_body_works(raw):
    """The SDK sends `Content-Type: application/json` with Content-Length 0 when no options are given."""
    make_queue(raw)
    make_job(raw, "j-1")
    resp = raw("POST", f"/routing/jobs/j-1:cancel?{API}", b"", content_type="application/json")
    assert (resp.status_code, resp.json()) == (200, {})
    job = raw("GET", f"/routing/jobs/j-1?{API}").json()
    assert (job["status"], job["dispositionCode"]) == ("cancelled", "Cancelled")


def test_unassign_returns_the_unassign_result(raw):
    make_queue(raw)
    make_worker(raw)
    make_job(raw, "j-1")
    offer = wait_offer(raw)
    aid = raw("POST", f"/routing/workers/w-1/offers/{offer['offerId']}:accept?{API}").json()["assignmentId"]
    resp = raw("POST", f"/routing/jobs/j-1/assignments/{aid}:unassign?{API}", b"", content_type="application/json")
    assert resp.status_code == 200
    assert resp.json() == {"jobId": "j-1", "unassignmentCount": 1}


# --- ids with reserved characters ----------------------------------------------------------------


def test_job_id_with_a_colon_works_escaped_and_unescaped(raw):
    make_queue(raw)
    job = make_job(raw, "j%3A1")
    assert job["id"] == "j:1"
    # The async client (yarl) sends the colon unescaped.
    assert raw("GET", f"/routing/jobs/j:1?{API}").json()["id"] == "j:1"
    resp = raw("POST", f"/routing/jobs/j%3A1:cancel?{API}", {})
    assert (resp.status_code, resp.json()) == (200, {})
    assert raw("GET", f"/routing/jobs/j%3A1?{API}").json()["status"] == "cancelled"
    assert raw("DELETE", f"/routing/jobs/j:1?{API}").status_code == 204
    assert raw("GET", f"/routing/jobs/j:1?{API}").status_code == 404


def test_unescaped_colon_id_with_verb(raw):
    make_queue(raw)
    make_job(raw, "j:2")
    resp = raw("POST", f"/routing/jobs/j:2:cancel?{API}", {})
    assert resp.status_code == 200
    assert raw("GET", f"/routing/jobs/j%3A2?{API}").json()["status"] == "cancelled"


def test_ids_with_spaces_and_slashes_work(raw):
    make_queue(raw, "queue one")
    resp = raw("GET", f"/routing/queues/queue%20one?{API}")
    assert resp.status_code == 200 and resp.json()["labels"]["Id"] == "queue one"
    job = make_job(raw, "a%20b%3Ac", queue_id="queue one")
    assert job["id"] == "a b:c" and job["queueId"] == "queue one"
    assert raw("POST", f"/routing/jobs/a%20b%3Ac:cancel?{API}", {}).status_code == 200


def test_sdk_round_trips_ids_with_colons_and_spaces(live_client, live_admin_client):
    client, admin_client = live_client, live_admin_client
    from azure.communication.jobrouter.models import DistributionPolicy, LongestIdleMode, RouterJob, RouterQueue

    admin_client.upsert_distribution_policy("dp:1", DistributionPolicy(offer_expires_after_seconds=60, mode=LongestIdleMode()))
    admin_client.upsert_queue("q 1", RouterQueue(distribution_policy_id="dp:1"))
    job = client.upsert_job("j:1 x", RouterJob(channel_id="voice", queue_id="q 1"))
    assert job.id == "j:1 x"
    client.cancel_job("j:1 x")
    assert client.get_job("j:1 x").status == RouterJobStatus.CANCELLED
    client.delete_job("j:1 x")


# --- paging --------------------------------------------------------------------------------------


def test_next_link_is_relative_and_carries_the_filters(raw):
    make_queue(raw, "q-a")
    make_queue(raw, "q-b", policy_id="dp-2")
    for i in range(3):
        make_job(raw, f"a-{i}", queue_id="q-a")
    make_job(raw, "b-0", queue_id="q-b")
    first = raw("GET", f"/routing/jobs?{API}&maxpagesize=2&status=all&queueId=q-a").json()
    assert len(first["value"]) == 2
    link = first["nextLink"]
    assert link.startswith("/routing/jobs?") and "api-version" not in link
    # The SDK follows it with only api-version added, not resending filters or page size.
    second = raw("GET", f"{link}&{API}").json()
    ids = [j["id"] for j in first["value"] + second["value"]]
    assert sorted(ids) == ["a-0", "a-1", "a-2"]
    assert "nextLink" not in second or not second["nextLink"]


def test_last_page_has_no_next_link(raw):
    page = raw("GET", f"/routing/workers?{API}&maxpagesize=5&state=all").json()
    assert page == {"value": []}


def test_invalid_maxpagesize_is_400(raw):
    assert_error_body(raw("GET", f"/routing/jobs?{API}&maxpagesize=0"), 400)
    assert_error_body(raw("GET", f"/routing/jobs?{API}&maxpagesize=ten"), 400)


def test_invalid_continuation_token_is_400(raw):
    assert_error_body(raw("GET", f"/routing/jobs?continuationToken=%21%21not-base64&{API}"), 400)
