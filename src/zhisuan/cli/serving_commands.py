"""``zhisuan model`` (the registry) and ``zhisuan deployment`` (model services) commands."""

from __future__ import annotations

from typing import Annotated, Any

import typer

from zhisuan.cli.client import ApiClient
from zhisuan.cli.output import emit

JsonFlag = Annotated[bool, typer.Option("--json", help="print JSON")]
model_app = typer.Typer(help="The model registry: what the MaaS gateway can serve.", no_args_is_help=True)
deployment_app = typer.Typer(help="Model services: N replicas of a registered model on the pool.",
                             no_args_is_help=True)
MODEL_COLUMNS = ("id", "name", "engine", "context_length", "stacks", "source")
DEPLOYMENT_COLUMNS = ("id", "name", "model", "tenant", "status", "replicas", "autoscale", "where", "message")
EVENT_COLUMNS = ("at", "kind", "replicas_from", "replicas_to", "reason")


def api() -> ApiClient:
    return ApiClient.from_environment()


def with_where(row: dict[str, Any]) -> dict[str, Any]:
    """One cell summarising the replicas: ``local/vm:healthy(load 0.5), local/vm:starting``."""
    shown = [r for r in row["replica_states"] if r["state"] != "stopped" or row["status"] == "stopped"]
    where = ", ".join(f"{r['node'] or '?'}{r['devices'] or ''}:{r['state']}"
                      + (f"(load {r['load']:g})" if r["state"] == "healthy" else "") for r in shown)
    scaling = row.get("autoscale")
    unit = "s queue wait" if scaling and scaling.get("target_kind") == "queue_time_s" else "/slot"
    autoscale = (f"{scaling['min']}..{scaling['max']} at {scaling['target']:g}{unit}" if scaling else "fixed")
    return {**row, "where": where or "-", "autoscale": autoscale}


def show(data: Any, json: bool) -> None:
    """JSON as the API returned it; a table with one "where" cell per deployment otherwise."""
    if json:
        emit(data, True)
        return
    rows = data if isinstance(data, list) else [data]
    emit([with_where(row) for row in rows], False, DEPLOYMENT_COLUMNS)


@model_app.command("register")
def model_register(
    name: str,
    source: Annotated[str, typer.Option(help="GGUF file (llama.cpp) or weights directory on the serving nodes")],
    engine: Annotated[str, typer.Option(help="llama.cpp, vllm, vllm-ascend or mindie")] = "llama.cpp",
    context_length: int = 4096,
    embeddings: Annotated[bool, typer.Option(help="also serve /v1/embeddings")] = False,
    description: str = "",
    json: JsonFlag = False,
) -> None:
    body = {"name": name, "source": source, "engine": engine, "context_length": context_length,
            "embeddings": embeddings, "description": description}
    emit(api().post("/models", body), json, MODEL_COLUMNS)


@model_app.command("list")
def model_list(json: JsonFlag = False) -> None:
    emit(api().get("/models"), json, MODEL_COLUMNS)


@model_app.command("show")
def model_show(ref: str, json: JsonFlag = False) -> None:
    emit(api().get(f"/models/{ref}"), json)


@model_app.command("delete")
def model_delete(ref: str) -> None:
    api().delete(f"/models/{ref}")
    typer.echo(f"model {ref} removed from the registry")


@deployment_app.command("create")
def deployment_create(
    model: str,
    replicas: int = 1,
    name: Annotated[str | None, typer.Option(help="default: from the model's name")] = None,
    devices: Annotated[int, typer.Option("--devices", help="accelerators per replica (0: CPU engine)")] = 0,
    milli: Annotated[int, typer.Option(help="share of each device, 1..1000")] = 1000,
    cpu: Annotated[float, typer.Option(help="CPU cores per replica")] = 1.0,
    memory_gib: float = 1.0,
    site: Annotated[str | None, typer.Option(help="keep the replicas in this site")] = None,
    tenant: Annotated[str | None, typer.Option(help="owner (operators; default: public MaaS)")] = None,
    json: JsonFlag = False,
) -> None:
    """Place the replicas through the placement engine (all or none) and start them."""
    body = {"model": model, "replicas": replicas, "name": name, "devices_per_replica": devices,
            "milli_per_device": milli, "cpu_cores": cpu, "memory_gib": memory_gib, "site": site, "tenant": tenant}
    show(api().post("/deployments", body), json)


@deployment_app.command("list")
def deployment_list(all: Annotated[bool, typer.Option("--all", help="include stopped ones")] = False,
                    json: JsonFlag = False) -> None:
    show(api().get("/deployments", all=str(all).lower()), json)


@deployment_app.command("show")
def deployment_show(ref: str, json: JsonFlag = False) -> None:
    """The deployment, its autoscaling, and its latest replica changes (events)."""
    data = api().get(f"/deployments/{ref}")
    show(data, json)
    if not json and data.get("events"):
        typer.echo("")
        emit(data["events"], False, EVENT_COLUMNS)


@deployment_app.command("scale")
def deployment_scale(ref: str, replicas: int, json: JsonFlag = False) -> None:
    """Scale now: out through placement and the ledger (409 naming what does not fit or the quota), in
    by draining (in-flight requests finish)."""
    show(api().patch(f"/deployments/{ref}", {"replicas": replicas}), json)


@deployment_app.command("autoscale")
def deployment_autoscale(
    ref: str,
    min: Annotated[int, typer.Option("--min", help="fewest replicas (0: scale to zero when idle)")] = 1,
    max: Annotated[int, typer.Option("--max", help="most replicas")] = 3,
    target: Annotated[float, typer.Option(help=(
        "in_flight_per_slot: requests per engine slot (1.0 = every slot busy, above 1 = queued); "
        "queue_time_s: seconds from arrival at a gateway to the first response byte"))] = 0.7,
    target_kind: Annotated[str, typer.Option(help="in_flight_per_slot | queue_time_s")] = "in_flight_per_slot",
    out_cooldown: Annotated[int, typer.Option(help="seconds between scale-outs")] = 30,
    in_cooldown: Annotated[int, typer.Option(help="seconds from any change to a scale-in")] = 300,
    off: Annotated[bool, typer.Option("--off", help="clear autoscaling (keep the current size)")] = False,
    json: JsonFlag = False,
) -> None:
    """Let the control plane scale the deployment by load between --min and --max."""
    policy = None if off else {"min": min, "max": max, "target_kind": target_kind, "target": target,
                               "scale_out_cooldown_s": out_cooldown,
                               "scale_in_cooldown_s": in_cooldown}
    show(api().patch(f"/deployments/{ref}", {"autoscale": policy}), json)


@deployment_app.command("delete")
def deployment_delete(ref: str, json: JsonFlag = False) -> None:
    """Undeploy: replicas drain (in-flight requests finish), then stop and release their devices."""
    show(api().delete(f"/deployments/{ref}"), json)


def register(app: typer.Typer) -> None:
    app.add_typer(model_app, name="model")
    app.add_typer(deployment_app, name="deployment")
