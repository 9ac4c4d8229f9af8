"""Who is calling, and what each role may see.

Rules, applied by every service function:
- operator: everything;
- provider: its own provider record, its sites, their nodes and devices;
- tenant: its own tenant record, its users and keys, and (later) what it leases.
Objects the caller may not see are reported as not found, so their existence does not leak.
"""

from __future__ import annotations

from dataclasses import dataclass

from zhisuan.errors import Forbidden

# "metrics": read /metrics from afar (operators only; loopback callers need no key).
SCOPES = ("read", "write", "agent", "inference", "metrics")
DEFAULT_SCOPES = ("read", "write", "inference")


@dataclass(frozen=True)
class Principal:
    user_id: int
    username: str
    role: str
    tenant_id: int | None = None
    provider_id: int | None = None
    key_id: str | None = None
    scopes: frozenset[str] = frozenset(DEFAULT_SCOPES)
    # Set on agent keys: the one site this credential may register nodes into.
    site_id: int | None = None

    @property
    def is_operator(self) -> bool:
        return self.role == "operator"


def require_scope(principal: Principal, scope: str) -> None:
    if scope not in principal.scopes:
        raise Forbidden(f"this key lacks the '{scope}' scope (it has: {', '.join(sorted(principal.scopes))})")


def require_role(principal: Principal, *roles: str) -> None:
    if principal.role not in roles:
        raise Forbidden(f"role '{principal.role}' may not do this (needs: {' or '.join(roles)})")


def may_see_tenant(principal: Principal, tenant_id: int | None) -> bool:
    return principal.is_operator or (principal.role == "tenant" and principal.tenant_id == tenant_id)


def may_see_provider(principal: Principal, provider_id: int | None) -> bool:
    return principal.is_operator or (principal.role == "provider" and principal.provider_id == provider_id)
