"""``zhisuan sim replay``: the FGD paper's experiment for any node list, pod trace, policies and seeds.

With no flags it replays the packaged openb default trace (``sim/data``, CC BY 4.0 Alibaba Group) on
the packaged node list with the paper's seed-42 order, i.e. the paper's default row. Other traces::

    python -m zhisuan.sim.cli replay --trace ../shared/traces/alibaba-gpu-v2023/openb_pod_list_gpushare40.csv \\
        --policy fgd --policy zhisuan --seeds 42-51 --out out/replay

Paper orders are looked up in ``--order-dir``, else in ``paper-order/`` beside the trace, else in the
packaged data; with ``--orders auto`` (the default) a missing one is generated from the seed.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Annotated

import typer

from zhisuan.core.placement.policies import PAPER_NAMES, POLICIES
from zhisuan.sim.bucketing import alloc_discrete, frag_discrete
from zhisuan.sim.goodput import GoodputInputError, GoodputInputs, format_text, parse_rates
from zhisuan.sim.goodput import run as run_goodput
from zhisuan.sim.orders import ArrivalOrder, generate_order, load_paper_order, paper_order_files, trace_name
from zhisuan.sim.outputs import (
    ATTRIBUTION,
    RunCurves,
    summarise,
    write_curves_csv,
    write_plot,
    write_summary_csv,
)
from zhisuan.sim.replay import replay
from zhisuan.sim.traces import NodeTable, PodTable, TraceFormatError, load_nodes, load_pods, node_models

sim_app = typer.Typer(help="Trace-driven placement simulation (FGD paper protocol) and the goodput simulator.",
                      no_args_is_help=True)

PROGRESS_STEP = 512
PACKAGED = Path(__file__).resolve().parent / "data"
DEFAULT_TRACE = PACKAGED / "openb_pod_list_default.csv.gz"
DEFAULT_NODES = PACKAGED / "openb_node_list_gpu_node.csv.gz"


def progress_ticker(update: Callable[[int], None]) -> Callable[[int], None]:
    """Per-event callback that advances a progress bar every ``PROGRESS_STEP`` events."""

    def tick(event: int) -> None:
        if event % PROGRESS_STEP == PROGRESS_STEP - 1:
            update(PROGRESS_STEP)

    return tick


def parse_seeds(text: str) -> list[int]:
    """``42-51`` or ``1,2,5`` -> list of seeds."""
    seeds: list[int] = []
    for part in text.split(","):
        lo, _, hi = part.strip().partition("-")
        seeds.extend(range(int(lo), int(hi) + 1) if hi else [int(lo)])
    return seeds


def order_dirs(order_dir: Path | None, trace_path: Path) -> list[Path]:
    """Where paper orders are looked for: the explicit directory, else beside the trace, then packaged."""
    if order_dir is not None:
        return [order_dir]
    return [trace_path.parent / "paper-order", PACKAGED / "paper-order"]


def choose_order(
    orders: str, candidates: list[Path], trace: str, seed: int, pods: PodTable, nodes: NodeTable
) -> ArrivalOrder:
    """The shipped paper order when asked for (or, with ``auto``, when it exists), else a generated one."""
    found = [d for d in candidates if all(p.is_file() for p in paper_order_files(d, trace, seed))]
    if orders == "paper" and not found:
        where = " or ".join(str(d) for d in candidates)
        raise typer.BadParameter(f"no paper order for trace {trace!r} seed {seed} in {where}")
    if orders == "paper" or (orders == "auto" and found):
        return load_paper_order(found[0], trace, seed, pods, nodes)
    return generate_order(pods, nodes, seed)


Job = tuple[Path, PodTable, str, int, ArrivalOrder]


def fail(error: TraceFormatError) -> typer.Exit:
    typer.echo(f"error: {error}", err=True)
    return typer.Exit(2)


def plan_jobs(
    trace: list[Path], nodes: Path, policies: list[str], seeds: str, orders: str, order_dir: Path | None
) -> tuple[NodeTable, list[Job]]:
    """Load and validate every input and order up front, so bad input fails before any replay."""
    try:
        node_table = load_nodes(nodes)
        jobs: list[Job] = []
        for path in trace:
            pods = load_pods(path, node_models(node_table))
            for seed in parse_seeds(seeds):
                candidates = order_dirs(order_dir, path)
                order = choose_order(orders, candidates, trace_name(path), seed, pods, node_table)
                jobs.extend((path, pods, name, seed, order) for name in policies)
    except TraceFormatError as error:
        raise fail(error) from None
    return node_table, jobs


def run_jobs(node_table: NodeTable, jobs: list[Job]) -> list[RunCurves]:
    """Replay every job under one progress bar (advanced per event)."""
    runs: list[RunCurves] = []
    total_events = sum(len(job[4].events) for job in jobs)
    with typer.progressbar(length=total_events, label=f"replaying {len(jobs)} runs", show_pos=True) as bar:
        for path, pods, name, seed, order in jobs:
            started = time.perf_counter()
            result = replay(node_table, pods, order, name, seed, progress=progress_ticker(bar.update))
            elapsed = time.perf_counter() - started
            bar.update(len(order.events) % PROGRESS_STEP)
            runs.append(
                RunCurves(
                    workload=f"openb_pod_list_{trace_name(path)}",
                    policy=PAPER_NAMES.get(name, name),
                    seed=seed,
                    order=order.source,
                    alloc=alloc_discrete(result.arrived, result.used, result.total_gpus),
                    frag=frag_discrete(result.arrived, result.frag, result.total_gpus),
                    seconds=elapsed,
                )
            )
    return runs


def write_outputs(runs: list[RunCurves], out: Path, plot: bool) -> None:
    out.mkdir(parents=True, exist_ok=True)
    write_curves_csv(runs, out / "analysis_allo_discrete.csv", "alloc")
    write_curves_csv(runs, out / "analysis_frag_discrete.csv", "frag")
    summary = summarise(runs)
    write_summary_csv(summary, out / "summary.csv")
    if plot:
        write_plot(runs, out / "replay.png")
    for row in summary:
        typer.echo(
            f"{row['workload']:<28} {row['sc_policy']:<16} order={row['order']:<9} seeds={row['seeds']:<3} "
            f"alloc@100 {row['alloc_100_mean']:.2f}±{row['alloc_100_std']:.2f}  "
            f"alloc@130 {row['alloc_130_mean']:.2f}±{row['alloc_130_std']:.2f}  "
            f"frag@130 {row['frag_130_mean']:.2f}  {row['seconds_mean']:.2f}s/run"
        )
    typer.echo(
        f"wrote {out}/analysis_allo_discrete.csv, analysis_frag_discrete.csv, summary.csv"
        f"{', replay.png' if plot else ''}. {ATTRIBUTION}"
    )


@sim_app.command("replay")
def replay_command(
    trace: Annotated[
        list[Path] | None, typer.Option(help="pod trace CSV or .csv.gz (repeatable); default: packaged openb default")
    ] = None,
    nodes: Annotated[Path, typer.Option(help="node list CSV (default: packaged openb GPU nodes)")] = DEFAULT_NODES,
    policy: Annotated[
        list[str] | None, typer.Option(help=f"policy (repeatable; default fgd and zhisuan): {', '.join(POLICIES)}")
    ] = None,
    seeds: Annotated[str, typer.Option(help="seeds, e.g. 42-51 or 1,2,3")] = "42",
    orders: Annotated[str, typer.Option(help="paper | generated | auto (paper if shipped)")] = "auto",
    order_dir: Annotated[
        Path | None, typer.Option(help="directory of paper orders (default: beside the trace, then packaged)")
    ] = None,
    out: Annotated[Path, typer.Option(help="output directory")] = Path("out/replay"),
    plot: Annotated[bool, typer.Option(help="write replay.png")] = True,
) -> None:
    """Replay traces with policies and seeds; write alloc/frag curve CSVs, a summary CSV and a plot."""
    policies = policy or ["fgd", "zhisuan"]  # the paper's row and ours, side by side
    for name in policies:
        if name not in POLICIES:
            raise typer.BadParameter(f"unknown policy {name!r}; choose from {', '.join(POLICIES)}")
    if orders not in ("paper", "generated", "auto"):
        raise typer.BadParameter("--orders must be paper, generated or auto")
    node_table, jobs = plan_jobs(trace or [DEFAULT_TRACE], nodes, policies, seeds, orders, order_dir)
    write_outputs(run_jobs(node_table, jobs), out, plot)


@sim_app.command("policies")
def policies_command() -> None:
    """List placement policies."""
    for name in POLICIES:
        typer.echo(name)


@sim_app.command("goodput")
def goodput_command(
    gpus: Annotated[int, typer.Option(help="GPUs in the training job")] = GoodputInputs.gpus,
    gpus_per_node: Annotated[int, typer.Option(help="GPUs per node (spares are nodes)")] = GoodputInputs.gpus_per_node,
    days: Annotated[float, typer.Option(help="wall-time window simulated, days")] = GoodputInputs.days,
    rate: Annotated[list[str] | None, typer.Option(
        help="COMPONENT=FAILURES_PER_MILLION_GPU_HOURS, repeatable (default: the Llama 3 Table 5 rates)")] = None,
    rate_scale: Annotated[float, typer.Option(help="multiply every failure rate")] = 1.0,
    planned_per_day: Annotated[float | None, typer.Option(
        help="planned interruptions per day (default 47/54, Llama 3)")] = None,
    assumed_rate_scale: Annotated[float, typer.Option(
        help="the policies plan with rates × this (1: they know the true rates)")] = 1.0,
    requeue_s: Annotated[float, typer.Option(help="replace a node through the scheduler, s")] = GoodputInputs.requeue_s,
    startup_s: Annotated[float, typer.Option(help="relaunch and initialise the job, s")] = GoodputInputs.startup_s,
    repair_hours: Annotated[float, typer.Option(help="mean repair time of a failed node")] = GoodputInputs.repair_hours,
    health_check_min: Annotated[float, typer.Option(help="health check of a hung node, min")] = 30.0,
    maintenance_hours: Annotated[float, typer.Option(help="node away for planned maintenance")] = 4.0,
    human_fix_hours: Annotated[float, typer.Option(help="a person's fix when restarts are refused")] = 4.0,
    max_restarts: Annotated[int, typer.Option(help="restarts without a checkpoint in between")] = 10,
    checkpoint_write_s: Annotated[float, typer.Option(help="synchronous checkpoint write (blocks), s")] = 30.0,
    checkpoint_load_s: Annotated[float, typer.Option(help="load a checkpoint from storage, s")] = 60.0,
    fixed_interval_min: Annotated[float, typer.Option(help="the fixed-interval policy's cadence, min")] = 60.0,
    detection_s: Annotated[float, typer.Option(help="baselines: time to detect a crash, s")] = 60.0,
    hang_timeout_s: Annotated[float, typer.Option(help="baselines: time to detect a hang, s")] = 600.0,
    snapshot_s: Annotated[float, typer.Option(help="platform: in-memory snapshot (blocks), s")] = 2.0,
    replicate_s: Annotated[float, typer.Option(help="platform: until the snapshot is replicated, s")] = 10.0,
    memory_load_s: Annotated[float, typer.Option(help="platform: restore from peer memory, s")] = 30.0,
    platform_detection_s: Annotated[float, typer.Option(help="platform: time to detect a crash, s")] = 30.0,
    platform_hang_timeout_s: Annotated[float, typer.Option(help="platform: time to detect a hang, s")] = 300.0,
    spares: Annotated[int, typer.Option(help="platform: hot-spare nodes")] = GoodputInputs.spares,
    spare_swap_s: Annotated[float, typer.Option(help="platform: swap in a hot spare, s")] = 30.0,
    seeds: Annotated[int, typer.Option(help="runs per policy")] = GoodputInputs.seeds,
    first_seed: Annotated[int, typer.Option(help="first seed")] = 0,
    as_json: Annotated[bool, typer.Option("--json", help="print machine-readable JSON")] = False,
) -> None:
    """Simulate a long training run under faults: ETTR and its breakdown for fixed-interval, Young/Daly and
    the platform's checkpointing. No flags: the Llama 3 scenario (16,384 GPUs, 54 days, 419 failures)."""
    values = dict(locals())
    del values["as_json"], values["rate"]
    if values["planned_per_day"] is None:
        del values["planned_per_day"]
    try:
        inputs = GoodputInputs(rates=parse_rates(rate or []), **values)
        report = run_goodput(inputs)
    except GoodputInputError as error:
        typer.echo(f"error: {error}", err=True)
        raise typer.Exit(2) from None
    typer.echo(json.dumps(report, indent=1) if as_json else format_text(report))


if __name__ == "__main__":
    sim_app()
