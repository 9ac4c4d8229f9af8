"""Placement against the live inventory.

One decision: (1) the process's fleet cache (``fleet_cache.FLEET_CACHE``) is validated against the
database in one short read and brought up to date — holds diffed in, or a rebuild when the inventory
changed; (2) ``LiveFleet.place`` decides on its arrays, exactly as ``core.placement.place`` would on the
snapshot (the engine the trace replay uses). ``live_snapshot`` hands the same structure's frozen
snapshot to the queue's admission cycle and to serving. ``cluster_snapshot`` is the rebuild-per-call
path, kept as the reference the cache is tested and benchmarked against.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session, selectinload

from zhisuan.catalog.loader import Catalog
from zhisuan.core.placement import (
    POLICIES,
    ClusterSnapshot,
    DeviceSnapshot,
    NodeSnapshot,
    Placement,
    PlacementRequest,
    Rejection,
)
from zhisuan.errors import InvalidInput, NotFound
from zhisuan.identity.access import Principal
from zhisuan.identity.models import Tenant
from zhisuan.inventory.models import Node
from zhisuan.inventory.service import resolve_model
from zhisuan.ledger.service import exclusive_node_tenants, held_node_resources, held_shares
from zhisuan.placement.fleet_cache import FLEET_CACHE
from zhisuan.placement.schemas import PlacementAnswer, PlacementQuery, Reason


def device_snapshot(catalog: Catalog, node: Node, held: Mapping[int, int]) -> tuple[DeviceSnapshot, ...]:
    devices = []
    for device in node.devices:
        model = catalog.get(device.model)
        tflops = model.per_device_tflops("bf16")
        devices.append(DeviceSnapshot(
            index=device.index, model=device.model, memory_mib=device.memory_mib,
            free_milli=max(0, 1000 - held.get(device.id, 0)), healthy=device.available,
            tflops_bf16=float(tflops) if tflops is not None else 0.0, stack=model.stack or "",
        ))
    return tuple(devices)


def cluster_snapshot(
    session: Session, catalog: Catalog, held: Mapping[int, int] | None = None,
    exclusive: Mapping[int, str] | None = None, held_cpu: Mapping[int, tuple[int, int]] | None = None,
) -> ClusterSnapshot:
    """Every node as the core sees it; node names are ``site/name`` (unique across the federation).

    ``held`` maps device id → milli held by allocations; ``exclusive`` maps node id → the tenant
    that leases it exclusively; ``held_cpu`` maps node id → (milli-cores, MiB) held by CPU/memory holds.
    """
    held, exclusive, held_cpu = held or {}, exclusive or {}, held_cpu or {}
    nodes = session.execute(
        select(Node).options(selectinload(Node.devices), selectinload(Node.site)).order_by(Node.id)
    ).scalars()
    return ClusterSnapshot(nodes=tuple(
        NodeSnapshot(
            name=f"{node.site.name}/{node.name}", site=node.site.name,
            cpu_milli_free=max(0, node.cpu_cores * 1000 - held_cpu.get(node.id, (0, 0))[0]),
            memory_mib_free=max(0, node.memory_mib - held_cpu.get(node.id, (0, 0))[1]),
            devices=device_snapshot(catalog, node, held), labels=dict(node.labels),
            healthy=node.status == "ready" and not node.drained and node.cordon_reason is None,
            exclusive_tenant=exclusive.get(node.id),
        )
        for node in nodes
    ))


def placement_request(catalog: Catalog, query: PlacementQuery, tenant: str | None) -> PlacementRequest:
    models = None
    if query.models is not None:
        models = frozenset(resolve_model(catalog, name, f"models.{i}") for i, name in enumerate(query.models))
    if query.devices > 1 and query.milli_per_device < 1000:
        raise InvalidInput("a share of a device (milli_per_device < 1000) is only possible with one device",
                           field="milli_per_device")
    return PlacementRequest(
        cpu_milli=round(query.cpu_cores * 1000), memory_mib=round(query.memory_gib * 1024),
        device_count=query.devices, milli_per_device=query.milli_per_device, allowed_models=models,
        min_device_memory_mib=round(query.min_device_memory_gib * 1024), min_device_tflops=query.min_device_tflops,
        stack=query.stack, tenant=tenant,
    )


def acting_tenant(session: Session, principal: Principal, query: PlacementQuery) -> str | None:
    """Tenants place as themselves; operators may name a tenant; providers place as nobody."""
    if principal.role == "tenant":
        tenant = session.get(Tenant, principal.tenant_id)
        return tenant.name if tenant else None
    if query.tenant and principal.is_operator:
        if session.execute(select(Tenant.id).where(Tenant.name == query.tenant)).first() is None:
            raise NotFound(f"tenant '{query.tenant}' not found", field="tenant")
        return query.tenant
    return None


def live_snapshot(session: Session, catalog: Catalog, now: datetime) -> ClusterSnapshot:
    """The fleet now: device shares and CPU/memory held in the allocation ledger subtracted, exclusive
    leases marked (from the process's fleet cache, validated against the database)."""
    with FLEET_CACHE.fleet(session, catalog, now) as fleet:
        return fleet.snapshot()


def rebuilt_snapshot(session: Session, catalog: Catalog, now: datetime) -> ClusterSnapshot:
    """``live_snapshot`` built from scratch (no cache): the reference for tests and benchmarks."""
    tenant_names = dict(session.execute(select(Tenant.id, Tenant.name)).all())
    exclusive = {node: tenant_names[tenant] for node, tenant in exclusive_node_tenants(session, now).items()}
    return cluster_snapshot(session, catalog, held=held_shares(session, now), exclusive=exclusive,
                            held_cpu=held_node_resources(session, now))


def preview(
    session: Session, catalog: Catalog, principal: Principal, query: PlacementQuery, now: datetime
) -> PlacementAnswer:
    """Where would this fit now — or, if nowhere, why not (per-node reasons)."""
    if query.policy not in POLICIES:
        raise InvalidInput(f"unknown policy '{query.policy}'; choose one of {', '.join(POLICIES)}", field="policy")
    request = placement_request(catalog, query, acting_tenant(session, principal, query))
    with FLEET_CACHE.fleet(session, catalog, now) as fleet:
        decision = fleet.place(request, policy=query.policy)
    return answer(decision, query.policy, reveal_nodes=principal.role != "tenant")


def answer(decision: Placement | Rejection, policy: str, reveal_nodes: bool) -> PlacementAnswer:
    if isinstance(decision, Rejection):
        return PlacementAnswer(placed=False, policy=policy, message=decision.message,
                               reasons=[Reason(reason=r, nodes=n) for r, n in decision.reasons])
    node = decision.node.partition("/")[2] if reveal_nodes else None
    where = f"{decision.site}/{node}" if node else f"site {decision.site}"
    return PlacementAnswer(
        placed=True, site=decision.site, node=node, device_indices=list(decision.device_indices),
        milli_per_device=decision.milli_per_device, policy=policy, feasible_nodes=decision.feasible_nodes,
        message=f"fits on {where}, devices {list(decision.device_indices)}",
    )
