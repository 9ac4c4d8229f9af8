"""``zhisuan agent``: register this machine with a control plane, then heartbeat and run its job workers.

Lifecycle: detect devices → POST /agent/register (creates or refreshes the node) → every interval
re-read device health (plus XID/ECC/NVLink/npu-smi alarms, ``detection.faults``) and POST
/agent/heartbeat. If the control plane answers 404 (the node was
deleted) the agent registers again; if it is unreachable the agent keeps trying. Between beats,
every ``job_interval_s``, it exchanges job workers with the control plane (POST /agent/workers,
``job_sync.JobSync``): it runs the workers assigned to this node and reports their state and logs.
Workers outlive the agent: a restarted agent adopts them (``agent.jobs.WorkerRunner``).
"""

from __future__ import annotations

import logging
import random
import socket
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx

from zhisuan.agent import host
from zhisuan.agent.detection import DetectedDevice, detect_accelerators
from zhisuan.agent.detection.faults import FaultProbe

log = logging.getLogger("zhisuan.agent")


class AgentError(RuntimeError):
    def __init__(self, message: str, status: int) -> None:
        super().__init__(message)
        self.status = status


def _post(client: httpx.Client, path: str, body: dict, shed_retries: int = 4) -> dict:  # type: ignore[type-arg]
    response = client.post(path, json=body)
    for _ in range(shed_retries):  # 503 + Retry-After: the control plane is shedding load
        if response.status_code != 503 or "retry-after" not in response.headers:
            break
        time.sleep(shed_backoff_s(response.headers["retry-after"]))
        response = client.post(path, json=body)
    if response.status_code >= 400:
        try:
            message = response.json()["error"]["message"]
        except Exception:
            message = response.text[:200]
        raise AgentError(f"{path}: HTTP {response.status_code}: {message}", response.status_code)
    result: dict = response.json()  # type: ignore[type-arg]
    return result


def shed_backoff_s(retry_after: str) -> float:
    """Retry-After seconds, stretched by up to 100% at random so shed agents do not return in step."""
    try:
        base = min(60.0, max(0.5, float(retry_after)))
    except ValueError:
        base = 2.0
    return base * (1 + random.random())


def job_exchange(client: httpx.Client) -> Callable[[dict[str, Any]], list[dict[str, Any]]]:
    def exchange(body: dict[str, Any]) -> list[dict[str, Any]]:
        answer: list[dict[str, Any]] = _post(client, "/agent/workers", body)  # type: ignore[assignment]
        return answer

    return exchange


def sync_jobs(jobs: Any) -> None:
    try:
        jobs.step()
    except (AgentError, httpx.TransportError) as error:  # the next exchange resends what is missing
        log.warning("job workers not synced (%s); retrying", error)


def run_agent(
    server: str,
    token: str,
    *,
    name: str | None = None,
    labels: dict[str, str] | None = None,
    once: bool = False,
    detect: Callable[[], list[DetectedDevice]] = detect_accelerators,
    sleep: Callable[[float], None] = time.sleep,
    max_beats: int | None = None,
    jobs_root: Path | None = None,
    job_interval_s: float = 2.0,
    replicas_dir: Path | None = None,
    advertise_address: str = "127.0.0.1",
    kernel_log: Path | None = None,
) -> dict:  # type: ignore[type-arg]
    """Register, heartbeat and run job workers (under ``jobs_root``, default ``config.default_jobs_dir``)
    and, with ``replicas_dir``, the model replicas placed on this node (reached at ``advertise_address``).
    Returns the last acknowledgement (useful with ``once``)."""
    from zhisuan.agent.job_sync import JobSync
    from zhisuan.agent.jobs import WorkerRunner
    from zhisuan.agent.replicas import replica_sync
    from zhisuan.config import default_jobs_dir

    name = name or socket.gethostname()
    headers = {"Authorization": f"Bearer {token}"}
    with httpx.Client(base_url=server.rstrip("/") + "/api/v1", headers=headers, timeout=10) as client, \
            replica_sync(client, name, None if once else replicas_dir, advertise_address) as replicas:
        ack = _post(client, "/agent/register", host.registration(name, detect(), labels))
        log.info("registered node %s (id %s) as %s", name, ack["node_id"], ack["status"])
        root = jobs_root or default_jobs_dir(Path.home() / ".zhisuan-agent")
        jobs = JobSync(WorkerRunner(root), name, job_exchange(client))
        probe = FaultProbe(kernel_log=kernel_log)
        probe(detect())  # start following the kernel log here: only faults from now on count
        beats = 0
        while not once and (max_beats is None or beats < max_beats):
            waited, interval = 0.0, float(ack.get("heartbeat_interval_s", 10))
            while waited < interval:
                sync_jobs(jobs)
                if replicas is not None:  # model-service replicas placed on this node (agent.replicas)
                    replicas.step()
                step = min(job_interval_s, interval - waited)
                sleep(step)
                waited += step
            beats += 1
            try:
                ack = _post(client, "/agent/heartbeat", host.heartbeat(name, probe(detect())))
            except AgentError as error:
                if error.status == 404:  # the node was deleted or the database reset: join again
                    ack = _post(client, "/agent/register", host.registration(name, detect(), labels))
                elif error.status >= 500:
                    log.warning("control plane error (%s); retrying", error)
                else:  # 401/403/422: a revoked key or a bad report will not fix itself
                    raise
            except httpx.TransportError as error:
                log.warning("control plane unreachable (%s); retrying", error)
        return ack
