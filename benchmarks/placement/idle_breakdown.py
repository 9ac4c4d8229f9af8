"""Where the idle GPU milli is at the end of one replay (after column 130), per policy.

Usage::

    uv run python benchmarks/placement/idle_breakdown.py TRACES_DIR --policy zhisuan --policy fgd \\
        --trace default --trace cpu250 --seed 1

Per node with idle device milli: *device fragment* if no GPU shape of the trace fits its devices,
*CPU-stranded* if some shape fits its devices but none of those fits its CPU, else *still fits*
(a shape could still be placed; no more arrived). Separately: devices with 150–199 milli left —
the leftover of an 810-milli share (the most frequent shape of the openb traces), which only the
rare 160-milli shape fits. Percentages are of the fleet's GPU capacity. Orders are generated from
the seed (use a development seed, not the held-out 42–51).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from zhisuan.sim.orders import generate_order
from zhisuan.sim.replay import replay
from zhisuan.sim.traces import load_nodes, load_pods, node_models


def breakdown(traces: Path, name: str, policy: str, seed: int) -> str:
    nodes = load_nodes(traces / "openb_node_list_gpu_node.csv")
    pods = load_pods(traces / f"openb_pod_list_{name}.csv", node_models(nodes))
    result = replay(nodes, pods, generate_order(pods, nodes, seed), policy, seed)
    left, cpu = result.fleet.gpu_left, result.fleet.cpu_free
    shapes = sorted({(int(c), int(m), int(k)) for c, m, k in zip(pods.cpu, pods.milli, pods.count, strict=True) if m})
    fragment = stranded = fits = 0
    for n in np.flatnonzero(left.sum(axis=1)):
        idle = int(left[n].sum())
        device_fit = [s for s in shapes if (left[n] >= s[1]).sum() >= s[2]]
        if not device_fit:
            fragment += idle
        elif not any(cpu[n] >= s[0] for s in device_fit):
            stranded += idle
        else:
            fits += idle
    leftover = (left >= 150) & (left < 200)
    cap = 1000.0 * result.total_gpus
    return (
        f"{policy} {name} seed {seed}: used {100 * result.used[-1] / cap:.2f} | device fragment "
        f"{100 * fragment / cap:.2f} | CPU-stranded {100 * stranded / cap:.2f} | still fits {100 * fits / cap:.2f} "
        f"| 150–199 left: {int(leftover.sum())} devices, {100 * left[leftover].sum() / cap:.2f}"
    )


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("traces", type=Path)
    parser.add_argument("--trace", action="append", required=True)
    parser.add_argument("--policy", action="append", required=True)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    for name in args.trace:
        for policy in args.policy:
            print(breakdown(args.traces, name, policy, args.seed), flush=True)


if __name__ == "__main__":
    main()
