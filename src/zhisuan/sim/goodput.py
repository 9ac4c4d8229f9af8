"""``zhisuan sim goodput``: the inputs (each one a flag), the policies compared, the runs over many seeds,
and the report (text with every assumption in a table, or JSON).

The simulation itself is pure (``core.goodput.simulate``); this module validates flags (naming the flag),
builds the scenario and policies, times the runs and formats the results.
"""

from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass, field, fields
from typing import Any

import numpy as np

from zhisuan.core.goodput.faults import (
    COMPONENTS,
    LLAMA3_DAYS,
    LLAMA3_GPUS,
    FaultModel,
    llama3_planned_per_day,
    llama3_rates_per_million_gpu_hours,
)
from zhisuan.core.goodput.interval import first_order_ettr
from zhisuan.core.goodput.restart import RestartPolicy
from zhisuan.core.goodput.simulate import DAY_S, Policy, RunResult, Scenario, simulate

MAX_EVENTS = 1_000_000  # interruptions per simulated run (~2 minutes of CPU): beyond that, refuse rather than hang
SOURCE_LLAMA3 = "Llama 3 report (Dubey et al. 2024) §3.3.4, Table 5"


class GoodputInputError(ValueError):
    """Input that makes no sense; ``flag`` names the command-line flag at fault."""

    def __init__(self, flag: str, message: str) -> None:
        super().__init__(f"{flag}: {message}")
        self.flag = flag


@dataclass(frozen=True)
class GoodputInputs:
    """Every input of the simulation; field ``x_y`` is the flag ``--x-y``. Defaults: the Llama 3 scenario."""

    gpus: int = LLAMA3_GPUS
    gpus_per_node: int = 8
    days: float = LLAMA3_DAYS
    rates: dict[str, float] = field(default_factory=llama3_rates_per_million_gpu_hours)
    rate_scale: float = 1.0
    planned_per_day: float = field(default_factory=llama3_planned_per_day)
    assumed_rate_scale: float = 1.0
    # recovery, every policy
    requeue_s: float = 300.0
    startup_s: float = 180.0
    repair_hours: float = 72.0
    health_check_min: float = 30.0
    maintenance_hours: float = 4.0
    human_fix_hours: float = 4.0
    max_restarts: int = 10
    # synchronous checkpoints to storage (the fixed-interval and Young/Daly baselines)
    checkpoint_write_s: float = 30.0
    checkpoint_load_s: float = 60.0
    fixed_interval_min: float = 60.0
    detection_s: float = 60.0
    hang_timeout_s: float = 600.0
    # the platform's policy
    snapshot_s: float = 2.0
    replicate_s: float = 10.0
    memory_load_s: float = 30.0
    platform_detection_s: float = 30.0
    platform_hang_timeout_s: float = 300.0
    spares: int = 32
    spare_swap_s: float = 30.0
    # runs
    seeds: int = 20
    first_seed: int = 0


POSITIVE = ("gpus", "gpus_per_node", "days", "checkpoint_write_s", "fixed_interval_min", "snapshot_s", "seeds")
NON_NEGATIVE = ("rate_scale", "planned_per_day", "requeue_s", "startup_s", "repair_hours", "health_check_min",
                "maintenance_hours", "human_fix_hours", "max_restarts", "checkpoint_load_s", "detection_s",
                "hang_timeout_s", "replicate_s", "memory_load_s", "platform_detection_s", "platform_hang_timeout_s",
                "spares", "spare_swap_s", "first_seed")


def flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def parse_rates(items: list[str]) -> dict[str, float]:
    """``--rate faulty_gpu=7.5`` (failures per 10⁶ GPU-hours) over the Llama 3 defaults."""
    rates = llama3_rates_per_million_gpu_hours()
    for item in items:
        name, sep, value = item.partition("=")
        if not sep or name not in COMPONENTS:
            raise GoodputInputError("--rate", f"expected COMPONENT=FAILURES_PER_MILLION_GPU_HOURS with COMPONENT one "
                                              f"of {', '.join(COMPONENTS)} (got {item!r})")
        try:
            rates[name] = float(value)
        except ValueError:
            raise GoodputInputError("--rate", f"{name}: {value!r} is not a number") from None
    return rates


def validate(inputs: GoodputInputs) -> None:
    """Refuse nonsense, naming the flag: non-positive sizes, negative times or rates, a checkpoint that
    blocks for longer than the job's MTBF."""
    for name in POSITIVE:
        value = getattr(inputs, name)
        if not (value > 0 and math.isfinite(value)):
            raise GoodputInputError(flag(name), f"must be > 0 (got {value})")
    for name in NON_NEGATIVE:
        value = getattr(inputs, name)
        if not (value >= 0 and math.isfinite(value)):
            raise GoodputInputError(flag(name), f"must be ≥ 0 (got {value})")
    if not (inputs.assumed_rate_scale > 0 and math.isfinite(inputs.assumed_rate_scale)):
        raise GoodputInputError("--assumed-rate-scale", f"must be > 0 (got {inputs.assumed_rate_scale})")
    for name, rate in inputs.rates.items():
        if not (rate >= 0 and math.isfinite(rate)):
            raise GoodputInputError("--rate", f"{name} must be ≥ 0 failures per 10⁶ GPU-hours (got {rate})")
    mtbf = fault_model(inputs).job_mtbf_s(inputs.gpus)
    expected = inputs.days * DAY_S / mtbf + inputs.planned_per_day * inputs.days
    if expected > MAX_EVENTS:
        raise GoodputInputError("--days", f"{expected:,.0f} interruptions expected in the window (from --gpus, the "
                                          f"rates and --days): more than the {MAX_EVENTS:,} one run may simulate")
    for name in ("checkpoint_write_s", "snapshot_s"):
        if getattr(inputs, name) >= mtbf:
            raise GoodputInputError(flag(name), f"a checkpoint blocking {getattr(inputs, name):g} s is not shorter "
                                                f"than the job's MTBF of {mtbf:.0f} s ({inputs.gpus} GPUs at the "
                                                "given rates): no checkpoint interval can amortise it")


def fault_model(inputs: GoodputInputs) -> FaultModel:
    return FaultModel(dict(inputs.rates), inputs.planned_per_day).scaled(inputs.rate_scale)


def build(inputs: GoodputInputs) -> tuple[Scenario, list[Policy]]:
    validate(inputs)
    scenario = Scenario(
        gpus=inputs.gpus, gpus_per_node=inputs.gpus_per_node, horizon_s=inputs.days * DAY_S,
        faults=fault_model(inputs), restart_policy=RestartPolicy(max_restarts=inputs.max_restarts),
        repair_s=inputs.repair_hours * 3600, health_check_s=inputs.health_check_min * 60,
        maintenance_s=inputs.maintenance_hours * 3600, human_fix_s=inputs.human_fix_hours * 3600,
        assumed_rate_scale=inputs.assumed_rate_scale,
    )
    sync: dict[str, Any] = {"blocking_s": inputs.checkpoint_write_s, "load_s": inputs.checkpoint_load_s,
            "detection_s": inputs.detection_s, "hang_detection_s": inputs.hang_timeout_s,
            "requeue_s": inputs.requeue_s, "startup_s": inputs.startup_s, "spares": 0}
    policies = [
        Policy(f"fixed-{inputs.fixed_interval_min:g}min", interval="fixed",
               fixed_interval_s=inputs.fixed_interval_min * 60, **sync),
        Policy("young-daly", interval="young_daly", **sync),
        Policy("platform", interval="adaptive", blocking_s=inputs.snapshot_s, lag_s=inputs.replicate_s,
               load_s=inputs.memory_load_s, detection_s=inputs.platform_detection_s,
               hang_detection_s=inputs.platform_hang_timeout_s, requeue_s=inputs.requeue_s,
               spare_swap_s=inputs.spare_swap_s, startup_s=inputs.startup_s, spares=inputs.spares),
    ]
    return scenario, policies


def summarise(policy: Policy, scenario: Scenario, results: list[RunResult], seconds: float) -> dict[str, Any]:
    """Mean and spread over seeds of the ETTR, the breakdown (hours) and the counts."""
    ettr = np.array([r.breakdown.ettr or 0.0 for r in results])
    parts = ("productive", "checkpoint", "lost", "restart", "queueing")
    hours = {p: float(np.mean([getattr(r.breakdown, p) for r in results])) / 3600 for p in parts}
    hours["wall"] = float(np.mean([r.breakdown.wall for r in results])) / 3600
    interval = float(np.mean([r.mean_interval_s for r in results]))
    restart_s = policy.detection_s + policy.startup_s + policy.load_s + (
        policy.spare_swap_s if policy.spares else policy.requeue_s)
    return {
        "policy": policy.name,
        "interval_rule": policy.interval,
        "mean_interval_min": interval / 60,
        "ettr": {"mean": float(ettr.mean()), "std": float(ettr.std(ddof=1)) if len(ettr) > 1 else 0.0,
                 "p5": float(np.percentile(ettr, 5)), "p95": float(np.percentile(ettr, 95)),
                 "min": float(ettr.min()), "max": float(ettr.max())},
        "first_order_ettr": first_order_ettr(interval, policy.blocking_s, restart_s, scenario.mtbf_s, policy.lag_s),
        "hours": hours,
        "counts": {name: float(np.mean([getattr(r, name) for r in results])) for name in
                   ("failures", "planned", "spare_swaps", "requeues", "human_interventions", "checkpoints")},
        "seconds_per_seed": seconds / len(results),
    }


def run(inputs: GoodputInputs) -> dict[str, Any]:
    scenario, policies = build(inputs)
    seeds = list(range(inputs.first_seed, inputs.first_seed + inputs.seeds))
    rows = []
    for policy in policies:
        started = time.perf_counter()
        results = [simulate(scenario, policy, seed) for seed in seeds]
        rows.append(summarise(policy, scenario, results, time.perf_counter() - started))
    return {
        "scenario": {"gpus": scenario.gpus, "nodes": scenario.nodes, "days": inputs.days,
                     "job_mtbf_hours": scenario.mtbf_s / 3600 if math.isfinite(scenario.mtbf_s) else None,
                     "expected_failures": scenario.horizon_s / scenario.mtbf_s,
                     "expected_planned": inputs.planned_per_day * inputs.days},
        "seeds": {"first": seeds[0], "count": len(seeds)},
        "policies": rows,
        "assumptions": assumptions(inputs),
        "inputs": {f.name: getattr(inputs, f.name) for f in fields(inputs)},
    }


def assumptions(inputs: GoodputInputs) -> list[dict[str, str]]:
    """Every input with its value, the policies it applies to, and where the default comes from."""
    default = GoodputInputs()
    changed = {k for k, v in asdict(inputs).items() if v != asdict(default)[k]}
    rows = [(k, f"{v:g}" if isinstance(v, float) else str(v), who, why) for k, v, who, why in assumption_rows(inputs)]
    return [{"flag": "--rate" if k == "rates" else flag(k), "value": value, "applies_to": who,
             "source": "set on the command line" if k in changed else why} for k, value, who, why in rows]


def assumption_rows(i: GoodputInputs) -> list[tuple[str, Any, str, str]]:
    all_, sync, platform = "all", "fixed, young-daly", "platform"
    return [
        ("gpus", i.gpus, all_, f"{SOURCE_LLAMA3}: 16,384 H100"),
        ("gpus_per_node", i.gpus_per_node, all_, "H100 HGX servers, 8 GPUs each"),
        ("days", i.days, all_, f"{SOURCE_LLAMA3}: a 54-day snapshot"),
        ("rates", f"{sum(i.rates.values()):.2f} per 10⁶ GPU-h in total", all_,
         f"{SOURCE_LLAMA3}: 419 unexpected interruptions, mix of Table 5 (see docs/goodput.md)"),
        ("rate_scale", i.rate_scale, all_, "1 = the Llama 3 rates"),
        ("planned_per_day", i.planned_per_day, all_, f"{SOURCE_LLAMA3}: 47 planned interruptions in 54 days"),
        ("assumed_rate_scale", i.assumed_rate_scale, "young-daly, platform",
         "1 = policies plan with the true rates (the platform's adaptive estimate starts there)"),
        ("requeue_s", i.requeue_s, all_, "assumed: re-queue and get a replacement node through the scheduler"),
        ("startup_s", i.startup_s, all_, "assumed: relaunch 16K ranks and initialise NCCL (Meta: 'reduced')"),
        ("repair_hours", i.repair_hours, all_, "assumed: a failed node's repair (mean, exponential)"),
        ("health_check_min", i.health_check_min, all_, "assumed: a hung node's health check before it returns"),
        ("maintenance_hours", i.maintenance_hours, all_, "assumed: a node away for planned maintenance"),
        ("human_fix_hours", i.human_fix_hours, all_, "assumed: a person's fix when restarts are refused"),
        ("max_restarts", i.max_restarts, all_, "restart rule: restarts without a checkpoint in between"),
        ("checkpoint_write_s", i.checkpoint_write_s, sync,
         "assumed: ~5.7 TB (405B × 14 B) at Tectonic's 2 TB/s sustained is 2.9 s; a synchronous save "
         "also copies, serialises and waits for the slowest of 16,384 writers: 10×"),
        ("checkpoint_load_s", i.checkpoint_load_s, sync, "assumed: read back ~5.7 TB and rebuild state"),
        ("fixed_interval_min", i.fixed_interval_min, "fixed", "assumed: a common hourly cadence"),
        ("detection_s", i.detection_s, sync, "assumed: crash seen by the launcher / flight recorder"),
        ("hang_timeout_s", i.hang_timeout_s, sync, "PyTorch's default NCCL watchdog timeout (10 min)"),
        ("snapshot_s", i.snapshot_s, platform,
         "assumed: ≤4 GB per GPU (Llama 3 §3.3.1) GPU→host at ~25 GB/s is 0.16 s; ×10 plus a barrier"),
        ("replicate_s", i.replicate_s, platform, "assumed: copy a node's ≤32 GB snapshot to a peer over 400 Gb/s"),
        ("memory_load_s", i.memory_load_s, platform, "assumed: restore from a peer's memory, not storage"),
        ("platform_detection_s", i.platform_detection_s, platform, "assumed: agent heartbeats and XID/ECC health"),
        ("platform_hang_timeout_s", i.platform_hang_timeout_s, platform, "assumed: no progress report for 5 min"),
        ("spares", i.spares, platform, "assumed: 32 hot-spare nodes (1.6% of 2,048)"),
        ("spare_swap_s", i.spare_swap_s, platform, "assumed: swap in a provisioned, health-checked node"),
        ("seeds", i.seeds, all_, "runs per policy (numpy Generator, seeds first_seed …)"),
    ]


def format_text(report: dict[str, Any]) -> str:
    s = report["scenario"]
    lines = [
        f"Goodput simulation: {s['gpus']:,} GPUs ({s['nodes']:,} node{'s' if s['nodes'] != 1 else ''}), "
        f"{s['days']:g} days, "
        f"{report['seeds']['count']} seeds from {report['seeds']['first']}",
        f"job MTBF {'∞' if s['job_mtbf_hours'] is None else format(s['job_mtbf_hours'], '.2f')} h: "
        f"{s['expected_failures']:.0f} unexpected failures and "
        f"{s['expected_planned']:.0f} planned interruptions expected",
        "",
        f"{'policy':<14} {'interval':>9} {'ETTR mean ± sd':>16} {'p5–p95':>13} {'1st-order':>9} "
        f"{'productive':>10} {'ckpt':>6} {'lost':>6} {'restart':>7} {'fails':>5} {'spares':>6} {'requeue':>7}"
        f" {'s/seed':>6}",
    ]
    for row in report["policies"]:
        e, h, c = row["ettr"], row["hours"], row["counts"]
        lines.append(
            f"{row['policy']:<14} {row['mean_interval_min']:>6.1f}min {100 * e['mean']:>9.2f}% ± {100 * e['std']:.2f}"
            f" {100 * e['p5']:>6.2f}–{100 * e['p95']:.2f} {100 * row['first_order_ettr']:>8.2f}%"
            f" {h['productive']:>9.1f}h {h['checkpoint']:>5.1f}h {h['lost']:>5.1f}h {h['restart']:>6.1f}h"
            f" {c['failures']:>5.0f} {c['spare_swaps']:>6.0f} {c['requeues']:>7.0f} {row['seconds_per_seed']:>6.3f}"
        )
    lines += ["", "(breakdown: mean hours over seeds; productive + ckpt + lost + restart = the window; queueing 0)",
              "", "Assumptions:", "| flag | value | applies to | source |", "|---|---|---|---|"]
    lines += [f"| {a['flag']} | {a['value']} | {a['applies_to']} | {a['source']} |" for a in report["assumptions"]]
    return "\n".join(lines)
