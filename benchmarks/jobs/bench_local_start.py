"""Benchmark (not a test): time from ``WorkerRunner.ensure()`` to the worker's command running.

    uv run --no-sync python benchmarks/jobs/bench_local_start.py [--runs 20] [--as-agent-user]

Each run launches ``sh -c 'date +%s.%N'`` under a fresh key; "running" is the wall-clock time the
command itself printed (so it includes the wrapper's start, the fork, the limits, the switch to the
tenant's user and the exec). Also reported: how long ``ensure()`` itself blocks. The tenant's user
is created before the first timed run (useradd is a one-time cost per tenant, reported separately).
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import tempfile
import time
from pathlib import Path

from zhisuan.agent.jobs import WorkerLaunch, WorkerRunner


def one_run(runner: WorkerRunner, key: str) -> tuple[float, float]:
    work = WorkerLaunch(key=key, tenant="bench", command=("sh", "-c", "date +%s.%N"), script=None, env={},
                        workdir=None, cpu_milli=1000, memory_mib=512, max_run_s=60)
    before = time.time()
    runner.ensure(work)
    returned = time.time()
    while True:
        text, _, complete = runner.read_log(key, "stdout", 0)
        if text.endswith("\n"):
            return float(text) - before, returned - before
        if complete:
            raise RuntimeError(f"{key} ended without output: {runner.status(key)}")
        time.sleep(0.005)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--as-agent-user", action="store_true", help="no per-tenant user (run_as_tenant_users=False)")
    args = parser.parse_args()
    parent = Path(tempfile.mkdtemp(prefix="zs-bench-", dir="/tmp"))
    os.chmod(parent, 0o711)
    try:
        runner = WorkerRunner(parent / "jobs", run_as_tenant_users=False if args.as_agent_user else None)
        first_running, first_ensure = one_run(runner, "bench-warmup")
        running, ensure = zip(*(one_run(runner, f"bench-{n}") for n in range(args.runs)), strict=True)
        print(f"first launch of the tenant (may include useradd): running after {first_running * 1000:.1f} ms,"
              f" ensure {first_ensure * 1000:.1f} ms")
        for name, values in (("ensure() -> command running", running), ("ensure() returns", ensure)):
            ms = sorted(v * 1000 for v in values)
            print(f"{name}: median {statistics.median(ms):.1f} ms, min {ms[0]:.1f}, max {ms[-1]:.1f}"
                  f" (n={len(ms)})")
        print("notes:", runner.status("bench-0").notes)
    finally:
        shutil.rmtree(parent, ignore_errors=True)


if __name__ == "__main__":
    main()
