"""Ports for servers the tests start.

Asking the kernel for a free port (bind to port 0, close, hand the number to a server) races: between
the close and the server's bind, the kernel may give the same port to any outgoing connection or to
another xdist worker's port-0 request, since it comes from the ephemeral range (32768–60999 here). The
ports handed out here lie below that range, where the kernel never allocates on its own, and each xdist
worker draws from its own block, so two workers can never pick the same one.
"""

from __future__ import annotations

import itertools
import os
import socket

BASE = 20000
BLOCK = 600  # ports per xdist worker: 20 workers fit below the ephemeral range
_next = itertools.count()


def _worker_index() -> int:
    worker = os.environ.get("PYTEST_XDIST_WORKER", "gw0")  # "gw3" under xdist; absent when run alone
    return int(worker.removeprefix("gw")) if worker.removeprefix("gw").isdigit() else 0


def free_port() -> int:
    """A loopback port no one listens on, from this worker's block (skipping any in use)."""
    start = BASE + BLOCK * (_worker_index() % 20)
    for _ in range(BLOCK):
        port = start + next(_next) % BLOCK
        with socket.socket() as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise RuntimeError(f"no free port in {start}–{start + BLOCK - 1}")
