"""The README's "Your first hour", run as written in a fresh checkout: the first `sh walkthrough`
block (`scripts/start`) in the background, the other blocks one after another in one bash (as a
newcomer pastes them into a second terminal), then the browser steps in headless Chromium: the
agent signs in to the desk, the customer joins the queue on the self-service page, the desk
rings; the supervisor sees on the job's admin page who could take it.

The only departure from the text: `PORT` is set to a free port in both terminals' environment
(the README's 8000 may be taken on a test machine), which the commands honour."""

from __future__ import annotations

import re
import shutil
import subprocess

import pytest

from tests.checkout import fresh_checkout, newcomer_env, stop_group
from tests.conftest import ROOT, _free_port, _wait_for_port
from tests.test_desk_browser import CHROMIUM_ARGS


def walkthrough_blocks() -> list[str]:
    readme = (ROOT / "README.md").read_text()
    return re.findall(r"^```sh walkthrough\n(.*?)^```$", readme, flags=re.M | re.S)


def login(page, username: str, password: str, next_path: str) -> None:
    page.goto(f"/accounts/login/?next={next_path}")
    page.fill("input[name=username]", username)
    page.fill("input[name=password]", password)
    page.click("button[type=submit]")
    page.wait_for_url(f"**{next_path}")


@pytest.fixture
def started(tmp_path):
    """The checkout after block 1 (`scripts/start`) is up: (checkout, endpoint, environment)."""
    blocks = walkthrough_blocks()
    assert blocks and blocks[0].strip() == "scripts/start", "the walkthrough starts with scripts/start"
    checkout = fresh_checkout(tmp_path / "jobrouter")
    port = _free_port()
    env = newcomer_env(PORT=str(port))
    log = open(tmp_path / "start.log", "w")
    start = subprocess.Popen(["bash", "-c", blocks[0]], cwd=checkout, env=env, stdout=log, stderr=subprocess.STDOUT,
                             start_new_session=True)
    try:
        _wait_for_port(port, start, timeout=90)
        yield checkout, f"http://127.0.0.1:{port}", env
    except RuntimeError as exc:
        raise AssertionError(f"{exc}\n{(tmp_path / 'start.log').read_text()}") from exc
    finally:
        stop_group(start)
        log.close()


def test_readme_walkthrough_from_a_fresh_checkout_to_a_ringing_desk(started):
    checkout, endpoint, env = started
    second_terminal = "set -euo pipefail\n" + "\n".join(walkthrough_blocks()[1:])
    result = subprocess.run(["bash", "-c", second_terminal], cwd=checkout, env=env, capture_output=True, text=True,
                            timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "queue support created" in result.stdout and "Starts available" in result.stdout
    assert "warning" not in result.stderr  # the agent serves an existing queue on the self-service channel

    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=shutil.which("chromium") or shutil.which("chromium-browser"),
                                    args=CHROMIUM_ARGS)
        agent, customer, supervisor = (browser.new_context(base_url=endpoint).new_page() for _ in range(3))
        for page in (agent, customer, supervisor):
            page.set_default_timeout(15_000)

        login(agent, "ana", "agent-pw", "/desk/")
        agent.wait_for_selector(".connection.live")
        agent.wait_for_selector("#mode-auto.on")
        agent.wait_for_selector("tr[data-queue=support]")

        login(customer, "carol", "customer-pw", "/queue/")
        customer.select_option("select[name=queue]", "support")
        customer.click("button[type=submit]")
        customer.wait_for_url("**/wait/**")

        card = agent.wait_for_selector(".offer.ringing")
        assert "chat · support" in card.inner_text()

        supervisor.goto("/admin/login/?next=/admin/routing/job/")
        supervisor.fill("#id_username", "sam")
        supervisor.fill("#id_password", "supervisor-pw")
        supervisor.click("input[type=submit]")
        supervisor.click("#result_list tbody tr th a")
        eligible = supervisor.inner_text(".field-eligible_workers")
        assert "1 worker(s) can serve it" in eligible
        browser.close()
