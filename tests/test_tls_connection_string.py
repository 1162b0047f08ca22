"""`from_connection_string` always switches to https (ACS §1.1): the README's recipe — daphne
serving TLS, the client trusting the certificate — works with the unmodified SDK."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from azure.communication.jobrouter import JobRouterAdministrationClient, JobRouterClient
from azure.communication.jobrouter.models import DistributionPolicy, LongestIdleMode, RouterQueue

from tests.conftest import ROOT, _free_port, _stop, _wait_for_port, server_env

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def tls_endpoint(tmp_path: Path, django_db_setup):
    openssl = shutil.which("openssl")
    if openssl is None:
        pytest.fail("openssl is needed to make a test certificate")
    key, cert = tmp_path / "key.pem", tmp_path / "cert.pem"
    subprocess.run(
        [openssl, "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=localhost",
         "-keyout", str(key), "-out", str(cert), "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1"],
        check=True, capture_output=True,
    )
    port = _free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "daphne", "-e", f"ssl:{port}:interface=127.0.0.1:privateKey={key}:certKey={cert}",
         "jobrouter.asgi:application"],
        cwd=ROOT, env=server_env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    _wait_for_port(port, proc)
    yield f"https://127.0.0.1:{port}", str(cert)
    _stop(proc)


def test_connection_string_client_works_against_daphne_serving_tls(tls_endpoint, access_key):
    endpoint, cert = tls_endpoint
    conn = f"endpoint={endpoint};accesskey={access_key}"
    admin = JobRouterAdministrationClient.from_connection_string(conn, connection_verify=cert)
    client = JobRouterClient.from_connection_string(conn, connection_verify=cert)
    policy = admin.upsert_distribution_policy("tls-dp", DistributionPolicy(offer_expires_after_seconds=30, mode=LongestIdleMode()))
    assert policy.id == "tls-dp"
    admin.upsert_queue("tls-q", RouterQueue(distribution_policy_id="tls-dp"))
    assert client.get_queue_statistics("tls-q").length == 0
