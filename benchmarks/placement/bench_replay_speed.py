"""Wall time of one full experiment (openb_pod_list_default, paper order seed 42) per policy.

Usage: uv run python benchmarks/placement/bench_replay_speed.py [--repeat 5] [--policy zhisuan --policy fgd]
Reports every run and the median; the machine may be shared, so also compare the ratio between policies.
Data: Alibaba clusterdata cluster-trace-gpu-v2023 (openb), CC BY 4.0.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from pathlib import Path

from zhisuan.sim.orders import load_paper_order
from zhisuan.sim.replay import replay
from zhisuan.sim.traces import load_nodes, load_pods, node_models

TRACES = Path(__file__).resolve().parents[2].parent / "shared" / "traces" / "alibaba-gpu-v2023"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--policy", action="append")
    args = parser.parse_args()
    nodes = load_nodes(TRACES / "openb_node_list_gpu_node.csv")
    pods = load_pods(TRACES / "openb_pod_list_default.csv", node_models(nodes))
    order = load_paper_order(TRACES / "paper-order", "default", 42, pods, nodes)
    print(f"{len(order.events)} pods on {len(nodes.names)} nodes ({nodes.total_gpus} GPUs); load {os.getloadavg()}")
    for policy in args.policy or ["zhisuan", "fgd", "best-fit"]:
        times, cpu = [], []
        for _ in range(args.repeat):
            started, cpu_started = time.perf_counter(), time.process_time()
            replay(nodes, pods, order, policy, 42)
            times.append(time.perf_counter() - started)
            cpu.append(time.process_time() - cpu_started)
        print(
            f"{policy:>14}: wall median {statistics.median(times):.2f} s (runs {' '.join(f'{t:.2f}' for t in times)}); "
            f"CPU median {statistics.median(cpu):.2f} s; load {os.getloadavg()[0]:.1f}"
        )


if __name__ == "__main__":
    main()
