"""The kill -9 soak (hardening issue): two web processes and two background workers under load,
with web and background processes killed with SIGKILL while jobs come in. Clients retry what
failed (the same PATCH, same id), as the SDK's users do. Afterwards every job that was created is
accounted for exactly once and none is stranded: each is queued and offered (the workers have
room for all of them), whether its follow-ups were run by the request's process, by a
background worker that claimed the owed row, or by the sweeper.

Runs on SQLite and, in the second CI pass, on PostgreSQL."""

from __future__ import annotations

import os
import signal
import subprocess
import threading
import time

import pytest
from azure.communication.jobrouter.models import RouterJob, StaticQueueSelectorAttachment, RouterQueueSelector
from azure.communication.jobrouter.models import ClassificationPolicy
from django.conf import settings

from routing.models import Job, JobStatus, Offer, OfferStatus
from tests import factories
from tests.conftest import ROOT, _free_port, _wait_for_port, eventually, make_clients, server_env, start_background_worker
from tests.test_service_processes import _descendants

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.postgres]

MIN_JOBS = 300
MIN_KILLS = 10  # at least 4 of each kind
MAX_JOBS = 3000
CLIENTS = 4
WORKERS = 4



@pytest.fixture
def soak_layout(django_db_setup, only_these_processes, tmp_path):
    # One task process per background worker: each restart boots fewer processes (two cores).
    env = {**server_env(), "JOBROUTER_WEB_WORKERS": "2", "PORT": str(_free_port()), "JOBROUTER_QUEUE_WORKERS": "1",
           "JOBROUTER_VAR_DIR": str(tmp_path)}
    log = open(tmp_path / "web.log", "wb")  # gunicorn's own log, printed should the test fail
    web = subprocess.Popen([str(ROOT / "scripts" / "web")], cwd=ROOT, env=env, start_new_session=True,
                           stdout=subprocess.DEVNULL, stderr=log)
    background = [start_background_worker(env) for _ in range(2)]
    state = {"web": web, "background": background, "env": env, "log": tmp_path / "web.log"}
    try:
        _wait_for_port(int(env["PORT"]), web)
        yield state
    finally:
        for proc in [web, *state["background"]]:
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            proc.wait()
        log.close()


def _create_with_retries(client, job_id: str, job: RouterJob) -> int:
    """Upsert until the router answers; returns how many attempts failed (connection reset by a
    killed process, or a 5xx). Gives up after 60 s."""
    failures = 0
    deadline = time.monotonic() + 60
    while True:
        try:
            client.upsert_job(job_id, job, connection_timeout=5, read_timeout=10)
            return failures
        except Exception:
            failures += 1
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)


def _killer(state: dict, stop: threading.Event, kills: list[str]) -> None:
    """Every second, SIGKILL one web process (gunicorn starts another) or one background worker
    (started again, as a service manager would). A web process is killed only once it has been
    up for 3 s: one that is still booting (seconds, under coverage) serves nobody yet, and
    killing only those would measure an outage, not recovery."""
    turn = 0
    first_seen: dict[int, float] = {}
    while not stop.wait(1.0):
        if turn % 2 == 0:
            now = time.monotonic()
            children = sorted(_descendants(state["web"].pid))
            for pid in children:
                first_seen.setdefault(pid, now)
            serving = [pid for pid in children if now - first_seen[pid] >= 3.0]
            if serving:
                os.kill(serving[0], signal.SIGKILL)
                kills.append("web")
        else:
            victim = state["background"].pop(0)
            os.kill(victim.pid, signal.SIGKILL)
            victim.wait()
            state["background"].append(start_background_worker(state["env"]))
            kills.append("background")
        turn += 1


def test_kill_9_during_load_loses_and_strands_no_job(soak_layout):
    factories.queue_with_policy("q1", expires=600, max_offers=1)
    for i in range(WORKERS):
        factories.worker(f"w{i}", queues=("q1",), capacity=MAX_JOBS)
    endpoint = f"http://127.0.0.1:{soak_layout['env']['PORT']}"
    admin, client = make_clients(endpoint, settings.JOBROUTER_ACCESS_KEY)
    admin.upsert_classification_policy("cp", ClassificationPolicy(queue_selector_attachments=[
        StaticQueueSelectorAttachment(queue_selector=RouterQueueSelector(key="Id", label_operator="equal", value="q1"))
    ]))

    stop = threading.Event()
    kills: list[str] = []
    killer = threading.Thread(target=_killer, args=(soak_layout, stop, kills))
    failures = [0] * CLIENTS
    created: list[str] = []

    def enough() -> bool:
        return (len(created) >= MIN_JOBS and len(kills) >= MIN_KILLS
                and min(kills.count("web"), kills.count("background")) >= 4) or len(created) >= MAX_JOBS

    def load(n: int) -> None:
        # Jobs come in until both enough jobs and enough kills of each kind have happened.
        i = n
        while not enough():
            # Half go straight to the queue, half through classification.
            job = (RouterJob(channel_id="voice", queue_id="q1") if i % 2
                   else RouterJob(channel_id="voice", classification_policy_id="cp"))
            failures[n] += _create_with_retries(client, f"job-{i}", job)
            created.append(f"job-{i}")
            i += CLIENTS

    errors: list[BaseException] = []

    def load_or_record(n: int) -> None:
        try:
            load(n)
        except BaseException as exc:
            errors.append(exc)

    clients = [threading.Thread(target=load_or_record, args=(n,)) for n in range(CLIENTS)]
    killer.start()
    try:
        for thread in clients:
            thread.start()
        for thread in clients:
            thread.join()
    finally:
        stop.set()
        killer.join()
    assert not errors, (errors, soak_layout["log"].read_text()[-3000:])
    assert min(kills.count("web"), kills.count("background")) >= 4, kills
    jobs = len(created)

    def settled() -> bool:
        return (
            Job.objects.filter(status=JobStatus.QUEUED).count() == jobs
            and Offer.objects.filter(status=OfferStatus.OPEN).values("job_id").distinct().count() == jobs
        )

    eventually(settled, timeout=45, interval=0.5)
    assert sorted(Job.objects.values_list("pk", flat=True)) == sorted(created)
    assert Offer.objects.filter(status=OfferStatus.OPEN).count() == jobs  # exactly one offer each
    print(f"soak: {jobs} jobs, {len(kills)} kills ({kills.count('web')} web, {kills.count('background')} "
          f"background), {sum(failures)} client retries")
