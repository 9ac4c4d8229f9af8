"""Tenants, users and keys: the rules, independent of HTTP."""

from __future__ import annotations

from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

from sqlalchemy import or_, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from zhisuan.core.refs import row_id
from zhisuan.errors import Conflict, Forbidden, InvalidInput, NotFound
from zhisuan.gateway.revocation import key_revoked
from zhisuan.identity import audit
from zhisuan.identity.access import SCOPES, Principal, may_see_tenant, require_role
from zhisuan.identity.hashing import hash_secret
from zhisuan.identity.keys import IssuedKey, issue_key
from zhisuan.identity.models import ApiKey, Tenant, User
from zhisuan.identity.schemas import KeyCreate, TenantCreate, TenantLimits, UserCreate
from zhisuan.inventory.models import Provider, Site

FEN = Decimal("0.01")


def by_ref(session: Session, model: Any, ref: str | int, what: str, field: str = "name") -> Any:
    """Find a row by numeric id or by name; ``NotFound`` names what was looked for."""
    number = row_id(ref, what)
    column = model.id if number is not None else getattr(model, field)
    row = session.execute(select(model).where(column == (number if number is not None else str(ref)))
                          ).scalar_one_or_none()
    if row is None:
        raise NotFound(f"{what} '{ref}' not found", field=what)
    return row


def create_tenant(session: Session, principal: Principal, body: TenantCreate) -> Tenant:
    require_role(principal, "operator")
    if session.execute(select(Tenant.id).where(Tenant.name == body.name)).first():
        raise Conflict(f"a tenant named '{body.name}' already exists", field="name")
    tenant = Tenant(name=body.name, display_name=body.display_name, contact_email=body.contact_email)
    session.add(tenant)
    session.flush()
    audit.record(session, principal, "tenant.create", "tenant", tenant.name, tenant_id=tenant.id)
    return tenant


def list_tenants(session: Session, principal: Principal) -> list[Tenant]:
    query = select(Tenant).order_by(Tenant.id)
    if not principal.is_operator:
        if principal.role != "tenant":
            return []
        query = query.where(Tenant.id == principal.tenant_id)
    return list(session.execute(query).scalars())


def get_tenant(session: Session, principal: Principal, ref: str) -> Tenant:
    tenant: Tenant = by_ref(session, Tenant, ref, "tenant")
    if not may_see_tenant(principal, tenant.id):
        raise NotFound(f"tenant '{ref}' not found", field="tenant")
    return tenant


def tenant_filter(session: Session, principal: Principal, ref: str) -> int:
    """The id of the tenant a ``?tenant=`` filter names, for every list that takes one.

    A tenant the caller may not see answers 404 exactly like one that does not exist (rather than
    an empty list, which would tell that the name exists): operators may name any tenant, a tenant
    user only its own, providers none (their lists are already limited to their own sites).
    """
    return get_tenant(session, principal, ref).id


def delete_tenant(session: Session, principal: Principal, ref: str) -> None:
    require_role(principal, "operator")
    tenant = get_tenant(session, principal, ref)
    audit.record(session, principal, "tenant.delete", "tenant", tenant.name, tenant_id=tenant.id)
    session.delete(tenant)
    flush_or_conflict(session, f"tenant '{tenant.name}' has contracts, usage or invoices; financial records are "
                               "kept, so the tenant cannot be deleted")


def fen(amount: Decimal | None) -> Decimal | None:
    """A money budget as stored: CNY to the fen ("12.5" → "12.50"); the schema allows no finer amount."""
    return None if amount is None else amount.quantize(FEN)


def limits_detail(row: Tenant) -> dict[str, Any]:
    """A tenant's limits for the audit log (money as its exact decimal string)."""
    money = None if row.money_budget is None else str(row.money_budget)
    return {"rpm": row.rpm, "tpm": row.tpm, "token_budget": row.token_budget, "money_budget": money,
            "budget_period": row.budget_period}


def set_tenant_limits(session: Session, principal: Principal, ref: str, body: TenantLimits) -> Tenant:
    """Replace a tenant's inference limits (None = unlimited). Operators only."""
    require_role(principal, "operator")
    tenant = get_tenant(session, principal, ref)
    before = limits_detail(tenant)
    tenant.rpm, tenant.tpm, tenant.token_budget = body.rpm, body.tpm, body.token_budget
    tenant.money_budget = fen(body.money_budget)
    tenant.budget_period = body.budget_period
    session.flush()
    audit.record(session, principal, "tenant.limits", "tenant", tenant.name, tenant_id=tenant.id,
                 detail={"before": before, "after": limits_detail(tenant)})
    return tenant


def flush_or_conflict(session: Session, message: str) -> None:
    """Flush a delete; a row other records still point at (a foreign key) becomes a 409, not a 500."""
    try:
        session.flush()
    except IntegrityError as error:
        raise Conflict(message) from error


def create_user(session: Session, principal: Principal, body: UserCreate, scrypt_n: int) -> User:
    tenant_id, provider_id = _user_affiliation(session, principal, body)
    if session.execute(select(User.id).where(User.username == body.username)).first():
        raise Conflict(f"a user named '{body.username}' already exists", field="username")
    user = User(
        username=body.username,
        role=body.role,
        tenant_id=tenant_id,
        provider_id=provider_id,
        password_hash=hash_secret(body.password, n=scrypt_n) if body.password else None,
    )
    session.add(user)
    session.flush()
    audit.record(
        session, principal, "user.create", "user", user.username, tenant_id=tenant_id, provider_id=provider_id,
        detail={"role": user.role},
    )
    return user


def _user_affiliation(session: Session, principal: Principal, body: UserCreate) -> tuple[int | None, int | None]:
    """Check who may create this user and resolve its tenant or provider."""
    if body.role == "operator":
        require_role(principal, "operator")
        if body.tenant or body.provider:
            raise InvalidInput("an operator belongs to no tenant or provider", field="tenant")
        return None, None
    if body.role == "tenant":
        if not body.tenant:
            raise InvalidInput("a tenant user needs a tenant", field="tenant")
        tenant = get_tenant(session, principal, body.tenant)
        require_role(principal, "operator", "tenant")
        return tenant.id, None
    if not body.provider:
        raise InvalidInput("a provider user needs a provider", field="provider")
    provider: Provider = by_ref(session, Provider, body.provider, "provider")
    if not (principal.is_operator or principal.provider_id == provider.id):
        raise NotFound(f"provider '{body.provider}' not found", field="provider")
    return None, provider.id


def list_users(session: Session, principal: Principal) -> list[User]:
    query = select(User).order_by(User.id)
    if principal.role == "tenant":
        query = query.where(User.tenant_id == principal.tenant_id)
    elif principal.role == "provider":
        query = query.where(User.provider_id == principal.provider_id)
    return list(session.execute(query).scalars())


def create_key(session: Session, principal: Principal, body: KeyCreate, now: datetime) -> IssuedKey:
    unknown = sorted(set(body.scopes) - set(SCOPES))
    if unknown:
        raise InvalidInput(f"scopes: unknown scope(s) {unknown}; known: {list(SCOPES)}", field="scopes")
    if "agent" in body.scopes:
        raise InvalidInput("agent keys are issued per site: POST /api/v1/sites/{site}/agent-keys", field="scopes")
    if not principal.is_operator and not set(body.scopes) <= principal.scopes:
        raise Forbidden("a key cannot carry scopes its creator lacks", field="scopes")
    owner = session.get(User, principal.user_id)
    if body.user and body.user != principal.username:
        require_role(principal, "operator")
        owner = by_ref(session, User, body.user, "user", field="username")
    assert owner is not None
    expires = now + timedelta(days=body.expires_in_days) if body.expires_in_days else None
    issued = issue_key(session, owner, name=body.name, scopes=body.scopes, expires_at=expires)
    # Model scopes and limits only restrict a key, so anyone who may create a key may set them.
    row = issued.row
    row.models = sorted(set(body.models)) if body.models is not None else None
    row.rpm, row.tpm, row.token_budget, row.money_budget = body.rpm, body.tpm, body.token_budget, fen(body.money_budget)
    row.budget_period = body.budget_period
    session.flush()
    limits = {k: v for k, v in (("models", row.models), ("rpm", row.rpm), ("tpm", row.tpm),
                                ("token_budget", row.token_budget),
                                ("money_budget", None if row.money_budget is None else str(row.money_budget)))
              if v is not None}
    audit.record(
        session, principal, "key.create", "api_key", row.key_id,
        tenant_id=owner.tenant_id, provider_id=owner.provider_id, detail={"scopes": row.scopes, **limits},
    )
    return issued


def visible_keys_query(principal: Principal):  # type: ignore[no-untyped-def]
    query = select(ApiKey).join(User).order_by(ApiKey.id)
    if principal.role == "tenant":
        return query.where(User.tenant_id == principal.tenant_id)
    if principal.role == "provider":  # its users' keys, and the agent keys of its sites whoever issued them
        own_sites = select(Site.id).where(Site.provider_id == principal.provider_id)
        return query.where(or_(User.provider_id == principal.provider_id, ApiKey.site_id.in_(own_sites)))
    return query


def list_keys(session: Session, principal: Principal) -> list[ApiKey]:
    return list(session.execute(visible_keys_query(principal)).scalars())


def revoke_key(session: Session, principal: Principal, key_id: str, now: datetime) -> ApiKey:
    row = session.execute(visible_keys_query(principal).where(ApiKey.key_id == key_id)).scalar_one_or_none()
    if row is None:
        raise NotFound(f"API key '{key_id}' not found", field="key_id")
    if row.revoked_at is None:
        row.revoked_at = now
        key_revoked(session, key_id)  # gateways refuse it as soon as this commits
        audit.record(
            session, principal, "key.revoke", "api_key", key_id,
            tenant_id=row.user.tenant_id, provider_id=row.user.provider_id or principal.provider_id,
        )
    return row
