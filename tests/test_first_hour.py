"""The first hour of a new user, one test per defect they met: settings from `.env` (the
environment winning), every variable documented, `scripts/start` refusing a busy port before it
claims readiness, the createagent / createcustomer commands saying what they made."""

from __future__ import annotations

import io
import re
import socket
import subprocess
import sys

import pytest
from django.contrib.auth.models import User
from django.core.management import CommandError, call_command

from routing.models import Worker
from tests import factories
from tests.checkout import fresh_checkout, newcomer_env
from tests.conftest import ROOT

# Variables scripts/ look at that are not settings: the scripts' own state, and the one the
# venv's activate script sets (scripts/web activates .venv unless a venv is active).
SCRIPT_INTERNALS = {"APT_UPDATED", "VIRTUAL_ENV"}
# Read before .env can be (they choose the interpreter, or only steer the test run).
ENVIRONMENT_ONLY = {"PYTHON", "JOBROUTER_SKIP_POSTGRES", "JOBROUTER_TEST_PGPORT", "JOBROUTER_UPDATE_SCREENSHOTS", "JOBROUTER_FUZZ_EXAMPLES"}


def variables_read() -> set[str]:
    """Every environment variable the code reads, from the source: the settings' typed helpers
    and `os.environ` reads in jobrouter/, routing/, agents/ and tests/, and `${NAME:-default}`
    in scripts/."""
    names: set[str] = set()
    python = [*(ROOT / "jobrouter").rglob("*.py"), *(ROOT / "routing").rglob("*.py"),
              *(ROOT / "agents").rglob("*.py"), *(ROOT / "tests").glob("*.py")]
    for path in python:
        text = path.read_text()
        names |= set(re.findall(r'env_(?:str|bool|float|list)\(\s*"([A-Z][A-Z0-9_]*)"', text))
        names |= set(re.findall(r'os\.environ\.get\(\s*"([A-Z][A-Z0-9_]*)"', text))
        names |= set(re.findall(r'_generated_secret\(\s*"([A-Z][A-Z0-9_]*)"', text))
    for path in (ROOT / "scripts").iterdir():
        if path.suffix != ".py":
            names |= set(re.findall(r"\$\{([A-Z][A-Z0-9_]*):-", path.read_text()))
    return names - SCRIPT_INTERNALS


def test_every_variable_the_code_reads_is_documented_in_the_readme_and_env_example():
    names = variables_read()
    assert {"DATABASE_URL", "JOBROUTER_QUEUE_WORKERS", "JOBROUTER_VAR_DIR", "PORT", "PYTHON"} <= names
    readme = (ROOT / "README.md").read_text()
    configuration = readme[readme.index("## Configuration"):]
    example = (ROOT / ".env.example").read_text()
    assert sorted(n for n in names if f"`{n}`" not in configuration) == []
    assert sorted(n for n in names - ENVIRONMENT_ONLY if not re.search(rf"^#? ?{n}=", example, re.M)) == []


def _settings_in(checkout, name: str, **env: str) -> str:
    code = f"import jobrouter.settings as s; print(s.{name})"
    return subprocess.run([str(checkout / ".venv" / "bin" / "python"), "-c", code], cwd=checkout,
                          env=newcomer_env(**env), check=True, capture_output=True, text=True).stdout.strip()


def test_dot_env_is_read_and_the_environment_wins(tmp_path):
    checkout = fresh_checkout(tmp_path / "jobrouter")
    (checkout / ".env").write_text("JOBROUTER_SELF_SERVICE_CHANNEL=webchat\nJOBROUTER_TIMER_POLL_SECONDS=0.5\nPORT=8123\n")
    assert _settings_in(checkout, "JOBROUTER_SELF_SERVICE_CHANNEL") == "webchat"
    assert _settings_in(checkout, "JOBROUTER_TIMER_POLL_SECONDS") == "0.5"
    assert _settings_in(checkout, "JOBROUTER_SELF_SERVICE_CHANNEL", JOBROUTER_SELF_SERVICE_CHANNEL="chat") == "chat"
    # The shell scripts read PORT before Python runs: they evaluate what the file adds.
    exports = subprocess.run([str(checkout / ".venv" / "bin" / "python"), "-m", "jobrouter.envfile"], cwd=checkout,
                             env=newcomer_env(JOBROUTER_TIMER_POLL_SECONDS="1"), check=True, capture_output=True,
                             text=True).stdout
    assert "export PORT=8123" in exports and "JOBROUTER_TIMER_POLL_SECONDS" not in exports


def test_start_with_a_busy_port_fails_before_claiming_readiness(tmp_path):
    checkout = fresh_checkout(tmp_path / "jobrouter")
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        result = subprocess.run([str(checkout / "scripts" / "start")], cwd=checkout, env=newcomer_env(PORT=str(port)),
                                capture_output=True, text=True, timeout=120)
    assert result.returncode != 0
    assert f"cannot listen on 127.0.0.1:{port}" in result.stderr
    assert "ready" not in result.stdout and "access key" not in result.stdout
    # Nothing was migrated or generated either: the check comes first.
    assert not (checkout / "var" / "jobrouter.sqlite3").exists()


def test_portcheck_accepts_a_free_port():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    result = subprocess.run([sys.executable, "-m", "jobrouter.portcheck", "127.0.0.1", str(port)], cwd=ROOT)
    assert result.returncode == 0


@pytest.mark.django_db
def test_createagent_says_it_starts_in_dnd_and_warns_of_missing_queue_and_channel():
    out, err = io.StringIO(), io.StringIO()
    call_command("createagent", "ana", "--password", "pw", "--queue", "sales", "--channel", "voice",
                 stdout=out, stderr=err)
    assert "Starts in Do not disturb" in out.getvalue()
    assert "queue 'sales' does not exist yet" in err.getvalue()
    assert "takes no 'chat' jobs" in err.getvalue()

    factories.queue_with_policy("support")
    out, err = io.StringIO(), io.StringIO()
    call_command("createagent", "ben", "--password", "pw", "--queue", "support", "--channel", "chat",
                 "--available", stdout=out, stderr=err)
    assert "Starts available" in out.getvalue() and err.getvalue() == ""
    assert Worker.objects.get(pk="ben").available_for_offers


@pytest.mark.django_db
def test_createcustomer_makes_a_login_without_worker_or_staff_and_refuses_an_agent():
    out = io.StringIO()
    call_command("createcustomer", "carol", "--password", "customer-pw", stdout=out)
    carol = User.objects.get(username="carol")
    assert carol.check_password("customer-pw") and not carol.is_staff
    assert not Worker.objects.filter(user=carol).exists()
    assert "/queue/" in out.getvalue()

    call_command("createagent", "ana", "--password", "pw", stdout=io.StringIO(), stderr=io.StringIO())
    with pytest.raises(CommandError, match="agent or staff"):
        call_command("createcustomer", "ana", "--password", "x")
