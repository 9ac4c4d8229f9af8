"""Benchmark: job submit → running and submit → succeeded latency through the Slurm driver, on a real
Slurm 22.05 (the throw-away test cluster: 2 nodes × 8 fake h100 GPUs, ``sched_interval=2``).

    uv run python benchmarks/drivers/bench_slurm_latency.py [--runs 10] [--workers 1] [--poll-ms 50]

Each run submits ``true`` (one GPU per worker) through ``SlurmDriver.submit`` and polls
``SlurmDriver.poll`` (one ``squeue --json``) every ``--poll-ms`` until the job is first seen running (or
already ended: a job that starts and ends between two polls counts as running when first seen), then until
it has succeeded. Runs are sequential, so each job finds the cluster idle. Reported: median, min, max of
the submit call itself, submit → running and submit → succeeded (wall clock, seconds, including the
polling granularity and each ``squeue`` call's own ~20–40 ms).
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time

from zhisuan.drivers.base import LaunchSpec, WorkerAssignment
from zhisuan.drivers.slurm import testcluster
from zhisuan.drivers.slurm.driver import SlurmDriver


def spec(run: int, workers: int) -> LaunchSpec:
    assignments = tuple(WorkerAssignment(rank=i, node=f"sn{i + 1}", device_indices=(0,), model="h100-sxm",
                                         visible_devices_env="CUDA_VISIBLE_DEVICES", memory_mib=128)
                        for i in range(workers))
    return LaunchSpec(key=f"zs-{run}-1", job_id=run, attempt=1, tenant="bench", command=("true",),
                      workers=assignments, max_run_s=300)


def one_run(driver: SlurmDriver, run: int, workers: int, poll_s: float) -> tuple[float, float, float]:
    t0 = time.monotonic()
    handle = driver.submit(spec(run, workers))
    submitted = time.monotonic() - t0
    running = None
    while True:
        state = driver.poll([handle])[handle]
        now = time.monotonic() - t0
        if running is None and state.state != "pending":
            running = now
        if state.ended:
            assert state.state == "succeeded", state
            assert running is not None
            return submitted, running, now
        time.sleep(poll_s)


def summary(name: str, values: list[float]) -> str:
    return (f"{name:<22} median {statistics.median(values):6.3f} s   min {min(values):6.3f} s   "
            f"max {max(values):6.3f} s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=10)
    parser.add_argument("--workers", type=int, default=1, help="nodes per job (gang size), at most 2")
    parser.add_argument("--poll-ms", type=float, default=50)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="zs-bench-slurm-") as directory:
        t0 = time.monotonic()
        cluster = testcluster.start(directory, nodes=2, gpus=8, gpu_type="h100")
        print(f"cluster up in {time.monotonic() - t0:.2f} s")
        try:
            driver = SlurmDriver(str(cluster.conf_path), root=cluster.workdir_root)
            results = [one_run(driver, run + 1, args.workers, args.poll_ms / 1000) for run in range(args.runs)]
        finally:
            testcluster.stop(directory)
    print(f"{args.runs} runs of `true`, {args.workers} worker(s) × 1 GPU, poll every {args.poll_ms:g} ms")
    print(summary("submit call", [r[0] for r in results]))
    print(summary("submit → running", [r[1] for r in results]))
    print(summary("submit → succeeded", [r[2] for r in results]))


if __name__ == "__main__":
    main()
