"""Benchmark: job submit → running → succeeded through the whole platform, local and Slurm sites,
side by side with the engine alone in the same run.

    uv run --no-sync python benchmarks/jobs/bench_submit_latency.py [--runs 10] [--no-slurm]

Platform: a real ``zhisuan up`` (SQLite, the one-box local site with 8 recorded — fake — H100s, the
scheduler and the in-process agent every ``job_interval_s`` = 1 s) and, unless ``--no-slurm``, a real
throw-away Slurm (2 nodes × 8 fake GPUs, ``sched_interval=2``) added as site ``hpc`` through its
slurm.conf. Each run submits ``true`` with one GPU through the REST API and polls ``GET /jobs/{id}``
every 50 ms: submit → running is the first poll that sees ``running`` (or already ``succeeded``),
submit → succeeded the first that sees ``succeeded``. Runs are sequential (an idle fleet).
Reference, same run: the engine alone — ``WorkerRunner.ensure`` → the process running (local), and
``SlurmDriver.submit`` → ``squeue`` shows it running (Slurm) — so the table shows what the platform adds.
"""

from __future__ import annotations

import argparse
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

REPO = Path(__file__).resolve().parents[2]
FAKE_H100 = REPO / "src/zhisuan/agent/demo_fixtures/h100x8"


def start_platform(tmp: Path, port: int) -> tuple[subprocess.Popen[str], str]:
    jobs = Path(tempfile.mkdtemp(prefix="zhisuan-bench-jobs-"))
    os.chmod(jobs, 0o711)
    env = {**os.environ, "ZHISUAN_FAKE_SMI_DIR": str(FAKE_H100), "ZHISUAN_JOBS_DIR": str(jobs)}
    process = subprocess.Popen([sys.executable, "-m", "zhisuan", "up", "--port", str(port), "--data-dir",
                                str(tmp / "data"), "--no-maas"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                               text=True, env=env, cwd=REPO)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"http://127.0.0.1:{port}/health", timeout=1).status_code == 200:
                break
        except httpx.TransportError:
            time.sleep(0.2)
    text = (tmp / "data" / "first-operator.txt").read_text()
    key = re.search(r"API key:\s+(zs_\S+)", text)
    assert key, text
    return process, key.group(1)


def timed_job(client: httpx.Client, body: dict[str, object]) -> tuple[float, float]:
    t0 = time.monotonic()
    job = client.post("/api/v1/jobs", json=body).raise_for_status().json()
    running = None
    while True:
        state = client.get(f"/api/v1/jobs/{job['id']}").json()["state"]
        now = time.monotonic() - t0
        if state in ("running", "succeeded") and running is None:
            running = now
        if state in ("succeeded", "failed", "cancelled"):
            assert state == "succeeded", client.get(f"/api/v1/jobs/{job['id']}/events").json()
            return running or now, now
        assert now < 120, f"job {job['id']} still {state}"
        time.sleep(0.05)


def local_engine_alone(runs: int) -> list[float]:
    from zhisuan.agent.jobs import WorkerLaunch, WorkerRunner

    root = Path(tempfile.mkdtemp(prefix="zhisuan-bench-runner-"))
    os.chmod(root, 0o711)
    runner, times = WorkerRunner(root), []
    for run in range(runs):
        t0 = time.time()
        key = f"bench-{run}"
        runner.ensure(WorkerLaunch(key=key, tenant="bench", command=("sh", "-c", "date +%s.%N"), script=None,
                                   env={}, workdir=None, cpu_milli=1000, memory_mib=512, max_run_s=60))
        while runner.status(key).state == "running":
            time.sleep(0.01)
        started = float(runner.read_log(key, "stdout", 0)[0].strip())
        times.append(started - t0)
    return times


def slurm_engine_alone(cluster: object, runs: int) -> list[float]:
    from zhisuan.drivers.base import LaunchSpec, WorkerAssignment
    from zhisuan.drivers.slurm.driver import SlurmDriver

    driver = SlurmDriver(str(cluster.conf_path), cluster.partition, root=cluster.workdir_root)  # type: ignore[attr-defined]
    times = []
    for run in range(runs):
        spec = LaunchSpec(key=f"zs-9{run}-1", job_id=9000 + run, attempt=1, tenant="bench", command=("true",),
                          workers=(WorkerAssignment(rank=0, node="sn1", device_indices=(0,), model="h100-sxm",
                                                    visible_devices_env="CUDA_VISIBLE_DEVICES", memory_mib=128),),
                          max_run_s=300)
        t0 = time.monotonic()
        handle = driver.submit(spec)
        while driver.poll([handle])[handle].state not in ("running", "succeeded"):
            time.sleep(0.05)
        times.append(time.monotonic() - t0)
    return times


def row(name: str, values: list[float]) -> str:
    return (f"| {name} | {statistics.median(values):.2f} | {min(values):.2f} | {max(values):.2f} | "
            f"{len(values)} |")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=10)
    parser.add_argument("--no-slurm", action="store_true")
    args = parser.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="zhisuan-bench-"))
    os.chmod(tmp, 0o711)  # Slurm jobs run as the tenant's user (as root): they must reach their log dir
    port = 18000 + os.getpid() % 1000
    process, key = start_platform(tmp, port)
    cluster = None
    results: dict[str, list[float]] = {}
    try:
        client = httpx.Client(base_url=f"http://127.0.0.1:{port}", headers={"Authorization": f"Bearer {key}"},
                              timeout=30)
        client.post("/api/v1/tenants", json={"name": "bench"}).raise_for_status()
        local = [timed_job(client, {"tenant": "bench", "command": ["true"], "devices_per_worker": 1,
                                    "sites": ["local"]}) for _ in range(args.runs)]
        results["local: platform submit → running"] = [r for r, _ in local]
        results["local: platform submit → succeeded"] = [s for _, s in local]
        results["local: engine alone (ensure → process running)"] = local_engine_alone(args.runs)
        if not args.no_slurm:
            from zhisuan.drivers.slurm import testcluster

            cluster = testcluster.start(tmp / "slurm", nodes=2, gpus=8, gpu_type="h100")
            client.post("/api/v1/providers", json={"name": "hpc-dc", "revenue_share": "0.7"}).raise_for_status()
            client.post("/api/v1/sites", json={
                "name": "hpc", "engine": "slurm", "region": "cn-north-1", "provider": "hpc-dc",
                "engine_config": {"slurm_conf": str(cluster.conf_path), "partition": cluster.partition,
                                  "log_dir": str(cluster.workdir_root)}}).raise_for_status()
            for _ in range(50):  # a controller just started may refuse a moment longer
                synced = client.post("/api/v1/sites/hpc/sync", json={})
                if synced.status_code == 200:
                    break
                time.sleep(0.2)
            assert synced.status_code == 200, synced.text
            slurm = [timed_job(client, {"tenant": "bench", "command": ["true"], "devices_per_worker": 1,
                                        "sites": ["hpc"]}) for _ in range(args.runs)]
            results["slurm: platform submit → running"] = [r for r, _ in slurm]
            results["slurm: platform submit → succeeded"] = [s for _, s in slurm]
            results["slurm: engine alone (sbatch → squeue running)"] = slurm_engine_alone(cluster, args.runs)
    finally:
        process.terminate()
        process.wait(timeout=15)
        if cluster is not None:
            from zhisuan.drivers.slurm import testcluster

            testcluster.stop(tmp / "slurm")
    print(f"command: uv run --no-sync python benchmarks/jobs/bench_submit_latency.py --runs {args.runs}")
    print("| path | median s | min s | max s | runs |\n|---|---|---|---|---|")
    for name, values in results.items():
        print(row(name, values))


if __name__ == "__main__":
    main()
