"""Several API processes on one listening socket: ``zhisuan up --workers N``.

The parent binds the port, then forks N children that each build their own app (own engines,
own key cache, own background loops) and serve the shared socket; the kernel spreads connections
among them. Each background loop still runs in one process at a time: every loop pass takes its
lease in the database, and each process is its own lease holder (``app.process_holder``: host and
pid). The parent only forwards SIGINT/SIGTERM and waits; if a child dies, it stops the others and
exits non-zero, so the service manager restarts the whole group.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import sys
from collections.abc import Callable

import uvicorn
from fastapi import FastAPI

from zhisuan.api.limits import uvicorn_options
from zhisuan.config import Settings


def listening_socket(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    sock.listen(2048)
    sock.set_inheritable(True)
    return sock


def serve_child(sock: socket.socket, settings: Settings, make_app: Callable[[Settings], FastAPI]) -> None:
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, signal.SIG_DFL)  # uvicorn installs its own handlers in run()
    from zhisuan.api.app import freeze_startup_objects

    app = make_app(settings)
    freeze_startup_objects()
    config = uvicorn.Config(app, log_level="warning",
                            **uvicorn_options(settings.max_header_bytes))  # type: ignore[arg-type]
    uvicorn.Server(config).run(sockets=[sock])


def run_workers(settings: Settings, workers: int, make_app: Callable[[Settings], FastAPI]) -> int:
    """Serve with ``workers`` processes until a signal or a child's death; the exit status."""
    sock = listening_socket(settings.host, settings.port)
    children: list[int] = []
    for _ in range(workers):
        pid = os.fork()
        if pid == 0:
            code = 0
            try:
                serve_child(sock, settings, make_app)
            except BaseException:  # noqa: BLE001 - a child must never return into the parent's code
                code = 1
            finally:
                sys.stdout.flush()
                os._exit(code)
        children.append(pid)
    sock.close()

    def stop(signum: int, _frame: object) -> None:
        for child in children:
            with contextlib.suppress(ProcessLookupError):  # it has just exited
                os.kill(child, signal.SIGTERM)

    signal.signal(signal.SIGINT, stop)
    signal.signal(signal.SIGTERM, stop)
    status = 0
    while children:
        pid, code = os.wait()
        if pid in children:
            children.remove(pid)
            if os.waitstatus_to_exitcode(code) not in (0, -signal.SIGTERM, -signal.SIGINT):
                status = 1
                stop(signal.SIGTERM, None)
    return status

