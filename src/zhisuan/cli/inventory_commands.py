"""``zhisuan provider|site|node|catalog|fleet`` commands."""

from __future__ import annotations

from typing import Annotated

import typer

from zhisuan.cli.client import ApiClient, CliError
from zhisuan.cli.output import emit, print_table_pages

JsonFlag = Annotated[bool, typer.Option("--json", help="print JSON")]
provider_app = typer.Typer(help="Providers (算力资产方): owners of sites.", no_args_is_help=True)
site_app = typer.Typer(help="Sites: one cluster under one engine.", no_args_is_help=True)
node_app = typer.Typer(help="Nodes and their accelerators.", no_args_is_help=True)
catalog_app = typer.Typer(help="The accelerator catalog.", no_args_is_help=True)
fleet_app = typer.Typer(help="Fleet-wide figures.", no_args_is_help=True)
SITE_COLUMNS = ("id", "name", "engine", "region", "provider", "nodes", "accelerators")
NODE_COLUMNS = ("id", "site", "name", "status", "drained", "cpu_cores", "memory_mib", "accelerators",
                "last_heartbeat_at", "cordon_reason")


def api() -> ApiClient:
    return ApiClient.from_environment()


def with_accelerator_summary(node: dict) -> dict:  # type: ignore[type-arg]
    models: dict[str, int] = {}
    for device in node["devices"]:
        models[device["model"]] = models.get(device["model"], 0) + 1
    return {**node, "accelerators": ", ".join(f"{count}x {model}" for model, count in models.items()) or "-"}


@provider_app.command("create")
def provider_create(name: str, revenue_share: Annotated[str, typer.Option(help="0..1, e.g. 0.7")],
                    display_name: str = "", json: JsonFlag = False) -> None:
    body = {"name": name, "revenue_share": revenue_share, "display_name": display_name}
    emit(api().post("/providers", body), json, ("id", "name", "display_name", "revenue_share"))


@provider_app.command("list")
def provider_list(json: JsonFlag = False) -> None:
    emit(api().get("/providers"), json, ("id", "name", "display_name", "revenue_share"))


@provider_app.command("show")
def provider_show(ref: str, json: JsonFlag = False) -> None:
    emit(api().get(f"/providers/{ref}"), json)


@site_app.command("create")
def site_create(
    name: str,
    engine: Annotated[str, typer.Option(help="local, slurm, kubernetes, ray or simulated")],
    region: Annotated[str, typer.Option(help="e.g. cn-east-1")],
    provider: Annotated[str, typer.Option(help="owning provider")],
    slurm_conf: Annotated[str | None, typer.Option(help="Slurm: path of the site's slurm.conf")] = None,
    partition: Annotated[str | None, typer.Option(help="Slurm: partition to submit to")] = None,
    log_dir: Annotated[str | None, typer.Option(help="Slurm: directory shared with the nodes for job output")] = None,
    api_url: Annotated[str | None, typer.Option(help="Kubernetes: API server URL")] = None,
    token_file: Annotated[str | None, typer.Option(help="Kubernetes: file holding a bearer token")] = None,
    json: JsonFlag = False,
) -> None:
    config = {k: v for k, v in {"slurm_conf": slurm_conf, "partition": partition, "log_dir": log_dir,
                                "api_url": api_url, "token_file": token_file}.items() if v is not None}
    body = {"name": name, "engine": engine, "region": region, "provider": provider, "engine_config": config or None}
    emit(api().post("/sites", body), json, SITE_COLUMNS)


@site_app.command("sync")
def site_sync(ref: str, json: JsonFlag = False) -> None:
    """Import the site's nodes and devices from its engine (Slurm, Kubernetes) now."""
    emit(api().post(f"/sites/{ref}/sync", {}), json)


@site_app.command("list")
def site_list(json: JsonFlag = False) -> None:
    emit(api().get("/sites"), json, SITE_COLUMNS)


@site_app.command("show")
def site_show(ref: str, json: JsonFlag = False) -> None:
    emit(api().get(f"/sites/{ref}"), json)


@site_app.command("agent-key")
def site_agent_key(ref: str, expires_in_days: float | None = None, json: JsonFlag = False) -> None:
    """Issue a key with which ``zhisuan agent`` joins one node to this site (one key per node).

    The key alone goes to stdout, so ``zhisuan site agent-key SITE > node.key`` makes a key file."""
    issued = api().post(f"/sites/{ref}/agent-keys", {"expires_in_days": expires_in_days})
    if json:
        emit(issued, True)
        return
    typer.echo(f"agent key {issued['key_id']} for one node of site {ref} (shown once); on that node:\n"
               f"  zhisuan agent --server {api().server} --token-file FILE   (or ZHISUAN_AGENT_TOKEN)", err=True)
    typer.echo(issued["key"])


@node_app.command("list")
def node_list(site: str | None = None, status: str | None = None,
              model: Annotated[str | None, typer.Option(help="only nodes with a device of this model")] = None,
              json: JsonFlag = False,
              page_size: Annotated[int | None, typer.Option(help="nodes per request (default: the server's)")]
              = None,
              limit: Annotated[int | None, typer.Option(min=1, help="show at most this many nodes (by id)")]
              = None) -> None:
    """Nodes by id, filtered by the server; the table prints each page as it arrives."""
    pages = api().pages("/nodes", most=limit, site=site, status=status, model=model, limit=page_size)
    if json:
        emit([node for page in pages for node in page], True)
        return
    print_table_pages(([with_accelerator_summary(n) for n in page] for page in pages), NODE_COLUMNS)


@node_app.command("show")
def node_show(ref: str, json: JsonFlag = False) -> None:
    node = api().get(f"/nodes/{ref}")
    if json:
        emit(node, True)
        return
    emit({k: v for k, v in with_accelerator_summary(node).items() if k != "devices"}, False)
    emit(node["devices"], False, ("index", "model", "reported_name", "memory_mib", "health", "health_detail",
                                  "available", "cordon_reason", "uuid"))


@node_app.command("add")
def node_add(
    name: str,
    site: Annotated[str, typer.Option(help="site the node belongs to")],
    cpu: Annotated[int, typer.Option(help="CPU cores")],
    memory_mib: Annotated[int, typer.Option(help="memory in MiB")],
    accel: Annotated[list[str] | None, typer.Option(help="MODEL:COUNT, repeatable (e.g. h100-sxm:8)")] = None,
    json: JsonFlag = False,
) -> None:
    """Declare a node by hand (for sites whose engine, not an agent, reports the inventory)."""
    accelerators = []
    for item in accel or []:
        model, sep, count = item.rpartition(":")
        if not sep or not count.isdigit():
            raise CliError(f"--accel '{item}' is not MODEL:COUNT")
        accelerators.append({"model": model, "count": int(count)})
    body = {"site": site, "name": name, "cpu_cores": cpu, "memory_mib": memory_mib, "accelerators": accelerators}
    emit(with_accelerator_summary(api().post("/nodes", body)), json, NODE_COLUMNS)


@node_app.command("drain")
def node_drain(ref: str, json: JsonFlag = False) -> None:
    emit(with_accelerator_summary(api().patch(f"/nodes/{ref}", {"drained": True})), json, NODE_COLUMNS)


@node_app.command("resume")
def node_resume(ref: str, json: JsonFlag = False) -> None:
    emit(with_accelerator_summary(api().patch(f"/nodes/{ref}", {"drained": False})), json, NODE_COLUMNS)


@node_app.command("label")
def node_label(ref: str, labels: Annotated[list[str], typer.Argument(help="KEY=VALUE to set, KEY- to remove")],
               json: JsonFlag = False) -> None:
    """Set or remove a node's labels, e.g. ``zhisuan node label hpc/sn3 zhisuan.io/spare-for=acme`` (a hot
    spare of tenant acme: its jobs restart there first after a fault)."""
    current = dict(api().get(f"/nodes/{ref}")["labels"])
    for item in labels:
        key, sep, value = item.partition("=")
        if sep:
            current[key] = value
        elif item.endswith("-"):
            current.pop(item[:-1], None)
        else:
            raise CliError(f"label '{item}' is neither KEY=VALUE nor KEY-")
    emit(with_accelerator_summary(api().patch(f"/nodes/{ref}", {"labels": current})), json, NODE_COLUMNS)


@node_app.command("cordon")
def node_cordon(ref: str, reason: Annotated[str, typer.Option(help="why (shown with the node)")],
                json: JsonFlag = False) -> None:
    """Keep new work off a node (running jobs stay); it stays out until ``zhisuan node uncordon``."""
    emit(with_accelerator_summary(api().post(f"/nodes/{ref}/cordon", {"reason": reason})), json, NODE_COLUMNS)


@node_app.command("uncordon")
def node_uncordon(ref: str, device: Annotated[int | None, typer.Option(
                      help="return only this device (its index), cordoned for its own fault")] = None,
                  json: JsonFlag = False) -> None:
    """Return a cordoned node once its health check passes (reachable, no node-wide fault); with
    ``--device INDEX``, one cordoned device once it reports no fault."""
    body = {} if device is None else {"device": device}
    emit(with_accelerator_summary(api().post(f"/nodes/{ref}/uncordon", body)), json, NODE_COLUMNS)


@node_app.command("delete")
def node_delete(ref: str) -> None:
    api().delete(f"/nodes/{ref}")
    typer.echo(f"node {ref} deleted")


@catalog_app.command("list")
def catalog_list(vendor: str | None = None, json: JsonFlag = False) -> None:
    models = api().get("/catalog/models", vendor=vendor)
    emit(models, json, ("key", "vendor", "name", "memory_gib", "bf16_tflops", "stack", "k8s_resource"))


@catalog_app.command("show")
def catalog_show(model: str, json: JsonFlag = False) -> None:
    emit(api().get(f"/catalog/models/{model}"), json)


@fleet_app.command("summary")
def fleet_summary(json: JsonFlag = False) -> None:
    summary = api().get("/fleet/summary")
    if json:
        emit(summary, True)
        return
    emit({k: v for k, v in summary.items() if k != "by_model"}, False)
    emit(summary["by_model"], False, ("model", "vendor", "total", "available", "unhealthy"))


def place(
    devices: Annotated[int, typer.Option(help="how many accelerators")] = 1,
    share: Annotated[int, typer.Option(help="milli of each device (1000 = whole)")] = 1000,
    model: Annotated[list[str] | None, typer.Option(help="allowed model, repeatable")] = None,
    stack: Annotated[str | None, typer.Option(help="software stack: CUDA, CANN, …")] = None,
    min_memory_gib: Annotated[float, typer.Option(help="minimum memory per device")] = 0,
    cpu: Annotated[float, typer.Option(help="CPU cores")] = 0,
    memory_gib: Annotated[float, typer.Option(help="host memory")] = 0,
    tenant: Annotated[str | None, typer.Option(help="place as this tenant (operators)")] = None,
    policy: Annotated[str, typer.Option(help="placement policy")] = "zhisuan",
    json: JsonFlag = False,
) -> None:
    """Ask the placement engine where a workload would go now, or why it would wait."""
    body = {"devices": devices, "milli_per_device": share, "models": model, "stack": stack,
            "min_device_memory_gib": min_memory_gib, "cpu_cores": cpu, "memory_gib": memory_gib,
            "tenant": tenant, "policy": policy}
    result = api().post("/placement/preview", body)
    if json:
        emit(result, True)
        return
    typer.echo(result["message"])


def register(app: typer.Typer) -> None:
    app.add_typer(provider_app, name="provider")
    app.add_typer(site_app, name="site")
    app.add_typer(node_app, name="node")
    app.add_typer(catalog_app, name="catalog")
    app.add_typer(fleet_app, name="fleet")
    app.command("place")(place)
