"""``zhisuan up --workers N``: several API processes on one port and one database, each background
loop run by one of them at a time (issue 15, item 2)."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import httpx
import pytest
from sqlalchemy import create_engine, select, text

from tests.ports import free_port
from zhisuan.api.app import process_holder
from zhisuan.bootstrap import migrate
from zhisuan.config import Settings
from zhisuan.inventory.models import Node, Provider, Site
from zhisuan.loops.heartbeat_monitor import LEASE, monitor_pass
from zhisuan.store.base import make_engine, make_session_factory, transaction
from zhisuan.store.leases import LoopLease


def test_each_process_is_its_own_lease_holder() -> None:
    code = "from zhisuan.api.app import process_holder; print(process_holder())"
    other = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    assert other != process_holder()  # same machine, two processes: two holders (not the host name alone)
    assert other.startswith(socket.gethostname()[:48])


def test_two_processes_do_not_both_run_a_monitor_pass(database_url: str, tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path, database_url=database_url, register_local_site=False)
    engine = make_engine(settings.resolved_database_url())
    sessions = make_session_factory(engine)
    now = datetime(2026, 12, 1, tzinfo=UTC)
    with transaction(sessions) as session:
        site = Site(name="s", engine="simulated", region="r", engine_config={},
                    provider=Provider(name="p", display_name="", revenue_share=Decimal("0.7")))
        session.add(Node(site=site, name="quiet", status="ready", drained=False, cpu_cores=1, memory_mib=1,
                         labels={}, managed_by="agent", last_heartbeat_at=now - timedelta(minutes=5)))
    timeout = timedelta(seconds=30)
    first = monitor_pass(sessions, now, timeout, holder="host:100")
    second = monitor_pass(sessions, now + timedelta(seconds=5), timeout, holder="host:200")
    assert len(first) == 1 and second == []  # the lease is the first process's until it lapses
    with transaction(sessions) as session:
        assert session.execute(select(LoopLease.holder).where(LoopLease.name == LEASE)).scalar_one() == "host:100"
    engine.dispose()


@pytest.mark.parametrize("backend", ["sqlite"])
def test_up_with_two_workers_serves_and_runs_each_loop_in_one_process(database_url: str, tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path, database_url=database_url)
    migrate(settings)
    port = free_port()
    server = subprocess.Popen(
        [sys.executable, "-m", "zhisuan", "up", "--workers", "2", "--no-local-site", "--no-maas", "--port", str(port),
         "--data-dir", str(tmp_path), "--database", database_url],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True)
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"http://127.0.0.1:{port}/health", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                time.sleep(0.2)
        else:
            pytest.fail("no answer from zhisuan up --workers 2")
        children = {int(pid) for pid in subprocess.run(["pgrep", "-P", str(server.pid)], capture_output=True,
                                                       text=True).stdout.split()}
        assert len(children) == 2
        engine = create_engine(settings.resolved_database_url())

        def lease_holders() -> set[str]:
            with engine.connect() as connection:
                return set(connection.execute(
                    text("SELECT holder FROM loop_leases WHERE name = :name"), {"name": LEASE}).scalars())

        deadline = time.monotonic() + 60  # the first pass: a loaded machine delays it past a fixed pause
        while not (holders := lease_holders()):
            assert time.monotonic() < deadline, "no worker ever took the monitor's lease"
            time.sleep(0.2)
        for _ in range(3):  # the monitor runs every 5 s; watch it over two more passes
            time.sleep(3)
            holders |= lease_holders()
        engine.dispose()
        assert len(holders) == 1, holders
        assert int(holders.pop().rsplit(":", 1)[1]) in children  # held by one worker, never shared
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        server.wait(timeout=30)


def test_up_refuses_workers_with_the_one_box_pieces(tmp_path: Path) -> None:
    result = subprocess.run([sys.executable, "-m", "zhisuan", "up", "--workers", "2", "--data-dir", str(tmp_path)],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode != 0
    assert "--no-local-site --no-maas" in result.stderr
