"""The model registry and deployments: register a model, deploy N replicas, undeploy.

Deploying is all-or-nothing. In one transaction, for each replica in turn: take the live snapshot
(devices held in the allocation ledger and CPU/memory held by running replicas subtracted), ask the
placement core (``core.placement.place``, the same engine as the trace replay and the placement
preview) for a node, record the replica, and hold its devices with allocation rows (purpose
``service``, ref ``deployment:<id>/<index>``) through the ledger (``ledger.service.hold_devices``). If any
replica does not fit, the whole deployment is refused with the placement engine's per-node reasons
and nothing is written. Before placing, a replica is sized (``engines.sizing``: never below its
engine's floor and its weights, whatever was declared) and a tenant's replica quota is checked
(``serving.quotas``); deployment names are unique per owner, so a clash names only the caller's own.

Who pays for the devices: a tenant's own deployment holds them for that tenant (billable device
time, or inside the tenant's lease when the node is one it leases); the platform's public MaaS
holds them for the reserved tenant ``platform-maas``, not billable — the platform recovers that
cost through token prices.

Undeploying: replicas a runtime has started are drained by that runtime (it stops new traffic,
lets in-flight requests finish, stops the engine, then reports them stopped); replicas nobody
started stop at once. A stopped replica's allocations end at that moment.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from datetime import datetime

from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, selectinload

from zhisuan.billing import models as b
from zhisuan.catalog.loader import Catalog
from zhisuan.core.placement import ClusterSnapshot, PlacementRequest, Rejection, place
from zhisuan.core.refs import row_id
from zhisuan.engines.models import weights_size
from zhisuan.engines.profiles import ENGINE_STACKS
from zhisuan.engines.sizing import replica_size
from zhisuan.errors import Conflict, Forbidden, InvalidInput, NotFound
from zhisuan.identity import audit
from zhisuan.identity.access import Principal, require_role
from zhisuan.identity.models import Tenant
from zhisuan.identity.service import by_ref, flush_or_conflict
from zhisuan.inventory.models import Node, Site
from zhisuan.ledger.service import Window, hold_cpu, hold_devices, lock_nodes
from zhisuan.placement.service import live_snapshot
from zhisuan.serving import schemas as s
from zhisuan.serving.models import (
    ENDED_REPLICA,
    RUNNING_REPLICA,
    DeploymentEvent,
    DeploymentReplica,
    ModelDeployment,
    ServedModel,
)
from zhisuan.serving.quotas import check_replica_quota

PLATFORM_TENANT = "platform-maas"
ACTIVE_DEPLOYMENT = ("deploying", "running", "degraded", "draining")
PLACEMENT_POLICY = "zhisuan"
# The catalog's names of the stacks the engines run on ("cpu" means no accelerator).
CATALOG_STACK = {"cpu": "cpu", "cuda": "CUDA", "cann": "CANN"}


# ----------------------------------------------------------------------------- registry


def register_model(session: Session, principal: Principal, body: s.ModelRegister) -> ServedModel:
    require_role(principal, "operator")
    engine_stacks = [CATALOG_STACK[stack] for stack in ENGINE_STACKS[body.engine]]
    stacks = body.stacks if body.stacks is not None else engine_stacks[:1]
    for n, stack in enumerate(stacks):
        if stack.lower() not in {s.lower() for s in engine_stacks}:
            raise InvalidInput(f"engine {body.engine} runs on {' or '.join(engine_stacks)}, not {stack}",
                               field=f"stacks.{n}")
    if body.engine == "llama.cpp" and not body.source.endswith(".gguf"):
        raise InvalidInput("llama.cpp serves GGUF files: source must end in .gguf", field="source")
    if session.execute(select(ServedModel.id).where(ServedModel.name == body.name)).first():
        raise Conflict(f"a model named '{body.name}' is already registered", field="name")
    measured = weights_size(body.source)
    sizes = [size for size in (measured, body.weights_bytes) if size is not None]
    row = ServedModel(name=body.name, source=body.source, engine=body.engine, context_length=body.context_length,
                      stacks=stacks, embeddings=body.embeddings, extra_args=list(body.extra_args),
                      description=body.description, weights_bytes=max(sizes) if sizes else None)
    session.add(row)
    session.flush()
    audit.record(session, principal, "model.register", "model", body.name, detail={"engine": body.engine})
    return row


def list_models(session: Session) -> list[ServedModel]:
    return list(session.execute(select(ServedModel).order_by(ServedModel.name)).scalars())


def get_model(session: Session, ref: str) -> ServedModel:
    row: ServedModel = by_ref(session, ServedModel, ref, "model")
    return row


def delete_model(session: Session, principal: Principal, ref: str) -> None:
    require_role(principal, "operator")
    row = get_model(session, ref)
    in_use = session.execute(select(ModelDeployment.name).where(
        ModelDeployment.model_id == row.id, ModelDeployment.status.in_(ACTIVE_DEPLOYMENT))).scalars().first()
    if in_use:
        raise Conflict(f"model '{row.name}' is served by deployment '{in_use}': undeploy it first", field="model")
    session.delete(row)
    flush_or_conflict(session, f"model '{row.name}' is still referenced by past deployments")
    audit.record(session, principal, "model.delete", "model", row.name)


# ----------------------------------------------------------------------------- deploying


def deployment_owner(session: Session, principal: Principal, body: s.DeploymentCreate) -> Tenant | None:
    """Tenants deploy for themselves; operators for a named tenant or for the platform (None)."""
    require_role(principal, "operator", "tenant")
    if principal.role == "tenant":
        own: Tenant = session.get_one(Tenant, principal.tenant_id)
        if body.tenant is not None and body.tenant not in (own.name, str(own.id)):
            raise Forbidden("a tenant deploys only for itself")
        return own
    if body.tenant is None:
        return None
    tenant: Tenant = by_ref(session, Tenant, body.tenant, "tenant")
    return tenant


def platform_tenant(session: Session) -> Tenant:
    """The reserved tenant holding the platform's own MaaS capacity (created on first use)."""
    query = select(Tenant).where(Tenant.name == PLATFORM_TENANT)
    row = session.execute(query).scalar_one_or_none()
    if row is not None:
        return row
    try:
        # Two first public deployments may race to create it: the loser's insert (in a savepoint)
        # fails on the unique name, and it reads the winner's row instead.
        with session.begin_nested():
            row = Tenant(name=PLATFORM_TENANT, display_name="the platform's public MaaS (holds its replicas' devices)")
            session.add(row)
        return row
    except IntegrityError:
        return session.execute(query).scalar_one()


def deployment_name(session: Session, body: s.DeploymentCreate, model: ServedModel, owner: Tenant | None) -> str:
    """Names are unique per owner: only the owner's own deployments can clash (and be named)."""
    owner_id = owner.id if owner else None
    mine = ModelDeployment.tenant_id == owner_id if owner_id is not None else ModelDeployment.tenant_id.is_(None)
    taken = set(session.execute(select(ModelDeployment.name).where(mine)).scalars())
    if body.name is not None:
        if body.name in taken:
            raise Conflict(f"you already have a deployment named '{body.name}'", field="name")
        return body.name
    base = re.sub(r"[^a-z0-9-]+", "-", model.name.lower()).strip("-")[:56] or "model"
    name, n = base, 1
    while name in taken:
        n += 1
        name = f"{base}-{n}"
    return name


def accelerator_stack(stacks: list[str]) -> str | None:
    """The first stack of a model that is not the CPU (what a replica on devices runs), if any."""
    return next((s for s in stacks if s.lower() != "cpu"), None)


def check_shape(body: s.DeploymentCreate, model: ServedModel) -> str | None:
    """The catalog stack a replica's devices must run (None for a CPU replica): the model's first
    accelerator stack (llama.cpp may run on the CPU or on NVIDIA GPUs)."""
    stack = accelerator_stack(model.stacks) or "cpu"
    if body.devices_per_replica == 0:
        if "cpu" not in {s.lower() for s in model.stacks}:
            raise InvalidInput(f"engine {model.engine} needs accelerators: set devices_per_replica ≥ 1",
                               field="devices_per_replica")
        return None
    if stack == "cpu":
        raise InvalidInput(f"engine {model.engine} runs on CPU: devices_per_replica must be 0",
                           field="devices_per_replica")
    if body.milli_per_device < 1000 and body.devices_per_replica > 1:
        raise InvalidInput("a share of a device (milli_per_device < 1000) is only possible with one device",
                           field="milli_per_device")
    return stack


def create_deployment(session: Session, catalog: Catalog, principal: Principal, body: s.DeploymentCreate,
                      now: datetime) -> ModelDeployment:
    model = get_model(session, body.model)
    stack = check_shape(body, model)
    owner = deployment_owner(session, principal, body)
    site = by_ref(session, Site, body.site, "site") if body.site is not None else None
    if owner is not None:
        check_replica_quota(session, owner, body.replicas)
    size = replica_size(model.engine, model.weights_bytes if model.weights_bytes is not None else
                        weights_size(model.source), round(body.cpu_cores * 1000), round(body.memory_gib * 1024))
    row = ModelDeployment(
        name=deployment_name(session, body, model, owner), model_id=model.id, tenant_id=owner.id if owner else None,
        replicas=body.replicas, devices_per_replica=body.devices_per_replica, milli_per_device=body.milli_per_device,
        cpu_milli=size.cpu_milli, memory_mib=size.memory_mib,
        site_id=site.id if site else None, status="deploying", message="placed; waiting for replicas to start",
        created_at=now)
    session.add(row)
    session.flush()
    holder = owner or platform_tenant(session)
    request = placement_request(row, stack, owner)
    lock_candidates(session, site)
    for index in range(body.replicas):
        place_replica(session, catalog, row, index, request, site, holder, now)
    audit.record(session, principal, "deployment.create", "deployment", row.name,
                 tenant_id=row.tenant_id, detail={"model": model.name, "replicas": body.replicas})
    return row


def placement_request(row: ModelDeployment, stack: str | None, owner: Tenant | None) -> PlacementRequest:
    """What one replica of ``row`` asks the placement engine for."""
    return PlacementRequest(
        cpu_milli=row.cpu_milli, memory_mib=row.memory_mib, device_count=row.devices_per_replica,
        milli_per_device=row.milli_per_device if row.devices_per_replica else 1000, stack=stack,
        tenant=owner.name if owner else None)


def lock_candidates(session: Session, site: Site | None) -> None:
    """Lock the candidate nodes (ascending ids, as every ledger writer does) before reading the snapshot:
    a racing deployment then places on what the winner left instead of failing on a stale view, and
    replicas locking node after node cannot deadlock with another deployment."""
    candidates = select(Node.id).where(Node.site_id == site.id) if site is not None else select(Node.id)
    lock_nodes(session, session.execute(candidates).scalars())


def place_replica(session: Session, catalog: Catalog, row: ModelDeployment, index: int, request: PlacementRequest,
                  site: Site | None, holder: Tenant, now: datetime) -> DeploymentReplica:
    """Place one replica on the snapshot as it is *now* (earlier replicas' holdings included)."""
    snapshot = serving_snapshot(session, catalog, now, site.name if site else None)
    decision = place(snapshot, request, policy=PLACEMENT_POLICY)
    if isinstance(decision, Rejection):
        # The rejection's message already counts nodes per reason ("3 nodes: not enough free CPU; …").
        # indexes keep growing as replicas are replaced: "replica 8 of 3" would read as a count
        which = (f"replica {index + 1} of {row.replicas}" if index < row.replicas
                 else f"replacement replica #{index} ({row.replicas} wanted)")
        raise Conflict(f"{which} does not fit: {decision.message}", field="replicas")
    site_name, _, node_name = decision.node.partition("/")
    node = session.execute(select(Node).join(Site).where(Site.name == site_name, Node.name == node_name)).scalar_one()
    replica = DeploymentReplica(deployment_id=row.id, index=index, node_id=node.id,
                                device_indices=list(decision.device_indices), cpu_milli=row.cpu_milli,
                                memory_mib=row.memory_mib, state="pending", updated_at=now)
    session.add(replica)
    session.flush()
    ref = allocation_ref(row.id, index)
    platform = holder.name == PLATFORM_TENANT
    if decision.device_indices:
        hold_devices(session, holder.id, node, list(decision.device_indices), decision.milli_per_device, Window(now),
                     purpose="service", ref=ref, billable=False if platform else None)
    # Every replica holds its cores and memory in the ledger, so no holder can oversubscribe a node's CPU.
    # A device replica's devices bill it (its CPU row is not billable); a CPU-only replica is billed in
    # core-hours like any other allocation.
    hold_cpu(session, holder.id, node, row.cpu_milli, row.memory_mib, Window(now), purpose="service", ref=ref,
             billable=False if platform or decision.device_indices else None)
    return replica


def allocation_ref(deployment_id: int, index: int) -> str:
    return f"deployment:{deployment_id}/{index}"


def serving_snapshot(session: Session, catalog: Catalog, now: datetime, site: str | None) -> ClusterSnapshot:
    """The live snapshot (ledger holds subtracted, CPU and memory included), limited to ``site``."""
    snapshot = live_snapshot(session, catalog, now)
    if site is None:
        return snapshot
    return ClusterSnapshot(nodes=tuple(node for node in snapshot.nodes if node.site == site))


# ----------------------------------------------------------------------------- reading


def deployment_query(principal: Principal):  # type: ignore[no-untyped-def]
    """Operators see every deployment; tenants their own and the platform's public ones; providers none."""
    query = select(ModelDeployment).options(selectinload(ModelDeployment.replica_rows),
                                            selectinload(ModelDeployment.model)).order_by(ModelDeployment.id)
    if principal.role == "tenant":
        return query.where((ModelDeployment.tenant_id == principal.tenant_id) | ModelDeployment.tenant_id.is_(None))
    require_role(principal, "operator")
    return query


def list_deployments(session: Session, principal: Principal, include_stopped: bool = False) -> list[ModelDeployment]:
    query = deployment_query(principal)
    if not include_stopped:
        query = query.where(ModelDeployment.status.in_(ACTIVE_DEPLOYMENT))
    return list(session.execute(query).scalars())


def get_deployment(session: Session, principal: Principal, ref: str) -> ModelDeployment:
    """By id or name. Names are unique per owner: a tenant's own deployment wins over a public one
    of the same name; an operator naming several gets a conflict asking for the id."""
    number = row_id(ref, "deployment")
    column = ModelDeployment.id if number is not None else ModelDeployment.name
    value: int | str = number if number is not None else ref
    rows: list[ModelDeployment] = list(session.execute(deployment_query(principal).where(column == value)).scalars())
    if principal.role == "tenant":
        rows.sort(key=lambda row: row.tenant_id != principal.tenant_id)
        rows = rows[:1]
    if not rows:
        raise NotFound(f"deployment '{ref}' not found", field="deployment")
    if len(rows) > 1:
        ids = ", ".join(str(row.id) for row in rows)
        raise Conflict(f"several deployments are named '{ref}' (ids {ids}): name it by id", field="deployment")
    return rows[0]


def deployment_out(session: Session, row: ModelDeployment, principal: Principal) -> s.DeploymentOut:
    """Operators see where replicas run (node, devices, loopback port); a tenant sees its replicas'
    state and load only: node and site names are the provider's, the port is the gateway's."""
    operator = principal.is_operator
    node_ids = {r.node_id for r in row.replica_rows if r.node_id is not None} if operator else set()
    labels = {node_id: f"{site}/{name}" for node_id, name, site in session.execute(
        select(Node.id, Node.name, Site.name).join(Site).where(Node.id.in_(node_ids)))} if node_ids else {}
    tenant = session.get(Tenant, row.tenant_id) if row.tenant_id is not None else None
    owns = operator or (row.tenant_id is not None and row.tenant_id == principal.tenant_id)
    site = session.get(Site, row.site_id) if row.site_id is not None and owns else None
    return s.DeploymentOut(
        id=row.id, name=row.name, model=row.model.name, engine=row.model.engine, tenant=tenant.name if tenant else None,
        replicas=row.replicas, devices_per_replica=row.devices_per_replica, milli_per_device=row.milli_per_device,
        cpu_cores=row.cpu_milli / 1000, memory_gib=row.memory_mib / 1024, site=site.name if site else None,
        status=row.status, message=row.message, created_at=row.created_at, stopped_at=row.stopped_at,
        replica_states=[s.ReplicaOut(index=r.index, node=labels.get(r.node_id) if r.node_id else None,
                                     devices=list(r.device_indices) if operator else [], state=r.state,
                                     port=r.port if operator else None, restarts=r.restarts,
                                     cpu_cores=r.cpu_milli / 1000, memory_gib=r.memory_mib / 1024,
                                     in_flight=r.in_flight, load=round(r.in_flight / max(1, r.slots), 3),
                                     message=r.message, updated_at=r.updated_at, reported_at=r.reported_at)
                        for r in row.replica_rows],
        autoscale=s.AutoscaleOut(min=row.autoscale_min, max=row.autoscale_max, target=row.autoscale_target or 0.0,
                                 target_kind=row.autoscale_target_kind or "in_flight_per_slot",
                                 scale_out_cooldown_s=row.scale_out_cooldown_s,
                                 scale_in_cooldown_s=row.scale_in_cooldown_s,
                                 last_scale_out_at=row.last_scale_out_at, last_scale_in_at=row.last_scale_in_at)
        if row.autoscale_min is not None and row.autoscale_max is not None else None)


# ----------------------------------------------------------------------------- undeploying and runtime reports


def undeploy(session: Session, principal: Principal, ref: str, now: datetime) -> ModelDeployment:
    row = get_deployment(session, principal, ref)
    if principal.role == "tenant" and row.tenant_id != principal.tenant_id:
        raise Forbidden("only the platform's operators undeploy the public MaaS")
    if row.status in ("stopped", "failed"):
        raise Conflict(f"deployment '{row.name}' is already {row.status}", field="deployment")
    row.status, row.message = "draining", "undeploying: draining replicas"
    unreachable = unreachable_nodes(session, {r.node_id for r in row.replica_rows if r.node_id is not None})
    for replica in row.replica_rows:
        if replica.state not in ENDED_REPLICA and replica.node_id in unreachable:
            lose_replica(session, row, replica, now)  # nobody is there to drain it
        elif replica.state in RUNNING_REPLICA:
            replica.state, replica.updated_at = "draining", now
        elif replica.state == "pending":
            stop_replica(session, row, replica, now, "undeployed before it started")
    refresh_status(row, now)
    audit.record(session, principal, "deployment.undeploy", "deployment", row.name, tenant_id=row.tenant_id)
    return row


def stop_replica(session: Session, row: ModelDeployment, replica: DeploymentReplica, now: datetime,
                 message: str) -> None:
    """The replica no longer runs: release its devices (its allocations end now)."""
    replica.state, replica.message, replica.updated_at = "stopped", message, now
    session.execute(update(b.Allocation).where(
        b.Allocation.ref == allocation_ref(row.id, replica.index), b.Allocation.purpose == "service",
        b.Allocation.end.is_(None)).values(end=now).execution_options(synchronize_session=False))


def unreachable_nodes(session: Session, node_ids: Iterable[int]) -> set[int]:
    ids = set(node_ids)
    return set(session.execute(select(Node.id).where(Node.id.in_(ids), Node.status == "unreachable")).scalars()) \
        if ids else set()


def lose_replica(session: Session, row: ModelDeployment, replica: DeploymentReplica, now: datetime) -> None:
    """Its node is unreachable: it is ``lost`` and its holds end (an agent that comes back is no longer
    assigned it and stops what it left running), with an event on the deployment."""
    before = replica.state
    stop_replica(session, row, replica, now, "its node became unreachable")
    replica.state = "lost"
    session.add(DeploymentEvent(deployment_id=row.id, at=now, kind="replica_lost", replicas_from=row.replicas,
                                replicas_to=row.replicas,
                                reason=f"replica {replica.index} ({before}) lost: its node became unreachable"))


def refresh_status(row: ModelDeployment, now: datetime) -> None:
    """The deployment's status from its replicas' states (draining ends in stopped)."""
    if row.status == "draining":
        if all(r.state in ENDED_REPLICA for r in row.replica_rows):
            row.status, row.message, row.stopped_at = "stopped", "undeployed", now
        return
    # Replicas scaled in (draining, stopped) or lost with their node no longer count: the
    # deployment is as healthy as the ones it now has.
    states = [r.state for r in row.replica_rows if r.state not in ("draining", "stopped", "lost")]
    healthy = states.count("healthy")
    progress = f"{healthy} of {len(states)} replicas healthy"
    if not states:
        zero = row.replicas == 0
        row.status = "running" if zero else "degraded"
        row.message = "scaled to zero: the first request starts a replica" if zero else \
            f"0 of {row.replicas} replicas: replacing them"
    elif all(state == "failed" for state in states):
        row.status, row.message, row.stopped_at = "failed", "every replica failed to start", now
    elif healthy == len(states):
        row.status, row.message = "running", progress
    elif any(state in ("unhealthy", "failed") for state in states):
        row.status, row.message = "degraded", progress
    else:  # the rest are still pending or starting
        row.status, row.message = "deploying", progress


def replicas_on_node(session: Session, node_id: int) -> Iterable[tuple[ModelDeployment, DeploymentReplica]]:
    """Every replica placed on one node of an active deployment, with its deployment (for a runtime)."""
    rows = session.execute(
        select(DeploymentReplica, ModelDeployment).join(ModelDeployment)
        .options(selectinload(ModelDeployment.model))
        .where(DeploymentReplica.node_id == node_id, ModelDeployment.status.in_(ACTIVE_DEPLOYMENT))
        .order_by(ModelDeployment.id, DeploymentReplica.index)).all()
    return [(deployment, replica) for replica, deployment in rows]
