"""The control plane's serving loop: replicas lost with their node, and autoscaling by load.

One pass (every ``autoscale_interval_s``, under the lease ``serving-autoscaler`` so one control-plane
process runs it):

1. load, in a short transaction, every active deployment's replicas with the load their runtime
   last reported (busy engine slots over slots; a replica not reported for ``fleet.STALE_AFTER_S``
   counts as not ready) and the gateways' reports of the last ``STALE_AFTER_S`` (``record_load``:
   requests each sent it and has not had answered, summed over gateways; their mean queue wait,
   weighted by the requests measured), its policy, cool-down clocks, the requests gateways could not route to it
   (``demand``), its tenant's quota room, and the replicas whose node the heartbeat monitor marked
   ``unreachable``;
2. decide in pure code (``core.autoscaling.decide``): repair to the floor (a fixed-size deployment's
   ``replicas``, an autoscaled one's ``min``), scale out or in within the bounds and cool-downs;
3. apply in a second short transaction, only while the lease is still ours: replicas on unreachable
   nodes become ``lost`` (their holds end; an event each), then each deployment whose replica count is
   still what was loaded is resized (``scaling.resize``: placement and the ledger out, draining in;
   an event each). A change placement refuses (the fleet is full) leaves the deployment as it was and
   records one ``blocked`` event (not one per pass).

Scale to zero: a deployment with ``min`` 0 drains its last replica after the scale-in cool-down.
A request for it then gets 503 with ``Retry-After`` at once from the gateway (not held: a cold start
takes seconds to minutes, longer than clients wait for a first byte) and the gateway reports the
miss (``add_demand``: in-process directly, standalone through ``POST /serving/demand``); the next
pass places a replica, and the client's retry lands on it once it is healthy.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import delete, or_, select, update
from sqlalchemy.orm import Session, selectinload, sessionmaker

from zhisuan.catalog.loader import Catalog
from zhisuan.core.autoscaling import Decision, Policy, ReplicaLoad, Snapshot, decide
from zhisuan.errors import Conflict
from zhisuan.inventory.models import Node
from zhisuan.serving import scaling, service
from zhisuan.serving.fleet import STALE_AFTER_S, replica_id
from zhisuan.serving.models import (
    HOLDING_REPLICA,
    DeploymentEvent,
    DeploymentReplica,
    GatewayReplicaLoad,
    ModelDeployment,
    ServedModel,
)
from zhisuan.serving.quotas import max_replicas, replicas_held
from zhisuan.serving.schemas import DemandItem, GatewayLoad
from zhisuan.store.base import transaction
from zhisuan.store.leases import acquire_lease, lease_is_held

log = logging.getLogger("zhisuan.serving.autoscaler")

LEASE = "serving-autoscaler"
SCALABLE = ("deploying", "running", "degraded")


@dataclass(frozen=True)
class Loaded:
    deployment_id: int
    name: str
    counted: int  # replicas counted when loaded: the apply re-checks it (someone may have scaled meanwhile)
    demand: int
    snapshot: Snapshot


def policy_of(row: ModelDeployment) -> Policy | None:
    if row.autoscale_min is None or row.autoscale_max is None or row.autoscale_target is None:
        return None
    return Policy(row.autoscale_min, row.autoscale_max, row.autoscale_target,
                  timedelta(seconds=row.scale_out_cooldown_s), timedelta(seconds=row.scale_in_cooldown_s),
                  target_kind=row.autoscale_target_kind or "in_flight_per_slot")


# (deployment id, replica index) -> the gateways' reports of it: (in flight, Σ wait × waits, Σ waits)
GatewaySums = dict[tuple[int, int], tuple[int, float, int]]


def gateway_sums(session: Session, now: datetime) -> GatewaySums:
    """The gateways' fresh reports summed per replica (stale ones: a gateway that went away)."""
    sums: GatewaySums = {}
    for row in session.execute(select(GatewayReplicaLoad).where(
            GatewayReplicaLoad.reported_at >= now - timedelta(seconds=STALE_AFTER_S))).scalars():
        in_flight, weighted, waits = sums.get((row.deployment_id, row.index), (0, 0.0, 0))
        sums[(row.deployment_id, row.index)] = (in_flight + row.in_flight, weighted + row.queue_wait_s * row.waits,
                                                waits + row.waits)
    return sums


def replica_load(replica: DeploymentReplica, now: datetime, sums: GatewaySums | None = None) -> ReplicaLoad:
    fresh = replica.reported_at is not None and replica.reported_at >= now - timedelta(seconds=STALE_AFTER_S)
    in_flight, weighted, waits = (sums or {}).get((replica.deployment_id, replica.index), (0, 0.0, 0))
    return ReplicaLoad(replica.in_flight, max(1, replica.slots), replica.state == "healthy" and fresh,
                       in_flight, weighted / waits if waits else 0.0, waits)


def load(session: Session, now: datetime) -> tuple[list[Loaded], list[int]]:
    """(each scalable deployment's snapshot, ids of replicas on unreachable nodes to mark lost)."""
    unreachable = set(session.execute(select(Node.id).where(Node.status == "unreachable")).scalars())
    rows = session.execute(select(ModelDeployment).where(ModelDeployment.status.in_(service.ACTIVE_DEPLOYMENT))
                           .options(selectinload(ModelDeployment.replica_rows))
                           .order_by(ModelDeployment.id)).scalars().all()
    lost = [r.id for row in rows for r in row.replica_rows
            if r.state in HOLDING_REPLICA and r.node_id in unreachable]
    rooms: dict[int, int] = {}
    sums = gateway_sums(session, now)
    loaded = []
    for row in rows:
        if row.status not in SCALABLE:
            continue
        live = [r for r in scaling.counted(row) if r.id not in lost]
        room = None
        if row.tenant_id is not None:
            if row.tenant_id not in rooms:
                freed = sum(1 for other in rows if other.tenant_id == row.tenant_id
                            for r in other.replica_rows if r.id in lost)
                rooms[row.tenant_id] = max_replicas(session, row.tenant_id) - replicas_held(session, row.tenant_id) \
                    + freed
            room = rooms[row.tenant_id]
        snap = Snapshot(row.replicas, policy_of(row), tuple(replica_load(r, now, sums) for r in live), now,
                        row.last_scale_out_at, row.last_scale_in_at, row.demand, room)
        loaded.append(Loaded(row.id, row.name, len(live), row.demand, snap))
    return loaded, lost


def mark_lost(session: Session, replica_ids: Iterable[int], now: datetime) -> list[str]:
    """Replicas on nodes that are (still) unreachable become ``lost``; what was marked, for the log.
    The heartbeat monitor may call this with the replicas of the nodes it just marked."""
    marked = []
    for replica in session.execute(select(DeploymentReplica).where(
            DeploymentReplica.id.in_(list(replica_ids)), DeploymentReplica.state.in_(HOLDING_REPLICA))).scalars():
        if replica.node_id is None or not service.unreachable_nodes(session, [replica.node_id]):
            continue  # its node came back in between
        row = replica.deployment
        service.lose_replica(session, row, replica, now)
        service.refresh_status(row, now)
        marked.append(f"{row.name}/{replica.index}")
    return marked


def mark_node_replicas_lost(session: Session, node_ids: Iterable[int], now: datetime) -> list[str]:
    """For the heartbeat monitor, in its own transaction right after it marks ``node_ids`` unreachable:
    their replicas become ``lost`` at once (else this loop does it within ``autoscale_interval_s``)."""
    ids = list(node_ids)
    replicas = session.execute(select(DeploymentReplica.id).where(
        DeploymentReplica.node_id.in_(ids), DeploymentReplica.state.in_(HOLDING_REPLICA))).scalars().all()
    return mark_lost(session, replicas, now)


def apply_decision(session: Session, catalog: Catalog, item: Loaded, decision: Decision, now: datetime) -> str | None:
    row = session.get(ModelDeployment, item.deployment_id)
    if row is None or row.status not in SCALABLE or len(scaling.counted(row)) != item.counted:
        return None  # undeployed or scaled by hand since the load: decide again next pass
    session.execute(update(ModelDeployment).where(ModelDeployment.id == row.id)
                    .values(demand=ModelDeployment.demand - item.demand).execution_options(synchronize_session=False))
    if decision.desired == len(scaling.counted(row)):
        return None
    try:
        with session.begin_nested():
            scaling.resize(session, catalog, row, decision.desired, now, decision.kind, decision.reason)
        return f"{row.name}: {item.counted} → {decision.desired} ({decision.reason})"
    except Conflict as refused:
        session.refresh(row)
        last = session.execute(select(DeploymentEvent.kind).where(DeploymentEvent.deployment_id == row.id)
                               .order_by(DeploymentEvent.id.desc()).limit(1)).scalar_one_or_none()
        if last != "blocked":
            scaling.record_event(session, row, "blocked", item.counted, decision.desired,
                                 f"{decision.reason}, but: {refused.message}", now)
        return None


def autoscale_pass(sessions: sessionmaker[Session], catalog: Catalog, now: datetime, holder: str,
                   ttl: timedelta = timedelta(seconds=30)) -> list[str]:
    """One pass (see the module's docstring); what changed, for the log and the tests."""
    with transaction(sessions) as session:
        token = acquire_lease(session, LEASE, holder, now, ttl=ttl)
        if token is None:
            return []
        loaded, lost = load(session, now)
    decisions = [(item, decide(item.snapshot)) for item in loaded]
    changing = [(item, d) for item, d in decisions if d.desired != item.counted or item.demand]
    if not lost and not changing:
        return []
    with transaction(sessions) as session:
        if not lease_is_held(session, LEASE, token, now):
            return []
        changes = [f"lost {name}" for name in mark_lost(session, lost, now)]
        session.flush()
        session.expire_all()  # lost replicas changed the counts the re-checks read
        for item, decision in changing:
            done = apply_decision(session, catalog, item, decision, now)
            if done is not None:
                changes.append(done)
    for change in changes:
        log.info("serving: %s", change)
    return changes


def add_demand(session: Session, demand: Iterable[DemandItem]) -> None:
    """Requests that found no replica (model, the caller's tenant, how many): counted on
    the public deployments of that model and the caller's own, so a deployment at zero starts one."""
    for item in demand:
        mine = ModelDeployment.tenant_id.is_(None) if item.tenant_id is None else \
            (ModelDeployment.tenant_id.is_(None) | (ModelDeployment.tenant_id == item.tenant_id))
        session.execute(update(ModelDeployment).where(
            ModelDeployment.model_id.in_(select(ServedModel.id).where(ServedModel.name == item.model)),
            ModelDeployment.status.in_(SCALABLE), ModelDeployment.autoscale_min == 0, mine)
            .values(demand=ModelDeployment.demand + item.requests).execution_options(synchronize_session=False))


# A gateway's rows are dropped this long after its last report (it went away; the autoscaler
# ignores them after ``STALE_AFTER_S`` already).
FORGET_GATEWAY_AFTER = timedelta(minutes=10)


def record_load(session: Session, load: GatewayLoad, now: datetime) -> int:
    """Replace the gateway's load rows with this report (replicas it names by their endpoint id;
    ids of no active deployment's replica are ignored); how many rows were written."""
    session.execute(delete(GatewayReplicaLoad).where(or_(GatewayReplicaLoad.gateway == load.gateway,
                                                         GatewayReplicaLoad.reported_at < now - FORGET_GATEWAY_AFTER)))
    named = {item.replica: item for item in load.replicas}
    if not named:
        return 0
    rows = session.execute(select(DeploymentReplica.index, ModelDeployment).join(ModelDeployment).where(
        ModelDeployment.status.in_(service.ACTIVE_DEPLOYMENT),
        DeploymentReplica.state.in_(HOLDING_REPLICA))).all()
    written = 0
    for index, row in rows:
        item = named.get(replica_id(row, index))
        if item is not None:
            session.add(GatewayReplicaLoad(gateway=load.gateway, deployment_id=row.id, index=index,
                                           in_flight=item.in_flight, queued=item.queued,
                                           queue_wait_s=item.queue_wait_s, waits=item.waits, reported_at=now))
            written += 1
    return written
