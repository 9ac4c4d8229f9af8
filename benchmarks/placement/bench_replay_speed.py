"""Wall and CPU time of one full experiment (one trace, one seed, one policy), per trace and policy.

Usage::

    uv run python benchmarks/placement/bench_replay_speed.py [--repeat 3] [--policy zhisuan --policy fgd] \\
        [--traces-dir DIR --trace default --trace gpuspec33 ...]

Without ``--traces-dir`` it times the packaged openb default trace with the paper's seed-42 order;
with it, ``DIR/openb_pod_list_<trace>.csv`` with the order generated from seed 42 (the paper order for
default when ``DIR/paper-order`` has it). Reports every run and the median; the machine may be shared,
so compare policies and traces measured in the same run. To time an older tree in the same run:
``git archive <commit> src | tar -x -C /tmp/old`` and prefix ``PYTHONPATH=/tmp/old/src``.
``--hash`` prints a digest of each result, to check that two trees decide identically.
Data: Alibaba clusterdata cluster-trace-gpu-v2023 (openb), CC BY 4.0, Alibaba Group.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import statistics
import time
from pathlib import Path

import zhisuan
from zhisuan.sim.orders import generate_order, load_paper_order, paper_order_files
from zhisuan.sim.replay import replay
from zhisuan.sim.traces import load_nodes, load_pods, node_models


def experiments(traces_dir: Path | None, names: list[str]):
    """(label, nodes, pods, order) per trace."""
    if traces_dir is None:
        from zhisuan.sim.cli import DEFAULT_NODES, DEFAULT_TRACE, PACKAGED  # packaged data (not in old trees)

        nodes = load_nodes(DEFAULT_NODES)
        pods = load_pods(DEFAULT_TRACE, node_models(nodes))
        order = load_paper_order(PACKAGED / "paper-order", "default", 42, pods, nodes)
        yield "default (paper order 42)", nodes, pods, order
        return
    nodes = load_nodes(traces_dir / "openb_node_list_gpu_node.csv")
    for name in names:
        pods = load_pods(traces_dir / f"openb_pod_list_{name}.csv", node_models(nodes))
        order_dir = traces_dir / "paper-order"
        if all(p.is_file() for p in paper_order_files(order_dir, name, 42)):
            yield f"{name} (paper order 42)", nodes, pods, load_paper_order(order_dir, name, 42, pods, nodes)
        else:
            yield f"{name} (generated 42)", nodes, pods, generate_order(pods, nodes, 42)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--policy", action="append")
    parser.add_argument("--traces-dir", type=Path)
    parser.add_argument("--trace", action="append")
    parser.add_argument("--hash", action="store_true", help="print sha256(placed|frag|used) of each run's result")
    args = parser.parse_args()
    print(f"code {zhisuan.__file__}; load {os.getloadavg()}")
    for label, nodes, pods, order in experiments(args.traces_dir, args.trace or ["default"]):
        for policy in args.policy or ["zhisuan", "fgd", "best-fit"]:
            times, cpu = [], []
            for _ in range(args.repeat):
                started, cpu_started = time.perf_counter(), time.process_time()
                result = replay(nodes, pods, order, policy, 42)
                times.append(time.perf_counter() - started)
                cpu.append(time.process_time() - cpu_started)
            print(
                f"{label:<28} {policy:>10} {len(order.events):>6} pods: wall median {statistics.median(times):.2f} s "
                f"(runs {' '.join(f'{t:.2f}' for t in times)}); CPU median {statistics.median(cpu):.2f} s; "
                f"load {os.getloadavg()[0]:.1f}",
                flush=True,
            )
            if args.hash:  # decisions of two trees are identical iff these match (same trace, policy, seed)
                digest = hashlib.sha256(result.placed.tobytes() + result.frag.tobytes() + result.used.tobytes())
                print(f"{label:<28} {policy:>10} sha256(placed|frag|used) {digest.hexdigest()}", flush=True)


if __name__ == "__main__":
    main()
