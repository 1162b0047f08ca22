"""2022-07-18-preview wire details the 1.0.0b1 client cannot be made to send or show: the bytes
as the spec records them (shared/spec/acs-jobrouter-preview-diff.md), refusals, paging across
versions, the translator as an inverse of itself, and preview map merges racing each other."""

from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor
from urllib.parse import parse_qs, urlsplit

import pytest
import requests

from routing.api.auth import sign_request
from routing.api.versions import preview as p
from tests.inprocess import signed_request

PREVIEW = "api-version=2022-07-18-preview"
GA = "api-version=2023-11-01"


@pytest.fixture
def seeded(router_clock, access_key):
    def call(method, path, body=None, version=PREVIEW):
        sep = "&" if "?" in path else "?"
        return signed_request(method, f"{path}{sep}{version}", access_key, body)

    assert call("PATCH", "/routing/distributionPolicies/dp-1",
                {"offerExpiresAfterSeconds": 86400.0, "mode": {"kind": "longest-idle"}}).status_code == 201
    assert call("PATCH", "/routing/queues/q-1", {"distributionPolicyId": "dp-1"}).status_code == 201
    return call


def test_a_ga_discriminator_under_the_preview_is_refused_and_nothing_is_stored(seeded):
    response = seeded("PATCH", "/routing/distributionPolicies/dp-2",
                      {"offerExpiresAfterSeconds": 10, "mode": {"kind": "longestIdle"}})
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["target"] == "mode.kind" and "longest-idle" in error["message"]
    assert seeded("GET", "/routing/distributionPolicies/dp-2").status_code == 404


def test_ga_label_operators_are_refused_under_the_preview(seeded):
    response = seeded("PATCH", "/routing/jobs/j-1", {
        "channelId": "voice", "queueId": "q-1",
        "requestedWorkerSelectors": [{"key": "Skill", "labelOperator": "greaterThanOrEqual", "value": 1}]})
    assert response.status_code == 400
    assert response.json()["error"]["target"] == "requestedWorkerSelectors[0].labelOperator"


def test_matching_mode_wrapper_with_null_siblings_as_the_client_sends_it(seeded):
    body = {"channelId": "voice", "queueId": "q-1", "matchingMode": {
        "modeType": "scheduleAndSuspendMode", "queueAndMatchMode": None,
        "scheduleAndSuspendMode": {"scheduleAt": "2030-01-02T03:04:05.000Z"}, "suspendMode": None}}
    created = seeded("PATCH", "/routing/jobs/j-1", body)
    assert created.status_code == 201
    assert created.json()["matchingMode"] == {
        "modeType": "scheduleAndSuspendMode", "scheduleAndSuspendMode": {"scheduleAt": "2030-01-02T03:04:05+00:00"}}
    assert "etag" not in created.json()
    ga = seeded("GET", "/routing/jobs/j-1", version=GA).json()
    assert ga["matchingMode"] == {"kind": "scheduleAndSuspend", "scheduleAt": "2030-01-02T03:04:05+00:00"}
    assert ga["status"] == "scheduled" and ga["scheduledAt"] == "2030-01-02T03:04:05+00:00" and ga["etag"]


def test_notes_keys_must_be_date_times(seeded):
    response = seeded("PATCH", "/routing/jobs/j-1", {"channelId": "voice", "queueId": "q-1", "notes": {"soon": "x"}})
    assert response.status_code == 400 and response.json()["error"]["target"] == "notes key"


def test_queue_assignment_values_must_be_objects(seeded):
    response = seeded("PATCH", "/routing/workers/w-1", {"totalCapacity": 1, "queueAssignments": {"q-1": 1}})
    assert response.status_code == 400 and response.json()["error"]["target"] == "queueAssignments.q-1"


def test_complete_and_close_on_the_job_need_the_assignment_id(seeded):
    seeded("PATCH", "/routing/jobs/j-1", {"channelId": "voice", "queueId": "q-1"})
    for verb in ("complete", "close"):
        response = seeded("POST", f"/routing/jobs/j-1:{verb}", {"note": "x"})
        assert response.status_code == 400 and response.json()["error"]["target"] == "assignmentId", verb
        response = seeded("POST", f"/routing/jobs/j-1:{verb}", {"assignmentId": "nope"})
        assert response.status_code == 404, verb


def test_next_link_carries_the_filters_and_not_the_version(seeded):
    for i in range(3):
        seeded("PATCH", f"/routing/jobs/j-{i}", {"channelId": "voice", "queueId": "q-1"})
    seeded("PATCH", "/routing/jobs/other", {"channelId": "chat", "queueId": "q-1"})
    first = seeded("GET", "/routing/jobs?status=all&channelId=voice&maxpagesize=2").json()
    assert [item["job"]["id"] for item in first["value"]] == ["j-0", "j-1"]
    assert all(item["etag"] for item in first["value"])
    link = urlsplit(first["nextLink"])
    assert "api-version" not in parse_qs(link.query)
    # The client puts its own api-version on the link; either version pages on with the filters.
    ga_page = seeded("GET", f"{link.path}?{link.query}", version=GA).json()
    assert [item["id"] for item in ga_page["value"]] == ["j-2"] and "nextLink" not in ga_page
    preview_page = seeded("GET", f"{link.path}?{link.query}").json()
    assert [item["job"]["id"] for item in preview_page["value"]] == ["j-2"]


def test_unknown_and_missing_api_versions(router_clock, access_key):
    response = signed_request("GET", "/routing/jobs?api-version=2021-10-20", access_key)
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "UnsupportedApiVersion"
    assert "2023-11-01, 2022-07-18-preview" in response.json()["error"]["message"]
    response = signed_request("GET", "/routing/jobs", access_key)
    assert response.status_code == 400 and response.json()["error"]["code"] == "MissingApiVersionParameter"


# --- the translator on plain data -----------------------------------------------------------------

GA_CLASSIFICATION = {
    "id": "cp", "etag": "e", "fallbackQueueId": "q",
    "queueSelectorAttachments": [
        {"kind": "static", "queueSelector": {"key": "a", "labelOperator": "lessThanOrEqual", "value": 1}},
        {"kind": "conditional", "condition": {"kind": "static", "value": True},
         "queueSelectors": [{"key": "b", "labelOperator": "greaterThanOrEqual", "value": 2}]},
        {"kind": "ruleEngine", "rule": {"kind": "function", "functionUri": "https://f"}},
        {"kind": "passThrough", "key": "c", "labelOperator": "equal"},
        {"kind": "weightedAllocation", "allocations": [
            {"weight": 1.0, "queueSelectors": [{"key": "d", "labelOperator": "notEqual", "value": 3}]}]},
    ],
    "workerSelectorAttachments": [
        {"kind": "ruleEngine", "rule": {"kind": "webhook", "webhookUri": "https://w"}},
        {"kind": "weightedAllocation", "allocations": [
            {"weight": 1.0, "workerSelectors": [{"key": "e", "labelOperator": "lessThan", "value": 4}]}]},
        {"kind": "conditional", "condition": {"kind": "directMap"},
         "workerSelectors": [{"key": "f", "labelOperator": "greaterThan", "value": 5}]},
    ],
    "prioritizationRule": {"kind": "expression", "language": "powerFx", "expression": "1"},
}


def test_preview_rendering_uses_the_preview_names_everywhere():
    rendered = p.VERSION.render("classificationPolicy", GA_CLASSIFICATION)
    text = json.dumps(rendered)
    assert "etag" not in rendered and "queueSelectorAttachments" not in rendered
    assert [a["kind"] for a in rendered["queueSelectors"]] == [
        "static", "conditional", "rule-engine", "pass-through", "weighted-allocation-queue-selector"]
    assert [a["kind"] for a in rendered["workerSelectors"]] == [
        "rule-engine", "weighted-allocation-worker-selector", "conditional"]
    assert rendered["queueSelectors"][1]["condition"]["kind"] == "static-rule"
    assert rendered["queueSelectors"][2]["rule"]["kind"] == "azure-function-rule"
    assert rendered["workerSelectors"][0]["rule"]["kind"] == "webhook-rule"
    assert rendered["workerSelectors"][2]["condition"]["kind"] == "direct-map-rule"
    assert rendered["prioritizationRule"]["kind"] == "expression-rule"
    assert "OrEqual" not in text and "lessThanEqual" in text and "greaterThanEqual" in text


def test_preview_parsing_inverts_preview_rendering():
    for kind, resource in [
        ("classificationPolicy", GA_CLASSIFICATION),
        ("distributionPolicy", {"id": "d", "offerExpiresAfterSeconds": 5, "mode": {
            "kind": "bestWorker", "scoringRule": {"kind": "expression", "expression": "1"},
            "scoringRuleOptions": {"isBatchScoringEnabled": True, "batchSize": 2}}}),
        ("exceptionPolicy", {"id": "x", "exceptionRules": [
            {"id": "r", "trigger": {"kind": "waitTime", "thresholdSeconds": 5},
             "actions": [{"id": "a", "kind": "manualReclassify", "queueId": "q",
                          "workerSelectors": [{"key": "k", "labelOperator": "greaterThanOrEqual", "value": 1}]},
                         {"id": "b", "kind": "reclassify", "classificationPolicyId": "cp"}]}]}),
        ("job", {"id": "j", "notes": [{"message": "m", "addedAt": "2024-01-01T00:00:00+00:00"}],
                 "matchingMode": {"kind": "suspend"},
                 "requestedWorkerSelectors": [{"key": "k", "labelOperator": "lessThanOrEqual", "value": 1}]}),
        ("worker", {"id": "w", "capacity": 2, "queues": ["q-2", "q-1"],
                    "channels": [{"channelId": "voice", "capacityCostPerJob": 1, "maxNumberOfJobs": 2}]}),
    ]:
        written = {k: v for k, v in resource.items() if k not in ("id", "etag")}
        back = p.VERSION.to_ga(kind, p.VERSION.render(kind, resource), resource)
        assert {k: v for k, v in back.items() if k != "id"} == written, kind


def test_preview_map_patches_merge_per_key_into_the_stored_lists():
    stored = {"queues": ["q-1", "q-3"], "channels": [{"channelId": "voice", "capacityCostPerJob": 1}]}
    body = {"queueAssignments": {"q-2": {}, "q-1": None},
            "channelConfigurations": {"voice": {"maxNumberOfJobs": 3}, "chat": {"capacityCostPerJob": 2}}}
    assert p.VERSION.needs_current("worker", body)
    assert p.VERSION.to_ga("worker", body, stored) == {
        "queues": ["q-3", "q-2"],
        "channels": [{"capacityCostPerJob": 1, "maxNumberOfJobs": 3, "channelId": "voice"},
                     {"capacityCostPerJob": 2, "channelId": "chat"}],
    }
    assert p.VERSION.to_ga("worker", {"queueAssignments": None}, stored) == {"queues": []}
    assert not p.VERSION.needs_current("worker", {"totalCapacity": 1})


# --- preview merges racing ------------------------------------------------------------------------


def test_concurrent_preview_queue_assignments_all_survive(router, transactional_db, access_key):
    """Eight preview PATCHes each add one queue to the same worker at once. Each merges into the
    worker it read and writes only if that worker is unchanged (retrying otherwise), so none of
    the eight additions is lost to another's stale merge."""
    host = urlsplit(router.endpoint).netloc

    def send(method, path, body):
        data = json.dumps(body).encode()
        target = f"{path}?{PREVIEW}"
        headers = sign_request(method=method, path_and_query=target, host=host, body=data, access_key=access_key)
        headers["Content-Type"] = "application/merge-patch+json"
        return requests.request(method, router.endpoint + target, data=data, headers=headers, timeout=30)

    assert send("PATCH", "/routing/distributionPolicies/dp-1",
                {"offerExpiresAfterSeconds": 60, "mode": {"kind": "round-robin"}}).status_code == 201
    queues = [f"q-{i}" for i in range(8)]
    for queue_id in queues:
        assert send("PATCH", f"/routing/queues/{queue_id}", {"distributionPolicyId": "dp-1"}).status_code == 201
    assert send("PATCH", "/routing/workers/w-1", {"totalCapacity": 1}).status_code == 201
    with ThreadPoolExecutor(max_workers=8) as pool:
        statuses = list(pool.map(
            lambda q: send("PATCH", "/routing/workers/w-1", {"queueAssignments": {q: {}}}).status_code, queues))
    assert statuses == [200] * 8
    worker = send("PATCH", "/routing/workers/w-1", {}).json()
    assert sorted(worker["queueAssignments"]) == queues


def test_no_code_below_the_api_layer_knows_the_api_version():
    """Version at the edge only: the domain, engine, patches and tasks never see which
    api-version called (the views pick a translator; only they and the translators read it).
    Management commands are entry points like the views: they may render the wire shape."""
    from tests.conftest import ROOT

    for path in sorted((ROOT / "routing").rglob("*.py")):
        if path.relative_to(ROOT / "routing").parts[0] in ("api", "management"):
            continue
        text = path.read_text()
        for needle in ("api-version", "api_version", "from routing.api", "import routing.api"):
            assert needle not in text, (path, needle)


def test_preview_maps_are_bounded_as_the_lists_they_become():
    from routing import limits
    from routing.errors import InvalidRequest

    many = {f"q{i}": {} for i in range(limits.MAX_WORKER_QUEUES)}
    assert len(p.VERSION.to_ga("worker", {"queueAssignments": many}, None)["queues"]) == limits.MAX_WORKER_QUEUES
    with pytest.raises(InvalidRequest) as refused:
        p.VERSION.to_ga("worker", {"queueAssignments": {**many, "one-more": {}}}, None)
    assert refused.value.target == "queueAssignments"
    rules = {f"r{i}": {"trigger": {"kind": "queue-length", "threshold": 1}} for i in range(limits.MAX_LIST_ITEMS + 1)}
    with pytest.raises(InvalidRequest):
        p.VERSION.to_ga("exceptionPolicy", {"exceptionRules": rules}, None)
