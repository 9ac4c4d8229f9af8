"""A throw-away control plane for the control-plane benchmarks: its database, keys and API process.

``prepare`` migrates a fresh database (a new PostgreSQL database named ``zs_bench_<random>``, or a
SQLite file in a temporary directory), creates an operator key, a provider, a site and one agent
key per simulated node (per-node keys, as ``zhisuan site agent-key`` issues them). ``serve`` starts
the API the way ``zhisuan up`` does (uvicorn with ``uvicorn_options``; no local site, no MaaS) in a
child process, so the load generator's own CPU is measured apart from the server's.

Agent keys are stored as the platform stores new keys (SHA-256 digests). ``legacy_scrypt_n`` stores
them instead as keys issued before that were (scrypt at that cost, 2**14 in production), to measure
what the old form cost: only a key's *first* check per process pays it (the verifier caches it).
"""

from __future__ import annotations

import os
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path

import httpx
import psycopg

from zhisuan.bootstrap import ensure_first_operator, migrate
from zhisuan.config import Settings
from zhisuan.identity.hashing import hash_secret
from zhisuan.identity.keys import PREFIX, issue_key
from zhisuan.identity.models import User
from zhisuan.inventory.models import Provider, Site
from zhisuan.store.base import make_engine, make_session_factory, transaction

ADMIN_URL = os.environ.get("ZHISUAN_TEST_POSTGRES_ADMIN_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
SITE = "bench"


@dataclass
class Platform:
    database_url: str
    data_dir: Path
    operator_key: str
    agent_keys: list[str]
    pg_database: str | None = None
    process: subprocess.Popen[bytes] | None = None
    url: str = ""
    extra: dict[str, str] = field(default_factory=dict)

    def drop(self) -> None:
        """Stop the server and drop the throw-away database."""
        if self.process is not None and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait()
        if self.pg_database is not None:
            with psycopg.connect(ADMIN_URL, autocommit=True) as connection:
                connection.execute(f'DROP DATABASE IF EXISTS "{self.pg_database}" WITH (FORCE)')
        shutil.rmtree(self.data_dir, ignore_errors=True)


def new_database(backend: str, data_dir: Path) -> tuple[str, str | None]:
    if backend == "sqlite":
        return f"sqlite:///{data_dir / 'zhisuan.db'}", None
    name = f"zs_bench_{secrets.token_hex(4)}"
    with psycopg.connect(ADMIN_URL, autocommit=True) as connection:
        connection.execute(f'CREATE DATABASE "{name}"')
    return ADMIN_URL.rsplit("/", 1)[0] + f"/{name}", name


def prepare(backend: str, nodes: int, legacy_scrypt_n: int | None = None) -> Platform:
    data_dir = Path(tempfile.mkdtemp(prefix="zs-bench-"))
    url, pg_name = new_database(backend, data_dir)
    settings = Settings(data_dir=data_dir, database_url=url, register_local_site=False, scrypt_n=2**10)
    migrate(settings)
    engine = make_engine(settings.resolved_database_url())
    sessions = make_session_factory(engine)
    first = ensure_first_operator(sessions, settings)
    assert first is not None
    keys: list[str] = []
    with transaction(sessions) as session:
        user = session.query(User).filter_by(username="admin").one()
        provider = Provider(name="bench", display_name="benchmark", revenue_share=Decimal("0.8"))
        site = Site(name=SITE, engine="simulated", region="bench", provider=provider, engine_config={})
        session.add_all([provider, site])
        session.flush()
        for number in range(nodes):
            issued = issue_key(session, user, name=f"agent {number}", scopes=["agent"], expires_at=None,
                               site_id=site.id)
            if legacy_scrypt_n is not None:
                secret = issued.plaintext[len(PREFIX):].partition("_")[2]
                issued.row.secret_hash = hash_secret(secret, n=legacy_scrypt_n)
            keys.append(issued.plaintext)
    engine.dispose()
    return Platform(database_url=url, data_dir=data_dir, operator_key=first.api_key, agent_keys=keys,
                    pg_database=pg_name)


def serve(platform: Platform, port: int, workers: int = 1, extra_args: list[str] | None = None) -> None:
    """Start ``zhisuan up`` on the prepared database in its own process group; wait for /health."""
    command = [sys.executable, "-m", "zhisuan", "up", "--port", str(port), "--data-dir", str(platform.data_dir),
               "--no-local-site", "--no-maas", *(["--workers", str(workers)] if workers > 1 else []),
               *(extra_args or [])]
    if not platform.database_url.startswith("sqlite"):
        command += ["--database", platform.database_url]
    log = open(platform.data_dir / "server.log", "wb")  # noqa: SIM115 - lives as long as the server
    platform.process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    platform.url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if platform.process.poll() is not None:
            raise RuntimeError(f"server exited: {(platform.data_dir / 'server.log').read_text()[-2000:]}")
        try:
            if httpx.get(platform.url + "/health", timeout=2).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.2)
    raise RuntimeError("server did not answer /health within 60 s")


def server_cpu_seconds(platform: Platform) -> float:
    """User + system CPU of the server process group (its own process and any workers)."""
    assert platform.process is not None
    total = 0.0
    tick = os.sysconf("SC_CLK_TCK")
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[2]) == platform.process.pid:  # fields[2] is the process group id
            total += (int(fields[11]) + int(fields[12])) / tick
    return total
