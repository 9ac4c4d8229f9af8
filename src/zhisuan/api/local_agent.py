"""The control plane's own node agent for site ``local``: the one-box (一体机) default.

It runs in-process and calls the inventory service directly rather than over HTTP; otherwise it
follows the same lifecycle as ``zhisuan agent`` (register, then heartbeat).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import timedelta
from typing import Any

from sqlalchemy.orm import Session, sessionmaker

from zhisuan.agent import host
from zhisuan.agent.detection import DetectedDevice, detect_accelerators
from zhisuan.agent.job_sync import JobSync
from zhisuan.agent.jobs import WorkerRunner
from zhisuan.api.deps import AppContext
from zhisuan.bootstrap import system_principal
from zhisuan.catalog.loader import Catalog
from zhisuan.inventory import service
from zhisuan.inventory.schemas import Heartbeat, NodeRegister
from zhisuan.store.base import transaction
from zhisuan.workloads.agent_sync import Reports, report

log = logging.getLogger("zhisuan.local")


def known_devices(catalog: Catalog, devices: list[DetectedDevice]) -> list[DetectedDevice]:
    """Devices the catalog can name; an unknown chip is logged, not a reason to refuse to start."""
    known = []
    for device in devices:
        if device.model_key is None and catalog.resolve(device.reported_name) is None:
            log.warning("skipping device %s: '%s' is not in the catalog", device.index, device.reported_name)
            continue
        known.append(device)
    return known


def register_local_node(ctx: AppContext, catalog: Catalog, site_id: int) -> str:
    body = NodeRegister.model_validate(host.registration(devices=known_devices(catalog, detect_accelerators())))
    with transaction(ctx.sessions) as session:
        node = service.register_node(session, catalog, system_principal(site_id), body, ctx.clock())
        log.info("site local: node %s with %d accelerators", node.name, len(node.devices))
        return node.name


def heartbeat_local_node(sessions: sessionmaker[Session], ctx: AppContext, catalog: Catalog, site_id: int,
                         name: str) -> None:
    body = Heartbeat.model_validate(host.heartbeat(name, known_devices(catalog, detect_accelerators())))
    with transaction(sessions) as session:
        service.heartbeat(session, system_principal(site_id), name, list(body.devices), ctx.clock(),
                          timedelta(seconds=ctx.settings.cordon_clear_after_s))


def local_job_sync(ctx: AppContext, site_id: int, name: str, on_change: Callable[[], None] | None = None) -> JobSync:
    """The one-box agent's job workers: run here under the jobs dir (``config.default_jobs_dir``),
    exchanged with the scheduler by direct calls rather than HTTP."""

    def exchange(body: dict[str, Any]) -> list[dict[str, Any]]:
        reports = Reports.model_validate(body)
        with transaction(ctx.sessions) as session:
            return [a.model_dump() for a in report(session, system_principal(site_id), reports, ctx.clock())]

    return JobSync(WorkerRunner(ctx.settings.resolved_jobs_dir()), name, exchange, on_change=on_change)
