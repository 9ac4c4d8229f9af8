"""Benchmark: effective training time (ETTR) of a Llama 3-scale run under the Llama 3 fault process.

    uv run --no-sync python benchmarks/goodput/bench_goodput.py [--seeds 100] [--quick]

Prints the markdown tables of BENCHMARKS.md "Goodput / ETTR (issue 10)":

1. the three policies of ``zhisuan sim goodput`` (its defaults: 16,384 GPUs, 54 days, Table 5 rates);
2. an ablation from the synchronous Young/Daly baseline to the platform's policy, one change at a time;
3. the baseline's ETTR over checkpoint interval × restart time — which unpublished settings are
   consistent with Meta's ">90%";
4. the platform policy's sensitivity to its assumptions (start-up, snapshot, spares, failure rate, a
   wrong prior for the adaptive interval);
5. the simulator's cost per seed (median of 5 timings), next to a machine reference measured in the same
   run (a pure-Python loop of 10⁶ float additions), so the figure can be scaled to another machine.
"""

from __future__ import annotations

import argparse
import statistics
import time
from dataclasses import replace

import numpy as np

from zhisuan.core.goodput.simulate import Policy, Scenario, simulate
from zhisuan.sim.goodput import GoodputInputs, build


def ettr(scenario: Scenario, policy: Policy, seeds: int) -> tuple[float, float, dict[str, float]]:
    results = [simulate(scenario, policy, seed) for seed in range(seeds)]
    values = np.array([r.breakdown.ettr or 0.0 for r in results])
    hours = {p: float(np.mean([getattr(r.breakdown, p) for r in results])) / 3600
             for p in ("productive", "checkpoint", "lost", "restart")}
    return float(values.mean()), float(values.std(ddof=1)), hours


def pct(mean: float, sd: float) -> str:
    return f"{100 * mean:.2f}% ± {100 * sd:.2f}"


def main_table(seeds: int) -> None:
    scenario, policies = build(GoodputInputs())
    print(f"\n### 1. The Llama 3 scenario ({seeds} seeds)\n")
    print("| policy | interval | ETTR (mean ± sd) | productive h | checkpoint h | lost h | restart h |")
    print("|---|---|---|---|---|---|---|")
    for policy in policies:
        mean, sd, h = ettr(scenario, policy, seeds)
        interval = np.mean([simulate(scenario, policy, s).mean_interval_s for s in range(3)]) / 60
        print(f"| {policy.name} | {interval:.1f} min | {pct(mean, sd)} | {h['productive']:.0f} | "
              f"{h['checkpoint']:.1f} | {h['lost']:.1f} | {h['restart']:.1f} |")


def ablation(seeds: int) -> None:
    scenario, (_, young_daly, platform) = build(GoodputInputs())
    steps = [
        ("synchronous Young/Daly (Meta-like baseline)", young_daly),
        ("+ fast detection (30 s crash, 300 s hang)", replace(young_daly, detection_s=30, hang_detection_s=300)),
        ("+ in-memory snapshots (2 s block, 10 s to replicate, 30 s restore)",
         replace(young_daly, detection_s=30, hang_detection_s=300, blocking_s=2, lag_s=10, load_s=30)),
        ("+ adaptive interval", replace(platform, spares=0)),
        ("+ 32 hot spares (= the platform's policy)", platform),
    ]
    print(f"\n### 2. From the baseline to the platform's policy, one change at a time ({seeds} seeds)\n")
    print("| policy | ETTR | restart h | lost h | checkpoint h |")
    print("|---|---|---|---|---|")
    for name, policy in steps:
        mean, sd, h = ettr(scenario, policy, seeds)
        print(f"| {name} | {pct(mean, sd)} | {h['restart']:.1f} | {h['lost']:.1f} | {h['checkpoint']:.1f} |")


def meta_grid(seeds: int) -> None:
    scenario, (fixed, _, _) = build(GoodputInputs())
    restarts = {"2 min": (20, 30, 45, 25), "5 min": (30, 90, 120, 60), "10 min (default)": (60, 300, 180, 60),
                "20 min": (120, 600, 360, 120)}  # detection, replacement, start-up, load (s)
    intervals = (10, 15, 30, 60)
    print(f"\n### 3. Synchronous 30-s checkpoints, no spares: ETTR by interval × restart time ({seeds} seeds)\n")
    print("| restart (detect + replace + start + load) | " + " | ".join(f"every {i} min" for i in intervals) + " |")
    print("|---|" + "---|" * len(intervals))
    for label, (detect, requeue, startup, load) in restarts.items():
        cells = []
        for minutes in intervals:
            policy = replace(fixed, fixed_interval_s=minutes * 60, detection_s=detect, requeue_s=requeue,
                             startup_s=startup, load_s=load)
            cells.append(f"{100 * ettr(scenario, policy, seeds)[0]:.1f}%")
        print(f"| {label} | " + " | ".join(cells) + " |")


def sensitivity(seeds: int) -> None:
    rows = [("defaults", GoodputInputs())]
    rows += [(f"--startup-s {v}", GoodputInputs(startup_s=v)) for v in (60, 300, 600)]
    rows += [(f"--snapshot-s {v}", GoodputInputs(snapshot_s=v)) for v in (10, 30)]
    rows += [(f"--spares {v}", GoodputInputs(spares=v)) for v in (0, 8)]
    rows += [(f"--rate-scale {v}", GoodputInputs(rate_scale=v)) for v in (0.5, 2.0)]
    rows += [("--assumed-rate-scale 0.33 (prior 3× too optimistic)", GoodputInputs(assumed_rate_scale=1 / 3))]
    print(f"\n### 4. Sensitivity ({seeds} seeds): ETTR of young-daly and platform\n")
    print("| inputs | young-daly | platform |")
    print("|---|---|---|")
    for label, inputs in rows:
        scenario, (_, young_daly, platform) = build(inputs)
        baseline, ours = ettr(scenario, young_daly, seeds), ettr(scenario, platform, seeds)
        print(f"| {label} | {pct(*baseline[:2])} | {pct(*ours[:2])} |")


def machine_reference() -> float:
    started = time.perf_counter()
    total = 0.0
    for i in range(1_000_000):
        total += i * 0.5
    return time.perf_counter() - started


def cost() -> None:
    scenario, policies = build(GoodputInputs())
    print("\n### 5. Cost per seed (median of 5 timings of 10 seeds)\n")
    print("| policy | ms per seed | machine reference (10⁶ float additions, same run) |")
    print("|---|---|---|")
    for policy in policies:
        timings, refs = [], []
        for _ in range(5):
            started = time.perf_counter()
            for seed in range(10):
                simulate(scenario, policy, seed)
            timings.append((time.perf_counter() - started) / 10)
            refs.append(machine_reference())
        print(f"| {policy.name} | {1000 * statistics.median(timings):.1f} | {1000 * statistics.median(refs):.0f} ms |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", type=int, default=100)
    parser.add_argument("--quick", action="store_true", help="20 seeds for the main table, 10 elsewhere")
    args = parser.parse_args()
    main_seeds = 20 if args.quick else args.seeds
    other = 10 if args.quick else max(10, args.seeds // 5)
    main_table(main_seeds)
    ablation(other * 2)
    meta_grid(other)
    sensitivity(other)
    cost()


if __name__ == "__main__":
    main()
