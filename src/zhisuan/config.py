"""Settings of one control-plane process, read from arguments and ``ZHISUAN_*`` variables."""

from __future__ import annotations

import hashlib
import os
import re
from dataclasses import dataclass, field
from pathlib import Path


def default_data_dir() -> Path:
    return Path(os.environ.get("ZHISUAN_DATA_DIR", Path.home() / ".zhisuan"))


def default_jobs_dir(data_dir: Path) -> Path:
    """Where job workers run (tenants' working directories, logs, records).

    As root, workers run as per-tenant users who must be able to enter their own directories; the
    data dir is private (0700, it holds the database and keys) and so is root's home, so the jobs
    live in ``/var/lib/zhisuan/jobs-<hash of the data dir>`` (one per platform on the machine: two
    control planes never adopt each other's workers); ``ZHISUAN_JOBS_DIR`` overrides. Otherwise:
    ``<data dir>/jobs``.
    """
    if os.environ.get("ZHISUAN_JOBS_DIR"):
        return Path(os.environ["ZHISUAN_JOBS_DIR"])
    if os.geteuid() != 0:
        return data_dir / "jobs"
    digest = hashlib.sha256(str(Path(data_dir).resolve()).encode()).hexdigest()[:12]
    return Path("/var/lib/zhisuan") / f"jobs-{digest}"


@dataclass(frozen=True)
class Settings:
    """Everything a control plane needs to start.

    ``database_url`` defaults to an embedded SQLite file in ``data_dir`` (the one-box default);
    ``postgresql://…`` URLs run the same code on PostgreSQL.
    """

    data_dir: Path = field(default_factory=default_data_dir)
    database_url: str | None = None
    host: str = "127.0.0.1"
    port: int = 8420
    # A node that has not sent a heartbeat for this long is marked unreachable.
    heartbeat_timeout_s: float = 30.0
    heartbeat_interval_s: float = 10.0
    monitor_interval_s: float = 5.0
    # Beats that change nothing are buffered and their times written together this often (0: each at once).
    beat_flush_interval_s: float = 1.0
    # A node cordoned for a fault returns after its reports have been clean for this long.
    cordon_clear_after_s: float = 300.0
    metering_interval_s: float = 60.0
    # How often the fleet's utilisation is sampled into its history (utilisation.loop); a minute keeps
    # its latest reading, so a shorter interval (ZHISUAN_UTILISATION_INTERVAL_S) only freshens it.
    utilisation_interval_s: float = field(
        default_factory=lambda: float(os.environ.get("ZHISUAN_UTILISATION_INTERVAL_S", "60")))
    # How often the fleet's count rows are folded into one per key (loops.count_fold): a table past
    # 512 rows is folded in chunks of 10,000 rows per short transaction (ZHISUAN_COUNT_FOLD_INTERVAL_S).
    count_fold_interval_s: float = field(
        default_factory=lambda: float(os.environ.get("ZHISUAN_COUNT_FOLD_INTERVAL_S", "5")))
    # How often this machine's serving runtime reconciles its model replicas with the database.
    serving_interval_s: float = 3.0
    # The serving loop (serving.autoscaler): replicas lost with their node, autoscaling by load.
    autoscale_interval_s: float = 5.0
    # How often the job scheduler admits, launches and follows jobs, and the local agent syncs its workers.
    job_interval_s: float = 1.0
    jobs_dir: Path | None = None  # default: ``default_jobs_dir``
    # Registers this machine as site ``local`` and keeps it heartbeating from inside the process.
    register_local_site: bool = True
    run_background_loops: bool = True
    # One-box MaaS: the OpenAI-compatible gateway (/v1) with a llama.cpp replica of SmolLM2.
    maas: bool = False
    gateway_port: int = 0  # 0: the API port + 1
    # Bodies larger than this are refused with 413 before they are parsed.
    max_body_bytes: int = 1_048_576
    # Request headers beyond these are refused with 431 (the server itself also caps a request head).
    max_header_bytes: int = 16_384
    max_headers: int = 100
    # JSON bodies nested deeper than this are refused with 422 before they are parsed.
    max_json_depth: int = 32
    # /metrics: False = loopback clients, or a caller with an operator key holding the 'metrics'
    # scope; True = anyone who can reach the port (only behind a firewall that says who can).
    metrics_public: bool = False
    # scrypt cost for passwords (API keys are stored as SHA-256 digests, identity.hashing); tests may
    # lower it, production keeps the default.
    scrypt_n: int = 2**14
    # Capacity of one API process (api/admission.py): requests in flight per route class, each holding
    # at most one of the ``db_pool_size`` request connections, run by ``worker_threads`` threads. Kept
    # consistent (in flight ≤ pool < threads) so a request never waits for a thread while holding a
    # connection another thread waits for; past it, requests queue ``admission_wait_s`` at most, then
    # get 503 with ``Retry-After: retry_after_s``. The background loops have their own small pool.
    max_inflight_agent: int = 12
    max_inflight_api: int = 8
    admission_wait_s: float = 5.0
    retry_after_s: int = 2
    db_pool_size: int = 24
    db_pool_timeout_s: float = 5.0
    loop_pool_size: int = 4
    worker_threads: int = 40

    def __post_init__(self) -> None:
        if self.max_inflight_agent + self.max_inflight_api > self.db_pool_size:
            raise ValueError("max_inflight_agent + max_inflight_api must not exceed db_pool_size")
        if self.db_pool_size >= self.worker_threads:
            raise ValueError("db_pool_size must be below worker_threads")

    def resolved_jobs_dir(self) -> Path:
        return self.jobs_dir or default_jobs_dir(self.data_dir)

    def resolved_database_url(self) -> str:
        if self.database_url:
            return normalise_database_url(self.database_url)
        return f"sqlite:///{self.data_dir / 'zhisuan.db'}"


def normalise_database_url(url: str) -> str:
    """Map the plain ``postgresql://`` spelling users type onto the psycopg 3 driver."""
    if url.startswith("postgres://"):
        url = "postgresql://" + url[len("postgres://") :]
    if url.startswith("postgresql://"):
        url = "postgresql+psycopg://" + url[len("postgresql://") :]
    return url


# scheme://user:PASSWORD@host: what a URL must never show in a message or a log line.
URL_PASSWORD = re.compile(r"(?P<head>\b[a-zA-Z][a-zA-Z0-9+.-]*://[^:/@\s]*:)(?P<password>[^@\s]+)(?P<tail>@)")


# ...nor as a query parameter (libpq accepts ``postgresql://host/db?password=…``).
QUERY_PASSWORD = re.compile(r"(?P<head>[?&](?:sentinel_)?password=)[^&\s'\"]+", re.IGNORECASE)


def redact_url_passwords(text: str) -> str:
    """``text`` with the password of every URL in it replaced by ``***``."""
    return QUERY_PASSWORD.sub(r"\g<head>***", URL_PASSWORD.sub(r"\g<head>***\g<tail>", text))
