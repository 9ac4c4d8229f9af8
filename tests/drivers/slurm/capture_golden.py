"""Record the real ``squeue --json`` / ``sinfo --json`` documents the parse golden tests read.

Run once (about two minutes: a TIMEOUT needs Slurm's one-minute granularity, a NODE_FAIL needs
SlurmdTimeout to pass) after an intended change of Slurm version or driver options::

    uv run --no-sync python tests/drivers/slurm/capture_golden.py

Every document is what Slurm 22.05 printed, unedited; then regenerate the expectations with
``ZHISUAN_UPDATE_GOLDENS=1 pytest tests/drivers/slurm``.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from zhisuan.drivers.base import LaunchSpec, WorkerAssignment
from zhisuan.drivers.slurm import testcluster
from zhisuan.drivers.slurm.driver import SlurmDriver

GOLDEN = Path(__file__).parent / "golden"


def spec(key: str, command: str, nodes: tuple[str, ...], gpus: int, max_run_s: int = 600,
         image: str | None = None) -> LaunchSpec:
    workers = tuple(WorkerAssignment(rank=i, node=n, device_indices=tuple(range(gpus)), model="h100-sxm",
                                     visible_devices_env="CUDA_VISIBLE_DEVICES", memory_mib=256)
                    for i, n in enumerate(nodes))
    return LaunchSpec(key=key, job_id=1, attempt=1, tenant="acme", command=("sh", "-c", command),
                      workers=workers, max_run_s=max_run_s, image=image)


def dump(cluster: testcluster.TestCluster, tool: str, name: str) -> None:
    out = subprocess.run([tool, "--json"], env={**os.environ, **cluster.env}, capture_output=True, text=True,
                         check=True).stdout
    (GOLDEN / f"{name}.json").write_text(json.dumps(json.loads(out), indent=1, sort_keys=True) + "\n")
    print("wrote", name)


def wait_state(driver: SlurmDriver, handle: str, state: str, timeout_s: float = 150) -> None:
    deadline = time.monotonic() + timeout_s
    while driver.poll([handle])[handle].state != state:
        assert time.monotonic() < deadline, (handle, driver.poll([handle])[handle])
        time.sleep(1)


def main() -> int:
    GOLDEN.mkdir(exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="zs-capture-") as tmp:
        cluster = testcluster.start(tmp, nodes=2, gpus=8, gpu_type="h100")
        try:
            driver = SlurmDriver(str(cluster.conf_path), root=cluster.workdir_root)
            dump(cluster, "sinfo", "sinfo-idle")
            ok = driver.submit(spec("zs-101-1", "echo ok", ("sn1", "sn2"), 8, image="nvcr.io/nvidia/pytorch:24.05"))
            bad = driver.submit(spec("zs-102-1", "exit 3", ("sn1",), 1))
            killed = driver.submit(spec("zs-103-1", "kill -9 $$", ("sn1",), 1))
            for handle in (ok, bad, killed):
                wait_state(driver, handle, "succeeded" if handle == ok else "failed")
            try:
                driver.submit(spec("zs-104-1", "true", ("sn1",), 9))
            except Exception as exc:  # noqa: BLE001 - recorded: the rejected stub is part of the document
                print("rejected as expected:", exc)
            timeout = driver.submit(spec("zs-105-1", "sleep 300", ("sn1",), 2, max_run_s=60))
            node_fail = driver.submit(spec("zs-106-1", "sleep 300", ("sn2",), 2))
            running = driver.submit(spec("zs-107-1", "sleep 300", ("sn1",), 6))
            pending = driver.submit(spec("zs-108-1", "true", ("sn1", "sn2"), 8))
            cancelled = driver.submit(spec("zs-109-1", "sleep 300", ("sn2",), 8))
            wait_state(driver, running, "running")
            driver.cancel(cancelled)
            wait_state(driver, cancelled, "cancelled")
            dump(cluster, "squeue", "squeue-mixed")
            driver.drain("sn1", "golden: drained by hand")
            testcluster._kill_recorded(cluster.directory, "slurmd.sn2")
            wait_state(driver, node_fail, "failed")
            wait_state(driver, timeout, "failed")
            assert driver.poll([pending])[pending].state == "pending"
            dump(cluster, "squeue", "squeue-faults")
            dump(cluster, "sinfo", "sinfo-drained-down")
        finally:
            testcluster.stop(tmp)
    return 0


if __name__ == "__main__":
    sys.exit(main())
