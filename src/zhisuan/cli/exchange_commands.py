"""``zhisuan offer|request|exchange`` commands: publish supply and demand, read the book, clear, accept."""

from __future__ import annotations

from typing import Annotated, Any

import typer

from zhisuan.cli.client import ApiClient
from zhisuan.cli.output import emit

JsonFlag = Annotated[bool, typer.Option("--json", help="print JSON")]
offer_app = typer.Typer(help="Exchange offers: capacity a provider lists for lease.", no_args_is_help=True)
request_app = typer.Typer(help="Exchange requests: capacity a tenant wants to lease.", no_args_is_help=True)
exchange_app = typer.Typer(help="The exchange: order book, clearing rounds, matches.", no_args_is_help=True)

OFFER_COLUMNS = ("id", "provider", "site", "region", "model", "devices", "remaining", "start", "end",
                 "pricing_model", "floor_price", "floor_device_hour", "state")
REQUEST_COLUMNS = ("id", "tenant", "amount", "unit", "models", "earliest_start", "duration_h", "max_price",
                   "remaining", "state", "unmatched_reason")
MATCH_COLUMNS = ("id", "offer_id", "request_id", "model", "region", "devices", "start", "end", "price", "state",
                 "deadline", "tenant_accepted", "provider_accepted", "contract_id")
BOOK_COLUMNS = ("model", "region", "devices_offered", "best_floor", "devices_requested", "best_cap")


def api() -> ApiClient:
    return ApiClient.from_environment()


def without_none(body: dict[str, Any]) -> dict[str, Any]:
    return {key: value for key, value in body.items() if value is not None}


@offer_app.command("create")
def offer_create(
    site: Annotated[str, typer.Option(help="site of the capacity (yours)")],
    start: Annotated[str, typer.Option(help="ISO instant on a whole hour, e.g. 2026-11-02T00:00:00Z")],
    end: Annotated[str, typer.Option(help="ISO instant on a whole hour")],
    pricing_model: Annotated[str, typer.Option(help="device_hour, server_month or pflops_year")],
    floor_price: Annotated[str, typer.Option(help="least CNY per unit of the pricing model")],
    node: Annotated[list[str] | None, typer.Option(help="whole server (site/name), repeatable")] = None,
    model: Annotated[str | None, typer.Option(help="accelerator model (with --devices)")] = None,
    devices: Annotated[int, typer.Option(help="devices of the model")] = 0,
    min_term_h: Annotated[int, typer.Option(help="shortest lease in hours")] = 1,
    closed_months: Annotated[int | None, typer.Option(help="closed (penalised) months; default all")] = None,
    open_months: int = 0, penalty_rate: str = "0.20",
    provider: Annotated[str | None, typer.Option(help="operators: the provider")] = None,
    json: JsonFlag = False,
) -> None:
    """List whole servers (--node) or devices of one model (--model --devices) at a site you own."""
    body = without_none({"provider": provider, "site": site, "nodes": node or [], "model": model, "devices": devices,
                         "start": start, "end": end, "min_term_h": min_term_h, "pricing_model": pricing_model,
                         "floor_price": floor_price, "closed_months": closed_months, "open_months": open_months,
                         "penalty_rate": penalty_rate})
    emit(api().post("/exchange/offers", body), json)


@offer_app.command("list")
def offer_list(state: str | None = None, json: JsonFlag = False) -> None:
    emit(api().get("/exchange/offers", state=state), json, OFFER_COLUMNS)


@offer_app.command("show")
def offer_show(offer_id: str, json: JsonFlag = False) -> None:
    emit(api().get(f"/exchange/offers/{offer_id}"), json)


@offer_app.command("withdraw")
def offer_withdraw(offer_id: str, json: JsonFlag = False) -> None:
    emit(api().post(f"/exchange/offers/{offer_id}/withdraw", {}), json)


@request_app.command("create")
def request_create(
    amount: Annotated[int, typer.Option(help="how much, in --unit")],
    earliest_start: Annotated[str, typer.Option(help="ISO instant on a whole hour")],
    latest_start: Annotated[str, typer.Option(help="ISO instant on a whole hour")],
    duration_h: Annotated[int, typer.Option(help="lease length in hours")],
    max_price: Annotated[str, typer.Option(help="CNY per device-hour (per H100-eq-hour for h100_eq)")],
    unit: Annotated[str, typer.Option(help="devices, servers (8 devices) or h100_eq")] = "devices",
    model: Annotated[list[str] | None, typer.Option(help="acceptable model, repeatable")] = None,
    min_memory_gib: Annotated[str | None, typer.Option(help="constraint: least device memory")] = None,
    interconnect: Annotated[str | None, typer.Option(help="constraint: e.g. nvlink, hccs")] = None,
    stack: Annotated[str | None, typer.Option(help="constraint: cuda, cann, rocm…")] = None,
    region: Annotated[list[str] | None, typer.Option(help="acceptable region, repeatable")] = None,
    gang: Annotated[bool, typer.Option(help="all devices at one site")] = False,
    allow_partial: bool = False, min_fill: int = 0,
    tenant: Annotated[str | None, typer.Option(help="operators: the tenant")] = None,
    json: JsonFlag = False,
) -> None:
    """Ask for capacity: acceptable models (--model) or constraints they must meet."""
    constraints = without_none({"min_memory_gib": min_memory_gib, "interconnect": interconnect, "stack": stack})
    body = without_none({"tenant": tenant, "amount": amount, "unit": unit, "models": model or [],
                         "constraints": constraints or None, "earliest_start": earliest_start,
                         "latest_start": latest_start, "duration_h": duration_h, "max_price": max_price,
                         "regions": region or [], "gang": gang, "allow_partial": allow_partial, "min_fill": min_fill})
    emit(api().post("/exchange/requests", body), json)


@request_app.command("list")
def request_list(state: str | None = None, json: JsonFlag = False) -> None:
    emit(api().get("/exchange/requests", state=state), json, REQUEST_COLUMNS)


@request_app.command("show")
def request_show(request_id: str, json: JsonFlag = False) -> None:
    emit(api().get(f"/exchange/requests/{request_id}"), json)


@request_app.command("withdraw")
def request_withdraw(request_id: str, json: JsonFlag = False) -> None:
    emit(api().post(f"/exchange/requests/{request_id}/withdraw", {}), json)


@exchange_app.command("book")
def exchange_book(json: JsonFlag = False) -> None:
    """The anonymous order book: depth and best prices per model and region."""
    emit(api().get("/exchange/book"), json, BOOK_COLUMNS)


@exchange_app.command("clear")
def exchange_clear(
    objective: Annotated[str, typer.Option(help="surplus or pflops_hours")] = "surplus",
    method: Annotated[str, typer.Option(help="optimal, fcfs or greedy (baselines)")] = "optimal",
    time_limit_s: Annotated[float, typer.Option(help="solver time limit")] = 5.0,
    json: JsonFlag = False,
) -> None:
    """Run a clearing round (operators): matches become draft contracts awaiting both sides."""
    summary = api().post("/exchange/clear", {"objective": objective, "method": method, "time_limit_s": time_limit_s})
    if json:
        emit(summary, True)
        return
    typer.echo(f"clearing {summary['id']}: {summary['status']}  value {summary['value']}  bound {summary['bound']}  "
               f"{summary['solve_s']:.2f} s  ({summary['offers']} offers, {summary['requests']} requests)")
    emit(summary["matches"], False, MATCH_COLUMNS)
    for item in summary["unmatched"]:
        typer.echo(f"unmatched request {item['request_id']}: {item['reason']}")
    for line in summary["skipped"]:
        typer.echo(f"skipped {line}")


@exchange_app.command("matches")
def exchange_matches(state: str | None = None, json: JsonFlag = False) -> None:
    emit(api().get("/exchange/matches", state=state), json, MATCH_COLUMNS)


@exchange_app.command("accept")
def exchange_accept(
    match_id: str,
    side: Annotated[str | None, typer.Option(help="operators: tenant or provider")] = None,
    json: JsonFlag = False,
) -> None:
    """Accept a match for your side; with both sides, its contract becomes active."""
    emit(api().post(f"/exchange/matches/{match_id}/accept", without_none({"side": side})), json)


def register(app: typer.Typer) -> None:
    app.add_typer(offer_app, name="offer")
    app.add_typer(request_app, name="request")
    app.add_typer(exchange_app, name="exchange")
