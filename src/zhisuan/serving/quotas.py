"""How many replicas a tenant's model services may hold at once.

A replica holds real CPU and memory on a provider's node, so a tenant cannot deploy without bound.
The limit counts the replicas of the tenant's active deployments that still hold their node
(pending, starting, healthy, unhealthy, draining) plus the ones asked for. It comes from, in order:
the tenant's own quota row, the platform-wide row (``tenant_id`` NULL), ``DEFAULT_MAX_REPLICAS``.
Operators set both through ``PUT /deployment-quotas``. The platform's public MaaS has no quota.
"""

from __future__ import annotations

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from zhisuan.errors import Conflict
from zhisuan.identity import audit
from zhisuan.identity.access import Principal, require_role
from zhisuan.identity.models import Tenant
from zhisuan.identity.service import by_ref
from zhisuan.ledger.service import lock_tenant
from zhisuan.serving import schemas as s
from zhisuan.serving.models import HOLDING_REPLICA, DeploymentReplica, ModelDeployment, ServingQuota

DEFAULT_MAX_REPLICAS = 8


def quota_row(session: Session, tenant_id: int | None) -> ServingQuota | None:
    where = ServingQuota.tenant_id == tenant_id if tenant_id is not None else ServingQuota.tenant_id.is_(None)
    return session.execute(select(ServingQuota).where(where)).scalar_one_or_none()


def max_replicas(session: Session, tenant_id: int) -> int:
    row = quota_row(session, tenant_id) or quota_row(session, None)
    return row.max_replicas if row is not None else DEFAULT_MAX_REPLICAS


def replicas_held(session: Session, tenant_id: int) -> int:
    return int(session.execute(
        select(func.count(DeploymentReplica.id)).join(ModelDeployment)
        .where(ModelDeployment.tenant_id == tenant_id, DeploymentReplica.state.in_(HOLDING_REPLICA))).scalar_one())


def check_replica_quota(session: Session, owner: Tenant, wanted: int) -> None:
    # Two racing deployments of one tenant must not both pass the count: hold its lock until commit.
    lock_tenant(session, owner.id)
    limit, held = max_replicas(session, owner.id), replicas_held(session, owner.id)
    if held + wanted > limit:
        raise Conflict(f"tenant '{owner.name}' may hold {limit} replicas; it holds {held} and asks for {wanted} "
                       "more (an operator can raise the quota)", field="replicas")


def set_quota(session: Session, principal: Principal, body: s.QuotaSet) -> s.QuotaOut:
    require_role(principal, "operator")
    tenant: Tenant | None = by_ref(session, Tenant, body.tenant, "tenant") if body.tenant is not None else None
    row = quota_row(session, tenant.id if tenant else None)
    if row is None:
        row = ServingQuota(tenant_id=tenant.id if tenant else None, max_replicas=body.max_replicas)
        session.add(row)
    row.max_replicas = body.max_replicas
    session.flush()
    audit.record(session, principal, "deployment.quota", "tenant", tenant.name if tenant else "*",
                 tenant_id=tenant.id if tenant else None, detail={"max_replicas": body.max_replicas})
    return s.QuotaOut(tenant=tenant.name if tenant else None, max_replicas=row.max_replicas,
                      held=replicas_held(session, tenant.id) if tenant else None)


def get_quota(session: Session, principal: Principal, tenant_ref: str | None) -> s.QuotaOut:
    """A tenant reads its own quota; operators any tenant's, or the platform default (no tenant)."""
    require_role(principal, "operator", "tenant")
    if principal.role == "tenant":
        tenant: Tenant | None = session.get_one(Tenant, principal.tenant_id)
    else:
        tenant = by_ref(session, Tenant, tenant_ref, "tenant") if tenant_ref is not None else None
    if tenant is None:
        row = quota_row(session, None)
        return s.QuotaOut(tenant=None, max_replicas=row.max_replicas if row else DEFAULT_MAX_REPLICAS, held=None)
    return s.QuotaOut(tenant=tenant.name, max_replicas=max_replicas(session, tenant.id),
                      held=replicas_held(session, tenant.id))
