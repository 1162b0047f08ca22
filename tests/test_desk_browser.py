"""End to end in headless Chromium (Debian's package, driven by Playwright): a supervisor sets
up a queue in the admin, an agent works the desk, a customer waits and leaves. Each step is a
seed 002 point (Q-numbers in the test names). Screenshots go to a temporary directory, or to
docs/screenshots/ when JOBROUTER_UPDATE_SCREENSHOTS=1 (so a test run never changes tracked files)."""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import time
from pathlib import Path

import pytest
import requests
from azure.communication.jobrouter.models import RouterJob
from django.conf import settings
from django.core.management import call_command
from django.contrib.auth.models import User

from routing.api.auth import sign_request
from routing.models import DistributionPolicy, Job, JobStatus, Queue, RouterEvent
from tests import factories
from tests.conftest import eventually

pytestmark = pytest.mark.django_db(transaction=True)

SCREENSHOTS = (
    Path(__file__).resolve().parent.parent / "docs" / "screenshots"
    if os.environ.get("JOBROUTER_UPDATE_SCREENSHOTS") == "1"
    else Path(tempfile.gettempdir()) / "jobrouter-screenshots"
)
CHROMIUM_ARGS = [
    "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
    "--disable-component-update", "--disable-sync", "--autoplay-policy=no-user-gesture-required",
]


@pytest.fixture(scope="module")
def browser():
    from playwright.sync_api import sync_playwright

    # Playwright's sync API keeps an asyncio loop in this thread; the test's own ORM calls are
    # plain sequential calls, which Django would otherwise refuse next to a running loop.
    os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = "true"

    executable = shutil.which("chromium") or shutil.which("chromium-browser")
    if executable is None:
        pytest.fail("chromium is not installed (scripts/test installs Debian's chromium)")
    with sync_playwright() as p:
        instance = p.chromium.launch(executable_path=executable, args=CHROMIUM_ARGS)
        yield instance
        instance.close()
    os.environ.pop("DJANGO_ALLOW_ASYNC_UNSAFE", None)


@pytest.fixture
def page_for(browser, router):
    contexts = []

    def make(width: int = 1200, height: int = 820):
        context = browser.new_context(base_url=router.endpoint, viewport={"width": width, "height": height})
        contexts.append(context)
        page = context.new_page()
        page.set_default_timeout(10_000)
        return page

    yield make
    for context in contexts:
        context.close()


def login(page, username: str, password: str, next_path: str) -> None:
    page.goto(f"/accounts/login/?next={next_path}")
    page.fill("input[name=username]", username)
    page.fill("input[name=password]", password)
    page.click("button[type=submit]")
    page.wait_for_url(f"**{next_path}")


def admin_login(page, next_path: str) -> None:
    """Sign the supervisor "sam" in through the admin login form."""
    User.objects.create_superuser("sam", "sam@example.com", "supervisor-pw")
    page.goto(f"/admin/login/?next={next_path}")
    page.fill("#id_username", "sam")
    page.fill("#id_password", "supervisor-pw")
    page.click("input[type=submit]")


def shot(page, name: str) -> None:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREENSHOTS / f"{name}.png"), full_page=True)


def test_q7_supervisor_creates_a_queue_in_the_admin(page_for):
    page = page_for()
    admin_login(page, "/admin/")
    page.goto("/admin/routing/distributionpolicy/add/")
    page.fill("#id_id", "ring-60")
    page.fill("#id_name", "Ring for a minute")
    page.fill("#id_offer_expires_after_seconds", "60")
    page.fill("#id_mode", json.dumps({"kind": "longestIdle"}))
    page.click("input[name=_save]")
    page.wait_for_url("**/admin/routing/distributionpolicy/")
    page.goto("/admin/routing/queue/add/")
    page.fill("#id_id", "support")
    page.fill("#id_name", "Support")
    page.fill("#id_priority", "2")
    page.select_option("#id_distribution_policy", "ring-60")
    page.click("input[name=_save]")
    page.wait_for_url("**/admin/routing/queue/")
    assert "Support" in page.content()
    queue = Queue.objects.get(pk="support")
    assert queue.distribution_policy_id == "ring-60" and queue.priority == 2
    assert DistributionPolicy.objects.get(pk="ring-60").mode["kind"] == "longestIdle"


def _setup_agent(username="ana", queue="support", available=False):
    factories.queue_with_policy(queue, expires=120)
    call_command("createagent", username, "--password", "agent-pw", "--queue", f"{queue}:5", "--channel", "voice:1",
                 "--capacity", "1", *(["--available"] if available else []))


def test_q13_offer_rings_the_desk_and_agent_accepts_completes_closes(page_for, live_client):
    _setup_agent()
    page = page_for()
    login(page, "ana", "agent-pw", "/desk/")
    page.wait_for_selector(".connection.live")
    page.click("#mode-auto")
    page.wait_for_selector("#mode-auto.on")
    live_client.upsert_job("call-1", RouterJob(channel_id="voice", queue_id="support", channel_reference="+44 20 7946 0001",
                                          labels={"language": "en", "topic": "billing"}))
    card = page.wait_for_selector(".offer.ringing")
    assert "+44 20 7946 0001" in card.inner_text()
    page.wait_for_function("document.querySelector('.countdown').textContent.startsWith('rings for')")
    shot(page, "desk-ringing")
    page.click(".offer button.primary")
    page.wait_for_selector(".assignment")
    assert eventually(lambda: Job.objects.get(pk="call-1").status == JobStatus.ASSIGNED)
    page.fill(".assignment input[aria-label=note]", "refund issued")
    page.click(".assignment button.primary")
    page.wait_for_selector(".assignment.wrap-up")
    shot(page, "desk-wrap-up")
    page.click(".assignment.wrap-up button.primary")
    page.wait_for_selector("#assignments .empty")
    job = Job.objects.get(pk="call-1")
    assert job.status == JobStatus.CLOSED and job.disposition_code == "Resolved"
    assert [n["message"] for n in job.notes] == ["refund issued"]


def test_q14_dnd_then_request_next_customer(page_for, live_client):
    _setup_agent(available=False)
    page = page_for()
    login(page, "ana", "agent-pw", "/desk/")
    page.wait_for_selector("#mode-dnd.on")
    page.click("#request-next")
    page.wait_for_selector("#notice:has-text('No customer waiting.')")
    live_client.upsert_job("chat-7", RouterJob(channel_id="voice", queue_id="support", channel_reference="chat #7"))
    page.wait_for_selector("tr[data-queue=support] .waiting-count:has-text('1')")
    assert page.query_selector(".offer") is None  # DND: nothing rings
    page.keyboard.press("n")
    page.wait_for_selector(".assignment:has-text('chat #7')")
    assert Job.objects.get(pk="chat-7").status == JobStatus.ASSIGNED
    shot(page, "desk-dnd-request-next")


def test_missed_offer_tells_the_agent_why_the_desk_went_to_dnd(page_for, live_client):
    factories.queue_with_policy("support", expires=1)
    call_command("createagent", "ana", "--password", "agent-pw", "--queue", "support", "--channel", "voice",
                 "--available")
    page = page_for()
    login(page, "ana", "agent-pw", "/desk/")
    page.wait_for_selector("#mode-auto.on")
    assert page.is_hidden("#dnd-reason")
    live_client.upsert_job("call-9", RouterJob(channel_id="voice", queue_id="support"))
    page.wait_for_selector(".offer.ringing")
    # Nobody answers: the real timer loop expires the offer after a second.
    banner = page.wait_for_selector("#dnd-reason:visible")
    assert "You missed an offer, so you were set to Do not disturb" in banner.inner_text()
    assert page.is_visible("#mode-dnd.on") and page.query_selector(".offer") is None
    live_client.cancel_job("call-9")  # so that it does not ring (and expire) again
    page.click("#mode-auto")
    page.wait_for_selector("#dnd-reason", state="hidden")


def _waiting_room_path(endpoint: str, job_id: str) -> str:
    path = f"/routing/jobs/{job_id}:waitingRoomLink?api-version=2023-11-01"
    host = endpoint.removeprefix("http://")
    headers = sign_request(method="POST", path_and_query=path, host=host, body=b"", access_key=settings.JOBROUTER_ACCESS_KEY)
    response = requests.post(endpoint + path, headers=headers, timeout=10)
    assert response.status_code == 200, response.text
    return response.json()["path"]


def test_q12_q11_customer_sees_position_fall_then_leaves(page_for, live_client, router):
    _setup_agent(available=False)
    for job_id in ("first", "second", "me"):
        live_client.upsert_job(job_id, RouterJob(channel_id="voice", queue_id="support"))
    eventually(lambda: Job.objects.filter(status=JobStatus.QUEUED).count() == 3)
    customer = page_for(520, 640)
    customer.goto(_waiting_room_path(router.endpoint, "me"))
    customer.wait_for_selector("#position:has-text('3')")
    shot(customer, "waiting-room")
    agent = page_for()
    login(agent, "ana", "agent-pw", "/desk/")
    agent.wait_for_selector(".connection.live")
    agent.click("#request-next")  # takes "first"
    customer.wait_for_selector("#position:has-text('2')")
    live_client.cancel_job("second")
    customer.wait_for_selector("#position:has-text('1')")
    customer.wait_for_selector("#headline:has-text('You are next')")
    customer.click("#leave")
    customer.wait_for_selector("#headline:has-text('You left the queue')")
    assert Job.objects.get(pk="me").status == JobStatus.CANCELLED


def test_q11_self_service_customer_joins_one_queue_at_a_time(page_for):
    factories.queue_with_policy("support", expires=60)
    User.objects.create_user("carla", password="customer-pw")
    page = page_for(520, 700)
    login(page, "carla", "customer-pw", "/queue/")
    page.select_option("select[name=queue]", "support")
    page.fill("textarea[name=extra]", "topic=billing\norder=A-1009")
    page.click("button[type=submit]")
    page.wait_for_selector("#position:has-text('1')")
    job = Job.objects.get(tags__customerUserId=str(User.objects.get(username="carla").pk))
    assert job.labels == {"topic": "billing", "order": "A-1009"} and job.queue_id == "support"
    page.goto("/queue/")  # already waiting: back to the same waiting room, not a second job
    page.wait_for_selector("#position:has-text('1')")
    assert Job.objects.filter(queue_id="support").count() == 1


def test_q9_supervisor_live_view_updates(page_for, live_client):
    _setup_agent(available=False)
    page = page_for()
    admin_login(page, "/admin/live/")
    page.wait_for_selector("tr[data-worker=ana]")
    live_client.upsert_job("call-9", RouterJob(channel_id="voice", queue_id="support"))
    page.wait_for_selector("tr[data-queue=support] .waiting-count:has-text('1')")
    shot(page, "supervisor-live")


def test_other_agents_dnd_and_stop_serving_reach_a_desk_within_a_second(page_for, live_client):
    _setup_agent("ana", available=True)
    call_command("createagent", "ben", "--password", "agent-pw", "--queue", "support", "--channel", "voice:1",
                 "--available")
    ana, ben = page_for(), page_for()
    login(ana, "ana", "agent-pw", "/desk/")
    login(ben, "ben", "agent-pw", "/desk/")
    cell = "tr[data-queue=support] .agents-available"
    ana.wait_for_selector(f"{cell}:has-text('2 (2)')")
    ben.wait_for_selector("#mode-auto.on")

    started = time.monotonic()
    ben.click("#mode-dnd")
    ana.wait_for_selector(f"{cell}:has-text('2 (1)')", timeout=1000)
    assert time.monotonic() - started < 1.0

    started = time.monotonic()
    ben.click("tr[data-queue=support] button.link")  # stop serving
    ana.wait_for_selector(f"{cell}:has-text('1 (1)')", timeout=1000)
    assert time.monotonic() - started < 1.0


def test_longest_wait_counts_up_on_the_desk_and_the_live_view_between_pushes(page_for, live_client):
    _setup_agent("ana", available=False)
    live_client.upsert_job("waiting-1", RouterJob(channel_id="voice", queue_id="support"))
    desk = page_for()
    login(desk, "ana", "agent-pw", "/desk/")
    supervisor = page_for()
    admin_login(supervisor, "/admin/live/")
    for page in (desk, supervisor):
        # Rows are re-rendered on every frame: look the cell up each time, never hold it.
        page.wait_for_function(
            "sel => { const el = document.querySelector(sel); return el && el.dataset.oldest; }",
            arg="tr[data-queue=support] .longest-wait",
        )
    events_before = RouterEvent.objects.count()
    first = [page.inner_text("tr[data-queue=support] .longest-wait") for page in (desk, supervisor)]
    for page, shown in zip((desk, supervisor), first, strict=True):
        page.wait_for_function(
            "([sel, before]) => document.querySelector(sel).textContent !== before",
            arg=["tr[data-queue=support] .longest-wait", shown], timeout=3000,
        )
    later = [page.inner_text("tr[data-queue=support] .longest-wait") for page in (desk, supervisor)]
    assert RouterEvent.objects.count() == events_before  # nothing changed on the server
    seconds = [int(t.split(":")[0]) * 60 + int(t.split(":")[1]) for t in later]
    assert all(s >= 1 for s in seconds) and later != first
