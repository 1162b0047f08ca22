"""A fresh checkout of this repository for tests that run its scripts as a newcomer would.

`fresh_checkout(dest)` copies exactly the files a clone would have (git's tracked files plus new
files not ignored, so uncommitted work is tested too; no `.venv`, `var/` or `.env`), and gives
it a `.venv` that sees the installed dependencies without reinstalling them: a venv without pip
whose site-packages holds a `.pth` line naming this interpreter's site-packages. `scripts/start`
then finds `.venv/bin/python`, and its `python -m pip install -e .` only installs the project
into that venv (the shared environment is never modified: pip refuses to uninstall outside the
venv it runs in).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import sysconfig
from pathlib import Path

from tests.conftest import ROOT


def fresh_checkout(dest: Path) -> Path:
    files = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=ROOT, check=True, capture_output=True,
    ).stdout.decode().split("\0")
    for name in filter(None, files):
        source = ROOT / name
        if not source.is_file():  # deleted in the working tree, not yet committed
            continue
        target = dest / name
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(source.read_bytes())
        target.chmod(source.stat().st_mode)
    subprocess.run([getattr(sys, "_base_executable", sys.executable), "-m", "venv", "--without-pip", str(dest / ".venv")],
                   check=True)
    shared = sysconfig.get_paths()["purelib"]
    version = f"python{sys.version_info.major}.{sys.version_info.minor}"
    (dest / ".venv" / "lib" / version / "site-packages" / "_shared_dependencies.pth").write_text(shared + "\n")
    return dest


def newcomer_env(**extra: str) -> dict[str, str]:
    """The environment of a newcomer's shell: no activated venv and none of the router's or the
    test run's settings (so the checkout's own defaults and `.env` apply)."""
    keep = {"PATH", "HOME", "LANG", "LC_ALL", "TMPDIR", "USER", "TERM"}
    env = {k: v for k, v in os.environ.items() if k in keep}
    venv_bin = str(Path(sys.executable).parent)
    env["PATH"] = os.pathsep.join(p for p in env.get("PATH", "").split(os.pathsep) if p != venv_bin)
    return {**env, **extra}


def stop_group(proc: subprocess.Popen, timeout: float = 15) -> None:
    """SIGTERM to the process group (as Ctrl-C in the terminal reaches honcho and its children),
    SIGKILL to whatever is left."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            break
        try:
            proc.wait(timeout=timeout)
            break
        except subprocess.TimeoutExpired:
            continue
    proc.wait()
