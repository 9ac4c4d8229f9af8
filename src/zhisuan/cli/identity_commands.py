"""``zhisuan tenant|user|key|audit`` commands."""

from __future__ import annotations

from typing import Annotated, Any

import typer

from zhisuan.cli.client import ApiClient
from zhisuan.cli.output import emit

JsonFlag = Annotated[bool, typer.Option("--json", help="print JSON")]
tenant_app = typer.Typer(help="Tenants (租户): who rents capacity.", no_args_is_help=True)
user_app = typer.Typer(help="Users and their roles.", no_args_is_help=True)
key_app = typer.Typer(help="API keys: shown once, stored hashed.", no_args_is_help=True)
audit_app = typer.Typer(help="The audit log of mutating actions.", no_args_is_help=True)
TENANT_COLUMNS = ("id", "name", "display_name", "contact_email", "created_at")
KEY_COLUMNS = ("key_id", "name", "username", "scopes", "limits", "expires_at", "revoked_at", "last_used_at")
# How each inference limit of a key reads in the LIMITS column; absent or null = unlimited.
KEY_LIMITS = (("models", "models"), ("rpm", "rpm"), ("tpm", "tpm"), ("token_budget", "tokens"),
              ("money_budget", "CNY"))


def api() -> ApiClient:
    return ApiClient.from_environment()


def key_limits(key: dict[str, Any]) -> str:
    """``models=a,b rpm=60 tokens=1000000``, or ``unlimited``."""
    parts = []
    for field, label in KEY_LIMITS:
        value = key.get(field)
        if value is not None:
            parts.append(f"{label}={','.join(value) if isinstance(value, list) else value}")
    if parts and (key.get("token_budget") is not None or key.get("money_budget") is not None):
        parts.append(f"per={'month' if key.get('budget_period', 'monthly') == 'monthly' else 'ever'}")
    return " ".join(parts) or "unlimited"


def emit_keys(keys: Any, as_json: bool) -> None:
    """Keys with their limits: the JSON carries them field by field, the table in one LIMITS column."""
    if as_json:
        emit(keys, True)
        return
    rows = keys if isinstance(keys, list) else [keys]
    emit([{**key, "limits": key_limits(key)} for key in rows], False, KEY_COLUMNS)


@tenant_app.command("create")
def tenant_create(name: str, display_name: str = "", email: str | None = None, json: JsonFlag = False) -> None:
    emit(api().post("/tenants", {"name": name, "display_name": display_name, "contact_email": email}), json,
         TENANT_COLUMNS)


@tenant_app.command("list")
def tenant_list(json: JsonFlag = False) -> None:
    emit(api().get("/tenants"), json, TENANT_COLUMNS)


@tenant_app.command("show")
def tenant_show(ref: str, json: JsonFlag = False) -> None:
    emit(api().get(f"/tenants/{ref}"), json)


@tenant_app.command("limits")
def tenant_limits(
    ref: str,
    rpm: Annotated[int | None, typer.Option(help="requests per minute over all keys (omit = unlimited)")] = None,
    tpm: Annotated[int | None, typer.Option(help="tokens per minute over all keys (omit = unlimited)")] = None,
    token_budget: Annotated[int | None, typer.Option(help="total tokens (omit = unlimited)")] = None,
    money_budget: Annotated[str | None, typer.Option(help="total spend in CNY, e.g. 12.50 (omit = unlimited)")] = None,
    budget_period: Annotated[str, typer.Option(help="budgets reset each UTC month ('monthly') or never ('none')")
                             ] = "monthly",
    json: JsonFlag = False,
) -> None:
    """Set a tenant's inference limits; a limit not given is cleared (operators)."""
    # The amount goes as a string, so it reaches the server exactly (the server validates it).
    body = {"rpm": rpm, "tpm": tpm, "token_budget": token_budget, "money_budget": money_budget,
            "budget_period": budget_period}
    emit(api().patch(f"/tenants/{ref}/limits", body), json,
         TENANT_COLUMNS + ("rpm", "tpm", "token_budget", "money_budget", "budget_period"))


@tenant_app.command("delete")
def tenant_delete(ref: str) -> None:
    api().delete(f"/tenants/{ref}")
    typer.echo(f"tenant {ref} deleted")


@user_app.command("create")
def user_create(
    username: str,
    role: Annotated[str, typer.Option(help="operator, provider or tenant")],
    tenant: Annotated[str | None, typer.Option(help="tenant, for role tenant")] = None,
    provider: Annotated[str | None, typer.Option(help="provider, for role provider")] = None,
    password: Annotated[str | None, typer.Option(help="console password (12+ characters)")] = None,
    json: JsonFlag = False,
) -> None:
    body = {"username": username, "role": role, "tenant": tenant, "provider": provider, "password": password}
    emit(api().post("/users", body), json, ("id", "username", "role", "tenant_id", "provider_id"))


@user_app.command("list")
def user_list(json: JsonFlag = False) -> None:
    emit(api().get("/users"), json, ("id", "username", "role", "tenant_id", "provider_id", "disabled"))


@key_app.command("create")
def key_create(
    name: str = "",
    scope: Annotated[list[str] | None, typer.Option(help="read, write, inference, metrics (repeatable)")] = None,
    expires_in_days: Annotated[float | None, typer.Option(help="expire after this many days")] = None,
    user: Annotated[str | None, typer.Option(help="issue for another user (operators)")] = None,
    model: Annotated[list[str] | None, typer.Option(help="allowed model (repeatable; omit = all)")] = None,
    rpm: Annotated[int | None, typer.Option(help="requests per minute")] = None,
    tpm: Annotated[int | None, typer.Option(help="tokens per minute")] = None,
    token_budget: Annotated[int | None, typer.Option(help="total tokens")] = None,
    money_budget: Annotated[str | None, typer.Option(help="total spend in CNY, e.g. 12.50")] = None,
    budget_period: Annotated[str, typer.Option(help="budgets reset each UTC month ('monthly') or never ('none')")
                             ] = "monthly",
    json: JsonFlag = False,
) -> None:
    body: dict[str, object] = {"name": name, "expires_in_days": expires_in_days, "user": user,
                               "models": model or None, "rpm": rpm, "tpm": tpm, "token_budget": token_budget,
                               "money_budget": money_budget, "budget_period": budget_period}
    if scope:
        body["scopes"] = scope
    issued = api().post("/keys", body)
    if json:
        emit(issued, True)
        return
    typer.echo(f"key {issued['key_id']} for {issued['username']} (scopes: {', '.join(issued['scopes'])};"
               f" limits: {key_limits(issued)})")
    typer.echo(f"secret (shown once): {issued['key']}")


@key_app.command("list")
def key_list(json: JsonFlag = False) -> None:
    emit_keys(api().get("/keys"), json)


@key_app.command("revoke")
def key_revoke(key_id: str, json: JsonFlag = False) -> None:
    emit_keys(api().delete(f"/keys/{key_id}"), json)


@audit_app.command("list")
def audit_list(limit: int = 50, json: JsonFlag = False) -> None:
    emit(api().get("/audit", limit=limit), json, ("at", "actor", "action", "object_type", "object_ref"))


def register(app: typer.Typer) -> None:
    app.add_typer(tenant_app, name="tenant")
    app.add_typer(user_app, name="user")
    app.add_typer(key_app, name="key")
    app.add_typer(audit_app, name="audit")
