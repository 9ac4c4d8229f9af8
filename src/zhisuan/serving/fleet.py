"""Replicas on every node: what node agents run and report, and what gateways follow.

Agents (``POST /api/v1/agent/replicas``, agent keys): an agent reports the replicas it runs (state,
port, restarts, load, the per-replica secret it drew, the address gateways reach it at) and gets
back the replicas placed on its node (``exchange``). Only replicas placement put on the agent's own
node are accepted: a report about any other replica is refused — not applied, listed in the
answer's ``refused`` — and audited (``replica.report_refused``); a key naming a node of another
site, or a node its key is not bound to, is refused whole (403) and audited in a transaction of its
own (the request's is rolled back).

Gateways (``GET /api/v1/serving/endpoints``, operators; the in-process gateway calls ``endpoints``
directly): every replica of an active deployment that is healthy or draining and was reported in
the last ``stale_s`` seconds, with its address, port and secret, plus the names in the model
registry (a registered model with no running replica answers 503, not 404). ``version`` is a digest
of the answer, so a gateway polling with ``If-None-Match`` gets 304 while nothing changed.

Replica secrets never reach the database: the agent draws one per launch, sends it with each report,
and the control plane keeps it in memory (``ReplicaKeys``) to hand to gateways. After a restart of the
control plane a replica is listed again from its agent's next report (every few seconds).
"""

from __future__ import annotations

import hashlib
import json
import threading
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

from pydantic import BaseModel, Field
from sqlalchemy import select
from sqlalchemy.orm import Session, selectinload

from zhisuan.catalog.loader import Catalog
from zhisuan.core.refs import MAX_ROW_ID
from zhisuan.errors import Forbidden, NotFound
from zhisuan.identity import audit
from zhisuan.identity.access import Principal
from zhisuan.identity.schemas import Strict
from zhisuan.inventory.models import Node
from zhisuan.inventory.service import bind_key_to_node, find_node
from zhisuan.serving import service
from zhisuan.serving.models import ENDED_REPLICA, DeploymentReplica, ModelDeployment, ServedModel

# A replica not reported for this long is left out of discovery (its agent is gone or cut off).
STALE_AFTER_S = 10.0
ADDRESS_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9.:-]{0,253}$"


class ReplicaReport(Strict):
    deployment_id: int = Field(ge=1, le=MAX_ROW_ID)
    index: int = Field(ge=0, le=1023)
    state: str = Field(pattern=r"^(starting|healthy|unhealthy|draining|stopped|failed)$")
    port: int | None = Field(default=None, ge=1, le=65535)
    restarts: int = Field(default=0, ge=0, le=1_000_000)
    in_flight: int = Field(default=0, ge=0, le=1_000_000)
    slots: int = Field(default=1, ge=1, le=4096)
    message: str = Field(default="", max_length=1000)
    # The key the engine demands (drawn by the agent at launch); kept in memory here, never stored.
    secret: str | None = Field(default=None, min_length=16, max_length=256, repr=False)


class ReplicaReports(Strict):
    node: str = Field(min_length=1, max_length=128)
    address: str = Field(pattern=ADDRESS_PATTERN, description="where gateways reach this node's replicas")
    replicas: list[ReplicaReport] = Field(default_factory=list, max_length=1024)


class ReplicaAssignment(BaseModel):
    deployment_id: int
    index: int
    name: str  # unique on a machine: <deployment name>@<deployment id>
    desired: str  # run | drain
    model: dict[str, Any]  # engines.spec.ModelSpec's fields
    stack: str
    device_indices: list[int]
    visible_devices_env: str | None
    threads: int
    parallel: int


class ReplicaExchange(BaseModel):
    replicas: list[ReplicaAssignment]
    refused: list[str] = Field(default_factory=list, description="reported replicas not assigned to this node")


class ReplicaKeys:
    """(deployment id, replica index) → (secret, port) as the replica's runtime last reported it.
    In memory only: a restarted control plane learns them again from the next reports."""

    def __init__(self) -> None:
        self._keys: dict[tuple[int, int], tuple[str, int]] = {}
        self._lock = threading.Lock()

    def put(self, deployment_id: int, index: int, secret: str, port: int) -> None:
        with self._lock:
            self._keys[(deployment_id, index)] = (secret, port)

    def drop(self, deployment_id: int, index: int) -> None:
        with self._lock:
            self._keys.pop((deployment_id, index), None)

    def get(self, deployment_id: int, index: int, port: int | None) -> str | None:
        """The secret of the replica running on ``port`` (a relaunch on another port has another secret)."""
        found = self._keys.get((deployment_id, index))
        return found[0] if found is not None and found[1] == port else None


def process_name(row: ModelDeployment) -> str:
    return f"{row.name}@{row.id}"


def replica_id(row: ModelDeployment, index: int) -> str:
    """The router's id of a replica: the same one the control plane's own runtime registers."""
    return f"{process_name(row)}-{index}"


# ----------------------------------------------------------------------------- agents


def refuse(sessions: Callable[[], Any], principal: Principal, node_name: str, why: str) -> Forbidden:
    """Audit a refused report in its own transaction (the request's rolls back), then say why."""
    from zhisuan.store.base import transaction

    with transaction(sessions) as session:  # type: ignore[arg-type]
        audit.record(session, principal, "replica.report_refused", "node", node_name,
                     detail={"reason": why, "site_id": principal.site_id})
    return Forbidden(f"node '{node_name}': {why}", field="node")


def agent_node(session: Session, sessions: Callable[[], Any], principal: Principal, name: str) -> Node:
    if principal.site_id is None:
        raise Forbidden("only an agent key bound to a site can report replicas")
    node = find_node(session, principal.site_id, name)
    if node is None:
        elsewhere = session.execute(select(Node.id).where(Node.name == name).limit(1)).scalar_one_or_none()
        if elsewhere is not None:
            raise refuse(sessions, principal, name, "the node belongs to another site than this agent key")
        raise NotFound(f"node '{name}' is not registered in this site; register it first", field="node")
    if not bind_key_to_node(session, principal, name):
        raise refuse(sessions, principal, name, "this agent key speaks for another node")
    return node


def apply_report(session: Session, node: Node, address: str, report: ReplicaReport, keys: ReplicaKeys,
                 now: datetime) -> bool:
    """Store one replica's report; False when the replica is not placed on ``node`` (refused)."""
    from zhisuan.serving.runtime import Observed, record_replica

    replica = session.execute(select(DeploymentReplica).where(
        DeploymentReplica.deployment_id == report.deployment_id,
        DeploymentReplica.index == report.index)).scalar_one_or_none()
    if replica is None or replica.node_id != node.id:
        return False
    row = replica.deployment
    if report.state == "stopped":
        keys.drop(row.id, replica.index)
        if replica.state == "draining":  # the agent finished draining it: release its devices
            service.stop_replica(session, row, replica, now, "drained and stopped")
            service.refresh_status(row, now)
        return True
    if report.secret and report.port:
        keys.put(row.id, replica.index, report.secret, report.port)
    record_replica(session, Observed(row.id, replica.index, report.state, report.port, report.restarts,
                                     report.message, report.in_flight, report.slots), now)
    replica.host = address
    return True


def assignment(catalog: Catalog, node: Node, row: ModelDeployment, replica: DeploymentReplica) -> ReplicaAssignment:
    from zhisuan.serving.runtime import assignment_for, model_spec

    spec, a = model_spec(row), assignment_for(catalog, node, row, replica)
    return ReplicaAssignment(
        deployment_id=row.id, index=replica.index, name=process_name(row),
        desired="drain" if replica.state == "draining" else "run",
        model={"name": spec.name, "source": spec.source, "engine": spec.engine,
               "context_length": spec.context_length, "stacks": list(spec.stacks),
               "extra_args": list(spec.extra_args), "embeddings": spec.embeddings},
        stack=a.stack, device_indices=list(a.device_indices), visible_devices_env=a.visible_devices_env,
        threads=a.threads or 1, parallel=a.parallel)


def exchange(session: Session, sessions: Callable[[], Any], catalog: Catalog, principal: Principal,
             body: ReplicaReports, keys: ReplicaKeys, now: datetime) -> ReplicaExchange:
    node = agent_node(session, sessions, principal, body.node)
    refused = []
    for report in body.replicas:
        if not apply_report(session, node, body.address, report, keys, now):
            refused.append(f"{report.deployment_id}/{report.index}")
            audit.record(session, principal, "replica.report_refused", "replica",
                         f"deployment:{report.deployment_id}/{report.index}",
                         detail={"node": node.name, "reason": "not placed on this node"})
    session.flush()
    assigned = [assignment(catalog, node, row, replica) for row, replica in service.replicas_on_node(session, node.id)
                if replica.state not in ENDED_REPLICA]
    return ReplicaExchange(replicas=assigned, refused=refused)


# ----------------------------------------------------------------------------- gateways


def endpoints(session: Session, keys: ReplicaKeys, now: datetime, *, stale_s: float = STALE_AFTER_S,
              exclude_node_id: int | None = None) -> dict[str, Any]:
    """What gateways route to: ``{"version", "models", "replicas": [{id, model, tenant_id, host, port,
    secret, draining, slots}]}`` — replicas healthy or draining, reported within ``stale_s``, secret
    known; ``slots``: the engine's parallel request slots as its agent last reported them (a gateway
    sends it at most that many requests at once)."""
    models = sorted(session.execute(select(ServedModel.name)).scalars())
    rows = session.execute(
        select(DeploymentReplica, ModelDeployment).join(ModelDeployment)
        .options(selectinload(ModelDeployment.model))
        .where(ModelDeployment.status.in_(service.ACTIVE_DEPLOYMENT),
               DeploymentReplica.state.in_(("healthy", "draining")),
               DeploymentReplica.reported_at >= now - timedelta(seconds=stale_s))
        .order_by(ModelDeployment.id, DeploymentReplica.index)).all()
    replicas = []
    for replica, row in rows:
        secret = keys.get(row.id, replica.index, replica.port)
        if replica.port is None or replica.node_id == exclude_node_id or secret is None:
            continue
        replicas.append({"id": replica_id(row, replica.index), "model": row.model.name, "tenant_id": row.tenant_id,
                         "host": replica.host or "127.0.0.1", "port": replica.port, "secret": secret,
                         "draining": replica.state == "draining", "slots": max(1, replica.slots or 1)})
    digest = hashlib.sha256(json.dumps([models, replicas], sort_keys=True).encode()).hexdigest()[:20]
    return {"version": digest, "models": models, "replicas": replicas}


def endpoints_fetch(sessions: Callable[[], Any], keys: ReplicaKeys, clock: Callable[[], datetime],
                    exclude_node_id: int | None = None) -> Callable[[str | None], Any]:
    """``gateway.discovery.Fetch`` for the control plane's in-process gateway: the same answer as
    ``GET /serving/endpoints``, read from the database in a worker thread (not on the event loop)."""
    import asyncio

    def load() -> dict[str, Any]:
        with sessions() as session:
            return endpoints(session, keys, clock(), exclude_node_id=exclude_node_id)

    async def fetch(version: str | None) -> dict[str, Any] | None:
        found = await asyncio.to_thread(load)
        return None if found["version"] == version else found

    return fetch


def demand_report(sessions: Callable[[], Any],
                  clock: Callable[[], datetime]) -> Callable[[list[dict[str, Any]], dict[str, Any] | None], Any]:
    """``gateway.discovery.Demand`` for the in-process gateway: ``POST /serving/demand``'s work,
    in a worker thread."""
    import asyncio

    from zhisuan.serving.autoscaler import add_demand, record_load
    from zhisuan.serving.schemas import DemandReport
    from zhisuan.store.base import transaction

    def store(wanted: list[dict[str, Any]], load: dict[str, Any] | None) -> None:
        report = DemandReport.model_validate({"demand": wanted, "load": load})
        with transaction(sessions) as session:  # type: ignore[arg-type]
            add_demand(session, report.demand)
            if report.load is not None:
                record_load(session, report.load, clock())

    async def report(wanted: list[dict[str, Any]], load: dict[str, Any] | None) -> None:
        await asyncio.to_thread(store, wanted, load)

    return report
