"""The audit log: every mutating action is recorded in the same transaction as the change."""

from __future__ import annotations

from typing import Any

from sqlalchemy import insert, select
from sqlalchemy.orm import Session

from zhisuan.identity.access import Principal, require_role
from zhisuan.identity.models import AuditEvent
from zhisuan.store.base import utcnow


def record(
    session: Session,
    principal: Principal,
    action: str,
    object_type: str,
    object_ref: str,
    *,
    tenant_id: int | None = None,
    provider_id: int | None = None,
    detail: dict[str, Any] | None = None,
) -> None:
    session.add(
        AuditEvent(
            actor=principal.username,
            actor_key_id=principal.key_id,
            action=action,
            object_type=object_type,
            object_ref=object_ref,
            tenant_id=tenant_id,
            provider_id=provider_id,
            detail=detail or {},
        )
    )


def record_many(session: Session, principals_and_events: list[tuple[Principal, str, str, str, int | None,
                                                                     dict[str, Any]]]) -> None:
    """Several events in one INSERT (a batch of registrations): each ``(principal, action, object_type,
    object_ref, provider_id, detail)``, written as ``record`` writes one."""
    if principals_and_events:
        now = utcnow()
        session.execute(insert(AuditEvent), [
            {"at": now, "actor": principal.username, "actor_key_id": principal.key_id, "action": action,
             "object_type": object_type, "object_ref": object_ref, "tenant_id": None, "provider_id": provider_id,
             "detail": detail}
            for principal, action, object_type, object_ref, provider_id, detail in principals_and_events])


def list_events(session: Session, principal: Principal, limit: int = 200) -> list[AuditEvent]:
    """Operators read the whole log; tenants and providers read the events about themselves."""
    query = select(AuditEvent).order_by(AuditEvent.id.desc()).limit(limit)
    if principal.role == "tenant":
        query = query.where(AuditEvent.tenant_id == principal.tenant_id)
    elif principal.role == "provider":
        query = query.where(AuditEvent.provider_id == principal.provider_id)
    else:
        require_role(principal, "operator")
    return list(session.execute(query).scalars())
