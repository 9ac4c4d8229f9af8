"""HTTP routes of the identity domain: thin wrappers over identity.service."""

from __future__ import annotations

from fastapi import APIRouter, Request, status

from zhisuan.api.deps import ContextDep, Reader, SessionDep, Writer, client_address
from zhisuan.identity import audit, service
from zhisuan.identity import login as login_service
from zhisuan.identity.keys import IssuedKey
from zhisuan.identity.login import LoginAttempt
from zhisuan.identity.models import ApiKey
from zhisuan.identity.schemas import (
    AuditOut,
    KeyCreate,
    KeyIssued,
    KeyOut,
    LoginRequest,
    TenantCreate,
    TenantLimits,
    TenantOut,
    UserCreate,
    UserOut,
    Whoami,
)

router = APIRouter()


def key_out(row: ApiKey) -> KeyOut:
    return KeyOut(
        key_id=row.key_id, name=row.name, username=row.user.username, scopes=list(row.scopes),
        site_id=row.site_id, created_at=row.created_at, expires_at=row.expires_at,
        revoked_at=row.revoked_at, last_used_at=row.last_used_at,
        models=list(row.models) if row.models is not None else None,
        rpm=row.rpm, tpm=row.tpm, token_budget=row.token_budget, money_budget=row.money_budget,
        budget_period=row.budget_period or "monthly",
    )


def key_issued(issued: IssuedKey) -> KeyIssued:
    return KeyIssued(**key_out(issued.row).model_dump(), key=issued.plaintext)


@router.post("/auth/login", response_model=KeyIssued, tags=["access"],
             responses={429: {"description": "too many failed logins for this user or address; see Retry-After"}})
def login(body: LoginRequest, request: Request, ctx: ContextDep) -> KeyIssued:
    attempt = LoginAttempt(username=body.username, password=body.password, client=client_address(request))
    issued = login_service.login(ctx.sessions, ctx.login_throttle, attempt, ctx.clock(), ctx.settings.scrypt_n)
    return key_issued(issued)


@router.get("/auth/whoami", response_model=Whoami, tags=["access"])
def whoami(principal: Reader) -> Whoami:
    return Whoami(
        username=principal.username, role=principal.role, tenant_id=principal.tenant_id,
        provider_id=principal.provider_id, key_id=principal.key_id, scopes=sorted(principal.scopes),
    )


@router.post("/tenants", response_model=TenantOut, status_code=status.HTTP_201_CREATED, tags=["tenants"])
def create_tenant(body: TenantCreate, session: SessionDep, principal: Writer) -> object:
    return service.create_tenant(session, principal, body)


@router.get("/tenants", response_model=list[TenantOut], tags=["tenants"])
def list_tenants(session: SessionDep, principal: Reader) -> object:
    return service.list_tenants(session, principal)


@router.get("/tenants/{ref}", response_model=TenantOut, tags=["tenants"])
def get_tenant(ref: str, session: SessionDep, principal: Reader) -> object:
    return service.get_tenant(session, principal, ref)


@router.patch("/tenants/{ref}/limits", response_model=TenantOut, tags=["tenants"])
def set_tenant_limits(ref: str, body: TenantLimits, session: SessionDep, principal: Writer) -> object:
    return service.set_tenant_limits(session, principal, ref, body)


@router.delete("/tenants/{ref}", status_code=status.HTTP_204_NO_CONTENT, tags=["tenants"])
def delete_tenant(ref: str, session: SessionDep, principal: Writer) -> None:
    service.delete_tenant(session, principal, ref)


@router.post("/users", response_model=UserOut, status_code=status.HTTP_201_CREATED, tags=["access"])
def create_user(body: UserCreate, session: SessionDep, principal: Writer, ctx: ContextDep) -> object:
    return service.create_user(session, principal, body, ctx.settings.scrypt_n)


@router.get("/users", response_model=list[UserOut], tags=["access"])
def list_users(session: SessionDep, principal: Reader) -> object:
    return service.list_users(session, principal)


@router.post("/keys", response_model=KeyIssued, status_code=status.HTTP_201_CREATED, tags=["access"])
def create_key(body: KeyCreate, session: SessionDep, principal: Writer, ctx: ContextDep) -> KeyIssued:
    return key_issued(service.create_key(session, principal, body, ctx.clock()))


@router.get("/keys", response_model=list[KeyOut], tags=["access"])
def list_keys(session: SessionDep, principal: Reader) -> list[KeyOut]:
    return [key_out(row) for row in service.list_keys(session, principal)]


@router.delete("/keys/{key_id}", response_model=KeyOut, tags=["access"])
def revoke_key(key_id: str, session: SessionDep, principal: Writer, ctx: ContextDep) -> KeyOut:
    return key_out(service.revoke_key(session, principal, key_id, ctx.clock()))


@router.get("/audit", response_model=list[AuditOut], tags=["access"])
def list_audit(session: SessionDep, principal: Reader, limit: int = 200) -> object:
    return audit.list_events(session, principal, min(max(limit, 1), 1000))
