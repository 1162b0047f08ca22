"""The supervisor's admin: saves go through the domain functions, invalid policies are refused
with the API's message, and lists show what a supervisor filters on."""

import json

import pytest

from routing.models import ClassificationPolicy, DistributionPolicy, Job, JobStatus, Queue, Worker
from tests import factories
from tests.personas import logged_in

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def browser(supervisor):
    """The supervisor persona (staff with the router's permissions) signed in to the admin.
    `client` is the SDK client in this suite; the admin is driven with Django's test client."""
    return logged_in(supervisor)


def test_supervisor_creates_distribution_policy_and_queue(browser):
    response = browser.post(
        "/admin/routing/distributionpolicy/add/",
        {"id": "dp1", "name": "Default", "offer_expires_after_seconds": "30",
         "mode": json.dumps({"kind": "roundRobin", "maxConcurrentOffers": 2})},
    )
    assert response.status_code == 302, response.content.decode()[:2000]
    policy = DistributionPolicy.objects.get(pk="dp1")
    assert policy.mode == {"kind": "roundRobin", "minConcurrentOffers": 1, "maxConcurrentOffers": 2, "bypassSelectors": False}

    response = browser.post(
        "/admin/routing/queue/add/",
        {"id": "sales", "name": "Sales", "priority": "5", "distribution_policy": "dp1", "labels": json.dumps({"region": "eu"})},
    )
    assert response.status_code == 302, response.content.decode()[:2000]
    queue = Queue.objects.get(pk="sales")
    assert queue.labels == {"region": "eu", "Id": "sales"}
    assert queue.priority == 5


def test_invalid_expression_is_refused_with_the_api_message(browser):
    response = browser.post(
        "/admin/routing/classificationpolicy/add/",
        {"id": "cp1", "name": "Broken", "queue_selector_attachments": "[]", "worker_selector_attachments": "[]",
         "prioritization_rule": json.dumps({"kind": "expression", "expression": "If(job.vip = , 10, 1)"})},
    )
    assert response.status_code == 200
    body = response.content.decode()
    assert "prioritizationRule.expression" in body and "line 1, column" in body
    assert not ClassificationPolicy.objects.filter(pk="cp1").exists()


def test_worker_saved_in_admin_is_registered_and_offered_work(browser):
    factories.queue_with_policy("q1")
    factories.queued_job("j1")
    response = browser.post(
        "/admin/routing/worker/add/",
        {"id": "agent-7", "capacity": "1", "available_for_offers": "on", "labels": "{}", "tags": "{}",
         "queues": json.dumps(["q1"]), "queue_priorities": json.dumps({"q1": 3}),
         "channels": json.dumps([{"channelId": "voice", "capacityCostPerJob": 1}])},
    )
    assert response.status_code == 302, response.content.decode()[:3000]
    worker = Worker.objects.get(pk="agent-7")
    assert worker.queue_links.get().priority == 3
    assert worker.offers.filter(job_id="j1", status="open").exists()


def test_job_list_filters_by_status_and_queue_and_cancel_action_uses_domain(browser):
    factories.queue_with_policy("q1")
    factories.queued_job("j1")
    response = browser.get("/admin/routing/job/", {"status__exact": "queued", "queue__id__exact": "q1"})
    assert response.status_code == 200 and "j1" in response.content.decode()
    response = browser.post("/admin/routing/job/", {"action": "cancel_jobs", "_selected_action": ["j1"]})
    assert response.status_code == 302
    job = Job.objects.get(pk="j1")
    assert job.status == JobStatus.CANCELLED
    assert job.disposition_code == "Cancelled"


def test_policies_read_as_sentences_in_the_admin(browser, admin_client):
    factories.queue_with_policy("q1")
    admin_client.upsert_classification_policy("cp1", {
        "queueSelectorAttachments": [{"kind": "conditional", "condition": {"kind": "expression", "expression": "job.vip = true"},
                                      "queueSelectors": [{"key": "Id", "labelOperator": "equal", "value": "q1"}]}],
        "prioritizationRule": {"kind": "static", "value": 10},
        "workerSelectorAttachments": [{"kind": "passThrough", "key": "language", "labelOperator": "equal",
                                       "expiresAfterSeconds": 30}],
    })
    admin_client.upsert_exception_policy("ep1", {"exceptionRules": [{
        "id": "slow", "trigger": {"kind": "waitTime", "thresholdSeconds": 60},
        "actions": [{"kind": "manualReclassify", "queueId": "q1", "priority": 9}, {"kind": "cancel", "dispositionCode": "TooLong"}],
    }]})
    page = browser.get("/admin/routing/classificationpolicy/cp1/change/").content.decode()
    assert "if expression: job.vip = true → Id equal &quot;q1&quot;" in page
    assert "static: 10" in page
    assert "pass through: language equal job.language (expires after 30 s)" in page
    listing = browser.get("/admin/routing/exceptionpolicy/").content.decode()
    assert "when waited 60 s → move to queue q1, priority 9, then cancel (TooLong)" in listing


def test_invalid_exception_policy_is_refused_with_the_api_message(browser):
    response = browser.post("/admin/routing/exceptionpolicy/add/", {
        "id": "ep-bad", "name": "bad",
        "exception_rules": json.dumps([{"id": "r", "trigger": {"kind": "queueLength"}, "actions": []}]),
    })
    assert response.status_code == 200
    assert "exceptionRules[0].trigger.threshold is required." in response.content.decode()


def test_delete_in_admin_goes_through_the_domain_and_reports_a_refusal(browser):
    factories.queue_with_policy("q1")
    factories.queue_with_policy("q2")
    factories.queued_job("j1", queue="q1")

    protected = browser.post("/admin/routing/distributionpolicy/q1-policy/delete/", {"post": "yes"})
    assert "Cannot delete distribution policy" in protected.content.decode()
    assert DistributionPolicy.objects.filter(pk="q1-policy").exists()

    refused = browser.post("/admin/routing/queue/q1/delete/", {"post": "yes"}, follow=True)
    page = refused.content.decode()
    assert "Could not delete q1: There is an active job in this queue." in page
    assert "deleted successfully" not in page
    assert Queue.objects.filter(pk="q1").exists()

    deleted = browser.post("/admin/routing/queue/q2/delete/", {"post": "yes"})
    assert deleted.status_code == 302
    assert not Queue.objects.filter(pk="q2").exists()


def _eligibility_shown(browser, job_id: str) -> str:
    page = browser.get(f"/admin/routing/job/{job_id}/change/").content.decode()
    start = page.index("field-eligible_workers")
    return page[start:page.index("</div>", page.index("readonly", start))]


def test_queued_job_page_says_why_no_worker_is_eligible(browser):
    factories.queue_with_policy("q1")
    factories.queued_job("chat-1", channel="chat")
    assert "no worker serves queue q1" in _eligibility_shown(browser, "chat-1")

    # The README's old example: an agent on voice can never take the self-service page's chat.
    factories.worker("ana", channel="voice")
    assert "1 worker(s) serve queue q1, but none on channel chat" in _eligibility_shown(browser, "chat-1")

    factories.worker("ben", channel="chat", available=False)
    shown = _eligibility_shown(browser, "chat-1")
    assert "no-eligible-worker" in shown and "none available for offers now" in shown

    factories.queued_job("chat-fr", channel="chat",
                         requestedWorkerSelectors=[{"key": "lang", "labelOperator": "equal", "value": "fr"}])
    assert "none matches the job&#x27;s worker selectors" in _eligibility_shown(browser, "chat-fr")


def test_job_page_counts_available_eligible_workers(browser):
    factories.queue_with_policy("q1")
    factories.worker("ana", channel="chat", capacity=2)
    factories.queued_job("chat-2", channel="chat")
    shown = _eligibility_shown(browser, "chat-2")
    assert "1 worker(s) can serve it, 1 available for offers now" in shown and "no-eligible-worker" not in shown
