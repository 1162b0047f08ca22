"""The real 2022-07-18-preview client (`azure-communication-jobrouter==1.0.0b1`) for the tests.

It cannot be installed beside 1.0.0 (same package name), so it lives in its own virtualenv,
`.venv-preview` at the repository root (git-ignored), and tests/preview_driver/driver.py runs in
a subprocess there. `preview_python()` creates that virtualenv when it is missing (pip from the
package index, as scripts/test does on a fresh machine); when it cannot, the tests skip with the
reason, except where they must run (`JOBROUTER_REQUIRE_PREVIEW_CLIENT=1`, which scripts/test
sets), where they fail.
"""

from __future__ import annotations

import fcntl
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parent.parent
VENV = ROOT / ".venv-preview"
DRIVER = ROOT / "tests" / "preview_driver" / "driver.py"
REQUIREMENTS = ("azure-communication-jobrouter==1.0.0b1", "aiohttp")
# A scenario polls for offers for at most 15 s; the rest is the client's own work.
SCENARIO_TIMEOUT_SECONDS = 120


def _ready(python: Path) -> bool:
    if not python.exists():
        return False
    probe = subprocess.run(
        [str(python), "-c", "import aiohttp, azure.communication.jobrouter as j; assert j.VERSION == '1.0.0b1'"],
        capture_output=True,
    )
    return probe.returncode == 0


def preview_python() -> Path:
    """The interpreter of `.venv-preview`, created and filled first if needed (under a file lock,
    so parallel test processes build it once)."""
    python = VENV / "bin" / "python"
    if _ready(python):
        return python
    with open(ROOT / ".venv-preview.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not _ready(python):
            try:
                subprocess.run([sys.executable, "-m", "venv", str(VENV)], check=True, capture_output=True)
                subprocess.run(
                    [str(python), "-m", "pip", "install", "--quiet", "--disable-pip-version-check", *REQUIREMENTS],
                    check=True, capture_output=True, timeout=600,
                )
            except (subprocess.CalledProcessError, subprocess.TimeoutExpired, OSError) as exc:
                detail = getattr(exc, "stderr", b"") or b""
                reason = f"cannot create {VENV} with {' '.join(REQUIREMENTS)}: {exc} {detail.decode(errors='replace')[-500:]}"
                if os.environ.get("JOBROUTER_REQUIRE_PREVIEW_CLIENT"):
                    pytest.fail(reason)
                pytest.skip(reason)
    return python


def run_scenario(name: str, endpoint: str, key: str, *, use_async: bool = False, **params: Any) -> dict[str, Any]:
    """Run one driver scenario with the 1.0.0b1 client against `endpoint`; its JSON output."""
    command = [str(preview_python()), str(DRIVER), name, endpoint, key, json.dumps(params)]
    if use_async:
        command.append("--async")
    done = subprocess.run(command, capture_output=True, text=True, timeout=SCENARIO_TIMEOUT_SECONDS)
    assert done.returncode == 0, f"driver {name} failed:\n{done.stderr[-4000:]}"
    return json.loads(done.stdout.strip().splitlines()[-1])
