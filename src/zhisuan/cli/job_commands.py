"""``zhisuan job``: submit, list, show, events, logs (with --follow), cancel; ``job queue`` and ``job usage``."""

from __future__ import annotations

import re
import sys
import time
from pathlib import Path
from typing import Annotated, Any

import typer

from zhisuan.cli.arguments import parse_pairs
from zhisuan.cli.client import ApiClient, CliError
from zhisuan.cli.output import emit

JsonFlag = Annotated[bool, typer.Option("--json", help="print JSON")]
job_app = typer.Typer(help="Jobs: run training and batch work on leased capacity, through the sites' engines.",
                      no_args_is_help=True)
JOB_COLUMNS = ("id", "name", "tenant", "state", "priority_class", "workers", "devices", "site", "attempt", "reason")
EVENT_COLUMNS = ("at", "attempt", "state", "reason")
ENDED = ("succeeded", "failed", "cancelled")
DURATION = re.compile(r"^(-?\d+)\s*([smhd]?)$")
UNIT_SECONDS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}


def api() -> ApiClient:
    return ApiClient.from_environment()


def parse_duration(text: str) -> int:
    """``90``, ``90s``, ``30m``, ``2h``, ``1d`` → seconds (the server judges whether it is sensible)."""
    match = DURATION.match(text.strip())
    if match is None:
        raise CliError(f"time limit '{text}' is not a duration like 90s, 30m, 2h or 1d")
    return int(match.group(1)) * UNIT_SECONDS[match.group(2)]


def table_row(job: dict[str, Any]) -> dict[str, Any]:
    devices = job["devices_per_worker"]
    share = f"×{job['milli_per_device'] / 1000:g}" if devices and job["milli_per_device"] < 1000 else ""
    models = f" {','.join(job['models'])}" if job.get("models") else ""
    return {**job, "devices": f"{job['workers']}×{devices}{share}{models}" if devices else "cpu"}


def show_jobs(data: Any, json: bool) -> None:
    if json:
        emit(data, True)
        return
    rows = data if isinstance(data, list) else [data]
    emit([table_row(row) for row in rows], False, JOB_COLUMNS)


@job_app.command("submit", context_settings={"allow_interspersed_args": False})
def submit(
    command: Annotated[list[str] | None, typer.Argument(help="the program and its arguments (after --)")] = None,
    script: Annotated[Path | None, typer.Option(help="a shell script file to run instead of a command")] = None,
    name: Annotated[str | None, typer.Option(help="a name for the job")] = None,
    image: Annotated[str | None, typer.Option(help="container image (Kubernetes sites)")] = None,
    env: Annotated[list[str] | None, typer.Option(help="NAME=VALUE, repeatable")] = None,
    workdir: Annotated[str | None, typer.Option(help="relative to your working directory on the site")] = None,
    checkpoint_dir: Annotated[str | None, typer.Option(
        help="relative; given to the job as ZHISUAN_CHECKPOINT_DIR (opts in to restarts after faults)")] = None,
    max_restarts: Annotated[int | None, typer.Option(help="restarts after faults (default: the platform's)")] = None,
    hang_timeout: Annotated[str | None, typer.Option(
        help="no progress line for this long (e.g. 10m) → hung: stopped and restarted")] = None,
    workers: Annotated[int, typer.Option(help="nodes of a gang (all start together)")] = 1,
    gpus: Annotated[int, typer.Option("--gpus", "--devices", help="accelerators per worker")] = 0,
    share: Annotated[int, typer.Option(help="milli of one device (1–1000) for a fractional job")] = 1000,
    model: Annotated[list[str] | None, typer.Option(help="accelerator model allowed, repeatable")] = None,
    min_device_memory_gib: Annotated[float, typer.Option(help="minimum memory per device")] = 0,
    cpu: Annotated[float, typer.Option(help="CPU cores per worker")] = 1.0,
    memory_gib: Annotated[float, typer.Option(help="memory per worker, GiB")] = 1.0,
    time_limit: Annotated[str, typer.Option(help="maximum run time: 90s, 30m, 2h, 1d")] = "1h",
    priority_class: Annotated[str, typer.Option("--class", help="reserved | elastic | spot")] = "elastic",
    priority: Annotated[int, typer.Option(help="order among your own jobs (higher first)")] = 0,
    site: Annotated[list[str] | None, typer.Option(help="allowed site, repeatable")] = None,
    region: Annotated[list[str] | None, typer.Option(help="allowed region, repeatable")] = None,
    tenant: Annotated[str | None, typer.Option(help="operators: submit for this tenant")] = None,
    json: JsonFlag = False,
) -> None:
    """Queue a job, e.g. ``zhisuan job submit --gpus 8 --workers 2 -- python train.py``."""
    body: dict[str, Any] = {
        "name": name, "image": image, "env": parse_pairs(env or [], "--env"), "workdir": workdir,
        "checkpoint_dir": checkpoint_dir, "max_restarts": max_restarts,
        "hang_timeout_s": parse_duration(hang_timeout) if hang_timeout else None,
        "workers": workers, "devices_per_worker": gpus, "milli_per_device": share,
        "models": model or None, "min_device_memory_gib": min_device_memory_gib, "cpu_cores": cpu,
        "memory_gib": memory_gib, "max_run_seconds": parse_duration(time_limit), "priority_class": priority_class,
        "priority": priority, "sites": site or None, "regions": region or None, "tenant": tenant,
    }
    if script is not None:
        try:
            body["script"] = script.read_text(encoding="utf-8")
        except OSError as error:
            raise CliError(f"cannot read {script}: {error.strerror}") from error
    else:
        body["command"] = command or None
    show_jobs(api().post("/jobs", {k: v for k, v in body.items() if v is not None}), json)


@job_app.command("list")
def list_jobs(
    state: Annotated[str | None, typer.Option(help="active, queued, running, succeeded, failed…")] = None,
    tenant: Annotated[str | None, typer.Option(help="operators: one tenant's jobs")] = None,
    limit: int = 200,
    json: JsonFlag = False,
) -> None:
    show_jobs(api().get("/jobs", state=state, tenant=tenant, limit=limit), json)


@job_app.command("show")
def show(job_id: int, json: JsonFlag = False) -> None:
    emit(api().get(f"/jobs/{job_id}"), json)


@job_app.command("events")
def events(job_id: int, json: JsonFlag = False) -> None:
    """Every transition with its reason: why the job is pending, where it ran, how it ended."""
    emit(api().get(f"/jobs/{job_id}/events"), json, EVENT_COLUMNS)


@job_app.command("goodput")
def goodput(job_id: int, json: JsonFlag = False) -> None:
    """Where the job's wall time went: queueing, productive, checkpoint, lost, restart — and its ETTR."""
    result = api().get(f"/jobs/{job_id}/goodput")
    if json:
        emit(result, True)
        return
    b = result["breakdown"]
    typer.echo(f"job {job_id} ({result['state']}, attempt {result['attempts']}, {result['restarts']} restarts): "
               f"wall {b['wall']:.1f} s, ETTR {'n/a' if b['ettr'] is None else format(b['ettr'], '.1%')}")
    for part in ("queueing", "productive", "checkpoint", "lost", "restart"):
        share = b[part] / b["wall"] if b["wall"] else 0.0
        typer.echo(f"  {part:<10} {b[part]:>10.1f} s  {share:>6.1%}  {'#' * round(share * 40)}")


@job_app.command("cancel")
def cancel(job_id: int, json: JsonFlag = False) -> None:
    show_jobs(api().post(f"/jobs/{job_id}/cancel", {}), json)


@job_app.command("logs")
def logs(
    job_id: int,
    rank: Annotated[int, typer.Option(help="which worker")] = 0,
    stderr: Annotated[bool, typer.Option("--stderr", help="standard error instead of standard output")] = False,
    follow: Annotated[bool, typer.Option("--follow", "-f", help="keep printing until the job ends")] = False,
    interval: Annotated[float, typer.Option(help="seconds between polls with --follow")] = 1.0,
) -> None:
    client, offset = api(), 0
    stream = "stderr" if stderr else "stdout"
    while True:
        chunk = client.get(f"/jobs/{job_id}/logs", rank=rank, stream=stream, offset=offset)
        if chunk["data"]:
            sys.stdout.write(chunk["data"])
            sys.stdout.flush()
        moved = chunk["next_offset"] != offset
        offset = chunk["next_offset"]
        if moved:
            continue  # more may be waiting: read on before sleeping
        if chunk["complete"] or not follow:
            return
        if client.get(f"/jobs/{job_id}")["state"] in ENDED:
            follow = False  # one more read after the end, then stop
            continue
        time.sleep(interval)


@job_app.command("queue")
def queue(json: JsonFlag = False) -> None:
    """Operators: pending jobs by tenant and reason, running jobs, borrowed capacity, preemptions."""
    data = api().get("/jobs/queue")
    if json:
        emit(data, True)
        return
    typer.echo(f"borrowed devices: {data['borrowed_devices']:g}   preemptions so far: {data['preemptions_total']}")
    typer.echo("\nPENDING")
    emit(data["pending"], False, ("tenant", "priority_class", "jobs", "reason"))
    typer.echo("\nRUNNING")
    emit(data["running"], False, ("tenant", "priority_class", "state", "jobs"))
    typer.echo("\nGUARANTEED vs IN USE (devices)")
    rows = [{"tenant": t, "model": m, "guaranteed": g, "in_use": data["in_use"].get(t, {}).get(m, 0)}
            for t, models in data["guarantees"].items() for m, g in models.items()]
    emit(rows, False, ("tenant", "model", "guaranteed", "in_use"))


@job_app.command("usage")
def usage(tenant: Annotated[str | None, typer.Option(help="operators: one tenant")] = None,
          json: JsonFlag = False) -> None:
    """Device-hours by model and outcome: useful, failed, preempted and platform-fault time apart."""
    emit(api().get("/jobs/usage", tenant=tenant), json, ("tenant", "model", "outcome", "unit", "hours",
                                                         "billable_hours"))


def register(app: typer.Typer) -> None:
    app.add_typer(job_app, name="job")
