"""Changing a deployment's size: by hand (``PATCH /deployments/{id}``), by the autoscaler, or to
replace replicas lost with their node.

Scaling out places each new replica exactly as a deployment does (``service.place_replica``: the
live snapshot, the placement engine, allocation rows in the ledger under ``deployment:<id>/<index>``,
with a fresh index); a replica that does not fit refuses the whole change (409 naming ``replicas``)
and nothing is written. A tenant's deployment cannot go beyond the tenant's replica quota (409
naming ``replicas``, or ``autoscale.max``/``autoscale.min`` when setting autoscaling).

Scaling in drains: the chosen replicas become ``draining`` (gateways stop sending them new
requests, their runtime lets in-flight requests finish, stops the engine and reports it stopped —
only then do their allocations end). Replicas not yet started go first (they stop at once), then
unhealthy ones, then the least loaded, newest first.

Every change is a ``DeploymentEvent`` (what, from how many to how many, why), shown by
``GET /deployments/{id}`` and ``zhisuan deployment show``.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from zhisuan.catalog.loader import Catalog
from zhisuan.errors import Conflict, Forbidden, InvalidInput
from zhisuan.identity import audit
from zhisuan.identity.access import Principal
from zhisuan.identity.models import Tenant
from zhisuan.inventory.models import Site
from zhisuan.serving import schemas as s
from zhisuan.serving import service
from zhisuan.serving.models import ENDED_REPLICA, DeploymentEvent, DeploymentReplica, ModelDeployment
from zhisuan.serving.quotas import check_replica_quota, max_replicas, replicas_held

# Replicas that count towards a deployment's size: not scaled in (draining), not over.
COUNTED_REPLICA = ("pending", "starting", "healthy", "unhealthy")
# Scale-in order: not started yet, then unhealthy, then starting, then healthy.
DRAIN_FIRST = {"pending": 0, "unhealthy": 1, "starting": 2, "healthy": 3}


def counted(row: ModelDeployment) -> list[DeploymentReplica]:
    return [r for r in row.replica_rows if r.state in COUNTED_REPLICA]


def record_event(session: Session, row: ModelDeployment, kind: str, before: int, after: int, reason: str,
                 now: datetime) -> None:
    session.add(DeploymentEvent(deployment_id=row.id, at=now, kind=kind, replicas_from=before, replicas_to=after,
                                reason=reason[:1000]))


def scale_out(session: Session, catalog: Catalog, row: ModelDeployment, more: int, now: datetime) -> None:
    """Place ``more`` replicas (all or none: the caller's transaction rolls back on a refusal)."""
    owner = session.get(Tenant, row.tenant_id) if row.tenant_id is not None else None
    if owner is not None:
        check_replica_quota(session, owner, more)
    site = session.get(Site, row.site_id) if row.site_id is not None else None
    stack = service.accelerator_stack(row.model.stacks) if row.devices_per_replica else None
    request = service.placement_request(row, stack, owner)
    holder = owner or service.platform_tenant(session)
    service.lock_candidates(session, site)
    next_index = max((r.index for r in row.replica_rows), default=-1) + 1
    for index in range(next_index, next_index + more):
        replica = service.place_replica(session, catalog, row, index, request, site, holder, now)
        row.replica_rows.append(replica)


def scale_in(session: Session, row: ModelDeployment, fewer: int, now: datetime) -> list[int]:
    """Drain ``fewer`` replicas (see the module's docstring for which); their indices."""
    order = sorted(counted(row), key=lambda r: (DRAIN_FIRST[r.state], r.in_flight, -r.index))
    for replica in order[:fewer]:
        if replica.state == "pending":
            service.stop_replica(session, row, replica, now, "scaled in before it started")
        else:
            replica.state, replica.message, replica.updated_at = "draining", "scaled in: draining", now
    return [r.index for r in order[:fewer]]


def resize(session: Session, catalog: Catalog, row: ModelDeployment, to: int, now: datetime, kind: str,
           reason: str) -> None:
    """Move ``row`` to ``to`` counted replicas, record the event, refresh its status."""
    before = len(counted(row))
    row.replicas = to
    if to > before:
        scale_out(session, catalog, row, to - before, now)
        row.last_scale_out_at = now
    elif to < before:
        scale_in(session, row, before - to, now)
        row.last_scale_in_at = now
    row.replicas = to
    if to != before:
        record_event(session, row, kind, before, to, reason, now)
    service.refresh_status(row, now)


# ----------------------------------------------------------------------------- the API


def quota_limit(session: Session, row: ModelDeployment) -> int | None:
    """The most replicas this deployment may have under its tenant's quota (None: the public MaaS)."""
    if row.tenant_id is None:
        return None
    others = replicas_held(session, row.tenant_id) - sum(1 for r in row.replica_rows if r.state not in ENDED_REPLICA)
    return max_replicas(session, row.tenant_id) - others


def set_autoscale(session: Session, row: ModelDeployment, body: s.AutoscaleSet | None) -> None:
    if body is None:
        row.autoscale_min = row.autoscale_max = row.autoscale_target = None
        return
    if body.min > body.max:
        raise InvalidInput(f"min ({body.min}) is above max ({body.max})", field="autoscale.min")
    limit = quota_limit(session, row)
    if limit is not None and body.max > limit:
        raise Conflict(f"the tenant's replica quota leaves room for {limit} replicas in this deployment, "
                       f"not {body.max} (an operator can raise the quota)", field="autoscale.max")
    row.autoscale_min, row.autoscale_max, row.autoscale_target = body.min, body.max, body.target
    row.autoscale_target_kind = body.target_kind
    row.scale_out_cooldown_s, row.scale_in_cooldown_s = body.scale_out_cooldown_s, body.scale_in_cooldown_s


def target_text(policy: s.AutoscaleSet) -> str:
    return f"{policy.target:g}s queue wait" if policy.target_kind == "queue_time_s" else f"{policy.target:g}/slot"


def patch_deployment(session: Session, catalog: Catalog, principal: Principal, ref: str, body: s.DeploymentPatch,
                     now: datetime) -> ModelDeployment:
    """Scale by hand (``replicas``) and/or set or clear (``autoscale: null``) autoscaling."""
    row = service.get_deployment(session, principal, ref)
    if principal.role == "tenant" and row.tenant_id != principal.tenant_id:
        raise Forbidden("only the platform's operators scale the public MaaS")
    if row.status not in ("deploying", "running", "degraded"):
        raise Conflict(f"deployment '{row.name}' is {row.status}: it cannot be scaled", field="deployment")
    detail: dict[str, object] = {}
    if "autoscale" in body.model_fields_set:
        set_autoscale(session, row, body.autoscale)
        detail["autoscale"] = body.autoscale.model_dump() if body.autoscale else None
        what = (f"autoscaling {body.autoscale.min}..{body.autoscale.max} at {target_text(body.autoscale)}"
                if body.autoscale else "autoscaling cleared: fixed size")
        current = len(counted(row))
        record_event(session, row, "autoscale", current, current, what, now)
    to = body.replicas
    if to is None and row.autoscale_min is not None and row.autoscale_max is not None:
        to = min(row.autoscale_max, max(row.autoscale_min, len(counted(row))))  # into the new bounds at once
    if to is not None:
        if row.autoscale_min is not None and row.autoscale_max is not None and \
                not row.autoscale_min <= to <= row.autoscale_max:
            raise InvalidInput(f"replicas must be within autoscaling's {row.autoscale_min}..{row.autoscale_max}",
                               field="replicas")
        if to == 0 and row.autoscale_min != 0:
            raise InvalidInput("0 replicas only with autoscaling of min 0 (the first request starts one); "
                               "to stop it, undeploy", field="replicas")
        detail["replicas"] = to
        resize(session, catalog, row, to, now, "scaled", f"set to {to} by {principal.username}")
    audit.record(session, principal, "deployment.scale", "deployment", row.name, tenant_id=row.tenant_id,
                 detail=detail)
    return row


def recent_events(session: Session, row: ModelDeployment, limit: int = 20) -> list[DeploymentEvent]:
    return list(reversed(session.execute(
        select(DeploymentEvent).where(DeploymentEvent.deployment_id == row.id)
        .order_by(DeploymentEvent.id.desc()).limit(limit)).scalars().all()))
