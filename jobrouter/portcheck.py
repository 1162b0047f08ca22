"""`python -m jobrouter.portcheck HOST PORT`: exit 0 when a server could listen on HOST:PORT,
else print why to stderr and exit 1.

`scripts/start` runs it before it migrates or prints the endpoint and key, so a busy port fails
the start before anything claims the router is ready (otherwise the banner is printed and the
web process dies a moment later behind it). The probe binds as daphne, gunicorn and uvicorn do,
with SO_REUSEADDR, so a port held only by connections in TIME_WAIT counts as free; a port some
process listens on does not.
"""

from __future__ import annotations

import socket
import sys


def port_problem(host: str, port: int) -> str | None:
    """None when `host:port` can be bound now, else the operating system's reason."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except socket.gaierror as exc:
        return f"cannot resolve {host!r}: {exc.strerror}"
    family, kind, proto, _name, address = infos[0]
    with socket.socket(family, kind, proto) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind(address)
        except OSError as exc:
            return exc.strerror or str(exc)
    return None


def main(argv: list[str]) -> int:
    if len(argv) != 2 or not argv[1].isdigit():
        print("usage: python -m jobrouter.portcheck HOST PORT", file=sys.stderr)
        return 2
    host, port = argv[0], int(argv[1])
    problem = port_problem(host, port)
    if problem is None:
        return 0
    print(
        f"error: cannot listen on {host}:{port} ({problem}). Another program (another job router?) "
        f"is using the port: stop it, or choose another port, e.g. PORT={port + 1} scripts/start",
        file=sys.stderr,
    )
    return 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
