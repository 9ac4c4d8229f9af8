"""``zhisuan pricebook|contract|allocation|usage|metering|invoice|settlement|market`` commands."""

from __future__ import annotations

import json as jsonlib
from pathlib import Path
from typing import Annotated, Any

import httpx
import typer

from zhisuan.cli.client import ApiClient, CliError, describe_error
from zhisuan.cli.output import emit

JsonFlag = Annotated[bool, typer.Option("--json", help="print JSON")]
pricebook_app = typer.Typer(help="Price books: versioned rates per accelerator model and pricing model.",
                            no_args_is_help=True)
contract_app = typer.Typer(help="Lease contracts: draft → active → expired | terminated | breached.",
                           no_args_is_help=True)
allocation_app = typer.Typer(help="The allocation ledger: who holds which devices, when.", no_args_is_help=True)
usage_app = typer.Typer(help="Usage records (metered allocations and gateway token events).", no_args_is_help=True)
invoice_app = typer.Typer(help="Invoices per tenant and billing period.", no_args_is_help=True)
settlement_app = typer.Typer(help="Provider settlements and platform margin.", no_args_is_help=True)
market_app = typer.Typer(help="Market price index and breach risk.", no_args_is_help=True)

CONTRACT_COLUMNS = ("id", "tenant", "providers", "capacity_kind", "model", "devices", "pricing_model", "unit_price",
                    "start", "end", "state")
ALLOCATION_COLUMNS = ("id", "tenant", "provider", "node", "device_index", "model", "milli", "purpose",
                      "contract_id", "billable", "start", "end")
INVOICE_COLUMNS = ("id", "number", "tenant", "period", "total", "currency", "book")
LINE_COLUMNS = ("line_no", "provider", "model", "pricing_model", "tier", "billable_quantity", "unit", "unit_price",
                "amount", "price_source")
SETTLEMENT_COLUMNS = ("provider", "period", "revenue", "share", "payout", "currency")


def api() -> ApiClient:
    return ApiClient.from_environment()


def get_text(client: ApiClient, path: str, **params: Any) -> str:
    """A GET whose answer is not JSON (the CSV export); errors are reported like every other call."""
    if not client.key:
        raise CliError("no API key: run 'zhisuan login --key KEY' or set ZHISUAN_API_KEY")
    try:
        response = httpx.get(f"{client.server}/api/v1{path}", params=params, timeout=30,
                             headers={"Authorization": f"Bearer {client.key}"})
    except httpx.TransportError as error:
        raise CliError(f"cannot reach zhisuan at {client.server}: {error}") from error
    if response.status_code >= 400:
        raise CliError(describe_error(response))
    return response.text


def parse_rate(spec: str) -> dict[str, Any]:
    """``MODEL:PRICING_MODEL=PRICE[,tenant=T][,site=S][,region=R][,spot=0.3][,reserved=12:0.15]``."""
    head, *options = spec.split(",")
    target, sep, price = head.partition("=")
    model, colon, pricing = target.rpartition(":")
    if not sep or not colon or not model:
        raise CliError(f"--rate '{spec}' is not MODEL:PRICING_MODEL=PRICE[,key=value…]")
    rate: dict[str, Any] = {"model": model, "pricing_model": pricing, "unit_price": price}
    for option in options:
        key, eq, value = option.partition("=")
        if not eq:
            raise CliError(f"--rate option '{option}' is not key=value")
        if key == "spot":
            rate["spot_discount"] = value
        elif key == "reserved":
            months, _, discount = value.partition(":")
            rate.setdefault("reserved_discounts", []).append({"min_months": int(months), "discount": discount})
        elif key in ("tenant", "site", "region"):
            rate[key] = value
        else:
            raise CliError(f"unknown --rate option '{key}' (tenant, site, region, spot, reserved)")
    return rate


def load_rates(rate: list[str] | None, rates_file: Path | None) -> list[dict[str, Any]]:
    rates = [parse_rate(spec) for spec in rate or []]
    if rates_file is not None:
        try:
            rates += jsonlib.loads(rates_file.read_text())
        except (OSError, ValueError) as error:
            raise CliError(f"cannot read rates from {rates_file}: {error}") from error
    if not rates:
        raise CliError("give at least one --rate (or --rates-file)")
    return rates


RateOpt = Annotated[list[str] | None, typer.Option(
    "--rate", help="MODEL:PRICING_MODEL=PRICE[,tenant=T,site=S,region=R,spot=0.3,reserved=12:0.15], repeatable")]
RatesFile = Annotated[Path | None, typer.Option(help="JSON list of rates")]


def emit_book(book: dict[str, Any], as_json: bool) -> None:
    if as_json:
        emit(book, True)
        return
    typer.echo(f"price book {book['name']} ({book['currency']}){' [default]' if book['default'] else ''}")
    rows = [{"version": v["version"], "effective_from": v["effective_from"], **r}
            for v in book["versions"] for r in v["rates"]]
    emit(rows, False, ("version", "effective_from", "model", "pricing_model", "unit_price", "tenant", "site",
                       "region", "spot_discount"))


@pricebook_app.command("create")
def pricebook_create(name: str, rate: RateOpt = None, rates_file: RatesFile = None,
                     effective_from: Annotated[str | None, typer.Option(help="ISO instant (default now)")] = None,
                     currency: str = "CNY", default: bool = False,
                     pflops_precision: Annotated[str, typer.Option(help="precision PFLOPS is measured at")] = "bf16",
                     devices_per_server: int = 8, json: JsonFlag = False) -> None:
    body = {"name": name, "rates": load_rates(rate, rates_file), "currency": currency, "default": default,
            "pflops_precision": pflops_precision, "devices_per_server": devices_per_server,
            "effective_from": effective_from}
    emit_book(api().post("/pricebooks", body), json)


@pricebook_app.command("add-version")
def pricebook_add_version(name: str, rate: RateOpt = None, rates_file: RatesFile = None,
                          effective_from: Annotated[str | None, typer.Option(help="ISO instant (default now)")] = None,
                          currency: str = "CNY", pflops_precision: str = "bf16", devices_per_server: int = 8,
                          json: JsonFlag = False) -> None:
    body = {"rates": load_rates(rate, rates_file), "currency": currency, "effective_from": effective_from,
            "pflops_precision": pflops_precision, "devices_per_server": devices_per_server}
    emit_book(api().post(f"/pricebooks/{name}/versions", body), json)


@pricebook_app.command("list")
def pricebook_list(json: JsonFlag = False) -> None:
    books = api().get("/pricebooks")
    emit(books if json else [{**b, "versions": len(b["versions"])} for b in books], json,
         ("id", "name", "currency", "default", "versions"))


@pricebook_app.command("show")
def pricebook_show(name: str, json: JsonFlag = False) -> None:
    emit_book(api().get(f"/pricebooks/{name}"), json)


def emit_contract(contract: dict[str, Any], as_json: bool) -> None:
    if as_json:
        emit(contract, True)
        return
    emit({k: v for k, v in contract.items() if k not in ("transitions", "amendments", "ettr_sla", "ettr")}, False)
    for line in sla_lines(contract):
        typer.echo(line)
    if contract["transitions"]:
        emit(contract["transitions"], False, ("from_state", "to_state", "at", "actor", "penalty", "amount_due",
                                              "deposit_refund", "reason"))


def sla_lines(contract: dict[str, Any]) -> list[str]:
    """The ETTR service level and the period's measured ETTR, in words (docs/goodput.md)."""
    sla, measured = contract.get("ettr_sla"), contract.get("ettr")
    if not sla:
        return []
    tiers = ", ".join(f"ETTR < {t['below']} → {t['percent']}%" for t in sla["tiers"])
    out = [f"ETTR SLA: target {sla['target']}; credits {tiers}; cap {sla['cap_percent']}% of the period's charge"]
    if measured:
        if measured["measured"] is None:
            verdict = "not measured yet (no attempt under the contract ended in the period)"
        elif measured["met"]:
            verdict = f"{measured['measured']} — met"
        else:
            verdict = (f"{measured['measured']} — missed: tier {measured['tier']}, credit "
                       f"{measured['credit_percent']}% of the period's charge")
        out.append(f"ETTR {measured['period']}: {verdict} ({measured['attempts']} attempts, "
                   f"{measured['platform_loss_s']:.0f} s of {measured['counted_s']:.0f} s lost to platform faults)")
    return out


def sla_body(target: str | None, tiers: list[str] | None, cap: str | None) -> dict[str, Any] | None:
    """--ettr-target 0.95 --ettr-tier 0.95:10 --ettr-tier 0.90:25 --ettr-cap 30 → the API's ettr_sla."""
    if target is None and not tiers and cap is None:
        return None
    if target is None or not tiers:
        raise CliError("an ETTR SLA needs --ettr-target and at least one --ettr-tier BELOW:PERCENT")
    parsed = []
    for tier in tiers:
        below, sep, percent = tier.partition(":")
        if not sep or not below or not percent:
            raise CliError(f"--ettr-tier takes BELOW:PERCENT (e.g. 0.95:10), not {tier!r}")
        parsed.append({"below": below, "percent": percent})
    return {"target": target, "tiers": parsed, "cap_percent": cap if cap is not None else "100"}


EttrTarget = Annotated[str | None, typer.Option(help="ETTR SLA target ratio, e.g. 0.95 (node leases)")]
EttrTier = Annotated[list[str] | None, typer.Option(
    help="credit tier BELOW:PERCENT, repeatable, descending from the target (e.g. 0.95:10 0.90:25)")]
EttrCap = Annotated[str | None, typer.Option(help="most a period's credit may be, percent of its charge "
                                                  "(default 100)")]


@contract_app.command("create")
def contract_create(
    tenant: Annotated[str, typer.Option(help="tenant name or id")],
    pricing_model: Annotated[str, typer.Option(help="server_month, pflops_year or device_hour")],
    unit_price: Annotated[str, typer.Option(help="CNY per unit of the pricing model")],
    start: Annotated[str, typer.Option(help="ISO instant, e.g. 2026-11-01T00:00:00Z")],
    closed_months: Annotated[int, typer.Option(help="months without exit")],
    open_months: Annotated[int, typer.Option(help="months with exit on notice")] = 0,
    node: Annotated[list[str] | None, typer.Option(help="leased node (site/name), repeatable")] = None,
    model: Annotated[str | None, typer.Option(help="accelerator model (quota/pflops capacity)")] = None,
    quota: Annotated[int, typer.Option(help="devices of the model (quota capacity)")] = 0,
    pflops: Annotated[str | None, typer.Option(help="PFLOPS (pflops capacity)")] = None,
    provider: Annotated[list[str] | None, typer.Option(help="provider(s), for quota/pflops capacity")] = None,
    notice_days: int = 30, deposit: str = "0", penalty_rate: str = "0.20", currency: str = "CNY",
    ettr_target: EttrTarget = None, ettr_tier: EttrTier = None, ettr_cap: EttrCap = None,
    note: str = "", json: JsonFlag = False,
) -> None:
    """Draft a contract over named nodes (--node), a quota (--model --quota) or PFLOPS (--model --pflops)."""
    kind = "nodes" if node else ("pflops" if pflops else "quota")
    capacity: dict[str, Any] = {"kind": kind, "nodes": node or [], "model": model, "quota": quota}
    if pflops:
        capacity["pflops"] = pflops
    body = {"tenant": tenant, "providers": provider or [], "capacity": capacity, "pricing_model": pricing_model,
            "unit_price": unit_price, "start": start, "closed_months": closed_months, "open_months": open_months,
            "notice_days": notice_days, "deposit": deposit, "penalty_rate": penalty_rate, "currency": currency,
            "note": note}
    sla = sla_body(ettr_target, ettr_tier, ettr_cap)
    if sla is not None:
        body["ettr_sla"] = sla
    emit_contract(api().post("/contracts", body), json)


@contract_app.command("list")
def contract_list(state: str | None = None, tenant: str | None = None, json: JsonFlag = False) -> None:
    emit(api().get("/contracts", state=state, tenant=tenant), json, CONTRACT_COLUMNS)


@contract_app.command("show")
def contract_show(contract_id: str, period: Annotated[str | None, typer.Option(
        help="billing period YYYY-MM whose ETTR to measure (default: the current one)")] = None,
        json: JsonFlag = False) -> None:
    emit_contract(api().get(f"/contracts/{contract_id}", period=period), json)


@contract_app.command("activate")
def contract_activate(contract_id: str, at: str | None = None, json: JsonFlag = False) -> None:
    emit_contract(api().post(f"/contracts/{contract_id}/activate", {"at": at}), json)


@contract_app.command("terminate")
def contract_terminate(contract_id: str,
                       notice_at: Annotated[str | None, typer.Option(help="when notice is given (default now)")] = None,
                       effective_at: Annotated[str | None, typer.Option(help="default notice + notice days")] = None,
                       reason: str = "terminated by tenant", json: JsonFlag = False) -> None:
    body = {"notice_at": notice_at, "effective_at": effective_at, "reason": reason}
    emit_contract(api().post(f"/contracts/{contract_id}/terminate", body), json)


@contract_app.command("breach")
def contract_breach(contract_id: str, at: str | None = None, reason: str = "tenant breach",
                    json: JsonFlag = False) -> None:
    emit_contract(api().post(f"/contracts/{contract_id}/breach", {"at": at, "reason": reason}), json)


@contract_app.command("expire")
def contract_expire(contract_id: str, at: str | None = None, json: JsonFlag = False) -> None:
    emit_contract(api().post(f"/contracts/{contract_id}/expire", {"at": at}), json)


@contract_app.command("amend")
def contract_amend(contract_id: str, effective_at: Annotated[str, typer.Option(help="ISO instant")],
                   unit_price: str | None = None, quota: int | None = None, pflops: str | None = None,
                   open_months: int | None = None, ettr_target: EttrTarget = None, ettr_tier: EttrTier = None,
                   ettr_cap: EttrCap = None, note: str = "", json: JsonFlag = False) -> None:
    body = {"effective_at": effective_at, "unit_price": unit_price, "quota": quota, "pflops": pflops,
            "open_months": open_months, "ettr_sla": sla_body(ettr_target, ettr_tier, ettr_cap), "note": note}
    emit_contract(api().post(f"/contracts/{contract_id}/amendments", body), json)


@contract_app.command("penalty")
def contract_penalty(contract_id: str, at: Annotated[str | None, typer.Option(help="default now")] = None,
                     json: JsonFlag = False) -> None:
    """Quote the early-exit penalty at an instant (nothing is changed)."""
    emit(api().get(f"/contracts/{contract_id}/penalty", at=at), json)


@allocation_app.command("create")
def allocation_create(
    tenant: Annotated[str, typer.Option()],
    node: Annotated[str, typer.Option(help="site/name or id")],
    device: Annotated[list[int] | None, typer.Option(help="device index, repeatable (default all)")] = None,
    milli: Annotated[int, typer.Option(help="thousandths of each device")] = 1000,
    purpose: str = "manual", ref: str = "", contract: int | None = None,
    pricing_model: str = "device_hour", tier: str = "on_demand",
    start: str | None = None, end: str | None = None, json: JsonFlag = False,
) -> None:
    body = {"tenant": tenant, "node": node, "devices": device or None, "milli": milli, "purpose": purpose,
            "ref": ref, "contract": contract, "pricing_model": pricing_model, "tier": tier, "start": start,
            "end": end}
    emit(api().post("/allocations", body), json, ALLOCATION_COLUMNS)


@allocation_app.command("list")
def allocation_list(tenant: str | None = None, contract: int | None = None, active_at: str | None = None,
                    json: JsonFlag = False) -> None:
    emit(api().get("/allocations", tenant=tenant, contract=contract, active_at=active_at), json, ALLOCATION_COLUMNS)


@allocation_app.command("end")
def allocation_end(allocation_id: int, at: str | None = None, json: JsonFlag = False) -> None:
    emit(api().post(f"/allocations/{allocation_id}/end", {"at": at}), json, ALLOCATION_COLUMNS)


@usage_app.command("list")
def usage_list(period: str | None = None, tenant: str | None = None, json: JsonFlag = False) -> None:
    emit(api().get("/usage", period=period, tenant=tenant), json,
         ("key", "tenant", "provider", "model", "pricing_model", "start", "end", "quantity", "invoice_line_id"))


@usage_app.command("ingest")
def usage_ingest(file: Annotated[Path, typer.Argument(help="JSON file: a list of token events")],
                 json: JsonFlag = False) -> None:
    """Send token events (as the MaaS gateway does); replays are counted once."""
    try:
        events = jsonlib.loads(file.read_text())
    except (OSError, ValueError) as error:
        raise CliError(f"cannot read events from {file}: {error}") from error
    result = api().post("/usage/token-events", {"events": events})
    if json:
        emit(result, True)
        return
    typer.echo(f"{result['status']}: {len(result['accepted'])} new records, {len(result['replayed'])} replayed")


@usage_app.command("summary")
def usage_summary(
    by: Annotated[str, typer.Option("--by", help="group by, comma-separated: key, model, day, tenant")] =
    "key,model,day",
    period: Annotated[str | None, typer.Option(help="billing month YYYY-MM (default: this month)")] = None,
    from_: Annotated[str | None, typer.Option("--from", help="first UTC day YYYY-MM-DD")] = None,
    to: Annotated[str | None, typer.Option(help="last UTC day YYYY-MM-DD (included)")] = None,
    tenant: Annotated[str | None, typer.Option(help="only this tenant (operators)")] = None,
    key: Annotated[str | None, typer.Option(help="only this API key id (the <id> of zs_<id>_…)")] = None,
    model: Annotated[str | None, typer.Option(help="only this served model")] = None,
    json: JsonFlag = False,
) -> None:
    """Token usage (requests, tokens, amount priced by the price book) per key, model and day."""
    summary = api().get("/usage/summary", group_by=by, period=period, to=to, tenant=tenant, key=key, model=model,
                        **{"from": from_})
    if json:
        emit(summary, True)
        return
    book = f"book {summary['book']} ({summary['currency']})" if summary["book"] else "no price book"
    typer.echo(f"token usage from {summary['start']} until {summary['end']}, priced by {book}")
    dims = summary["group_by"]
    total = {**summary["totals"], dims[0]: "TOTAL"} if dims else summary["totals"]
    emit([*summary["rows"], total], False, (*dims, "requests", "input_tokens", "output_tokens", "amount", "note"))
    for note in summary["notes"]:
        typer.echo(f"note: {note}")
    if summary.get("budgets"):
        typer.echo("budgets (usage recorded in the current budget period):")
        emit(summary["budgets"], False, ("scope", "ref", "budget_period", "period", "end", "token_budget",
                                         "tokens_used", "money_budget", "money_used"))


@usage_app.command("meter")
def usage_meter(until: Annotated[str | None, typer.Option(help="ISO instant (default now)")] = None,
                json: JsonFlag = False) -> None:
    """Run a metering pass: allocations → usage records, up to ``until``."""
    emit(api().post("/metering/run", {"until": until}), json)


def emit_invoices(invoices: list[dict[str, Any]], as_json: bool) -> None:
    if as_json:
        emit(invoices, True)
        return
    emit(invoices, False, INVOICE_COLUMNS)


@invoice_app.command("run")
def invoice_run(period: Annotated[str, typer.Argument(help="YYYY-MM")], book: str | None = None,
                json: JsonFlag = False) -> None:
    """Meter and invoice a closed period for every tenant with un-invoiced usage."""
    emit_invoices(api().post("/invoices/run", {"period": period, "book": book}), json)


@invoice_app.command("list")
def invoice_list(period: str | None = None, tenant: str | None = None, json: JsonFlag = False) -> None:
    emit_invoices(api().get("/invoices", period=period, tenant=tenant), json)


@invoice_app.command("show")
def invoice_show(ref: str, json: JsonFlag = False) -> None:
    invoice = api().get(f"/invoices/{ref}")
    if json:
        emit(invoice, True)
        return
    emit({k: v for k, v in invoice.items() if k != "lines"}, False)
    emit(invoice["lines"], False, LINE_COLUMNS)
    for line in invoice["lines"]:
        if line.get("description"):  # a credit says why (measured ETTR, target, tier)
            typer.echo(f"line {line['line_no']}: {line['description']}")


@invoice_app.command("export")
def invoice_export(ref: str, format: Annotated[str, typer.Option(help="csv or json")] = "csv",
                   output: Annotated[Path | None, typer.Option("-o", "--output", help="file (default stdout)")] = None,
                   ) -> None:
    client = api()
    if format == "json":
        text = jsonlib.dumps(client.get(f"/invoices/{ref}/export", format="json"), indent=2, ensure_ascii=False)
    elif format == "csv":
        text = get_text(client, f"/invoices/{ref}/export", format="csv")
    else:
        raise CliError(f"--format must be csv or json, not '{format}'")
    if output is None:
        typer.echo(text, nl=False)
    else:
        output.write_text(text, encoding="utf-8")
        typer.echo(f"invoice {ref} written to {output}")


@settlement_app.command("run")
def settlement_run(period: Annotated[str, typer.Argument(help="YYYY-MM")], json: JsonFlag = False) -> None:
    """(Re)compute every provider's payout of a period, and the platform margin."""
    emit_margin(api().post("/settlements/run", {"period": period}), json)


@settlement_app.command("list")
def settlement_list(period: str | None = None, json: JsonFlag = False) -> None:
    emit(api().get("/settlements", period=period), json, SETTLEMENT_COLUMNS)


@settlement_app.command("margin")
def settlement_margin(period: Annotated[str, typer.Argument(help="YYYY-MM")], json: JsonFlag = False) -> None:
    emit_margin(api().get(f"/margin/{period}"), json)


def emit_margin(summary: dict[str, Any], as_json: bool) -> None:
    if as_json:
        emit(summary, True)
        return
    emit({k: v for k, v in summary.items() if k != "settlements"}, False)
    emit(summary["settlements"], False, SETTLEMENT_COLUMNS)


@market_app.command("index")
def market_index(at: str | None = None, json: JsonFlag = False) -> None:
    emit(api().get("/market/index", at=at), json, ("model", "pricing_model", "price", "low", "high", "points",
                                                   "weight"))


@market_app.command("breach-risk")
def market_breach_risk(at: str | None = None, json: JsonFlag = False) -> None:
    emit(api().get("/market/breach-risk", at=at), json,
         ("contract_id", "tenant", "model", "pricing_model", "contract_price", "index_price", "penalty",
          "tenant_saving", "provider_exposure"))


def register(app: typer.Typer) -> None:
    app.add_typer(pricebook_app, name="pricebook")
    app.add_typer(contract_app, name="contract")
    app.add_typer(allocation_app, name="allocation")
    app.add_typer(usage_app, name="usage")
    app.add_typer(invoice_app, name="invoice")
    app.add_typer(settlement_app, name="settlement")
    app.add_typer(market_app, name="market")
