"""The `.env` file: `KEY=value` lines next to `manage.py`, read by python-dotenv.

The real environment always wins: a variable set in the environment (even to an empty string)
is never replaced by the file. `jobrouter.settings` loads the file before reading any setting;
the shell scripts (`scripts/start`, `scripts/web`), which read `PORT`, `JOBROUTER_HOST` and
`JOBROUTER_WEB_WORKERS` before Python runs, evaluate `python -m jobrouter.envfile`, which prints
the file's variables missing from the environment as `export NAME='value'` lines.
"""

from __future__ import annotations

import os
import shlex
from pathlib import Path

from dotenv import dotenv_values

ENV_FILE = Path(__file__).resolve().parent.parent / ".env"


def missing_from_environment(path: Path = ENV_FILE) -> dict[str, str]:
    """The file's `{name: value}` pairs whose name is not set in the environment; `{}` when the
    file does not exist. A name without a value (`NAME` alone) counts as unset in the file."""
    if not path.is_file():
        return {}
    return {name: value for name, value in dotenv_values(path).items() if value is not None and name not in os.environ}


def load_env_file(path: Path = ENV_FILE) -> None:
    """Put the file's variables into `os.environ` where the environment does not set them."""
    os.environ.update(missing_from_environment(path))


def main() -> None:
    for name, value in sorted(missing_from_environment().items()):
        print(f"export {name}={shlex.quote(value)}")


if __name__ == "__main__":
    main()
