"""Golden files for the Slurm driver's pure halves.

- translate: ``LaunchSpec`` → sbatch options + batch script (``golden/translate/<case>.txt``);
- parse: real ``squeue --json`` / ``sinfo --json`` documents recorded from Slurm 22.05 by
  ``capture_golden.py`` → engine states and imported nodes (``golden/<document>.expected.json``).

Regenerate after an intended change with ``ZHISUAN_UPDATE_GOLDENS=1 pytest tests/drivers/slurm/test_golden.py``
and read the diff.
"""

from __future__ import annotations

import dataclasses
import json
import os
from pathlib import Path
from typing import Any

import pytest

from tests.drivers.slurm.specs import make_spec
from zhisuan.catalog.loader import load_catalog
from zhisuan.drivers.base import LaunchSpec, WorkerAssignment
from zhisuan.drivers.slurm.parse import engine_state, imported_nodes, parse_jobs
from zhisuan.drivers.slurm.translate import JobPaths, translate

GOLDEN = Path(__file__).parent / "golden"
PATHS = JobPaths(workdir="/srv/zhisuan/slurm/tenants/acme/runs/7", log_dir="/srv/zhisuan/slurm/logs",
                 payload="/srv/zhisuan/slurm/logs/zs-7-2.payload.sh")


def ascend_spec() -> LaunchSpec:
    workers = tuple(WorkerAssignment(rank=i, node=f"npu{i}", device_indices=tuple(range(8)), model="ascend-910b3",
                                     visible_devices_env="ASCEND_RT_VISIBLE_DEVICES", cpu_milli=2500,
                                     memory_mib=32768) for i in range(4))
    return LaunchSpec(key="zs-7-2", job_id=7, attempt=2, tenant="acme", command=("python", "train.py", "--lr", "3e-4"),
                      workers=workers, max_run_s=7201, env={"HF_HOME": "/data/hf cache", "QUOTE": "it's"},
                      workdir="runs/7", checkpoint_dir="/ckpt/acme/7", rendezvous_port=29611)


TRANSLATE_CASES: dict[str, tuple[LaunchSpec, str | None, str | None]] = {
    "gang-2x8-h100": (make_spec("zs-7-2", ["torchrun", "--nnodes=2", "train.py"], 2, gpus=8), "h100", None),
    "cpu-only-script-with-image": (make_spec("zs-7-2", [], 1, gpus=0, script="set -e\necho 'hi'\n",
                                             image="nvcr.io/nvidia/pytorch:24.05"), None, "batch"),
    "ascend-4x8-vendor-variable": (ascend_spec(), "910b3", "npu"),
}


def render_translation(spec: LaunchSpec, gres_type: str | None, partition: str | None) -> str:
    request = translate(spec, PATHS, gres_type, partition)
    parts = ["# sbatch args", *request.args, "# script", request.script.rstrip("\n")]
    if request.payload is not None:
        parts += [f"# payload -> {PATHS.payload}", request.payload.rstrip("\n")]
    return "\n".join(parts) + "\n"


def jsonable(value: Any) -> Any:
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: jsonable(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, (list, tuple)):
        return [jsonable(v) for v in value]
    if isinstance(value, dict):
        return {k: jsonable(v) for k, v in value.items()}
    if hasattr(value, "isoformat"):
        return value.isoformat()
    return value


def check_golden(path: Path, actual: str) -> None:
    if os.environ.get("ZHISUAN_UPDATE_GOLDENS"):
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(actual)
    assert path.exists(), f"{path} missing: run with ZHISUAN_UPDATE_GOLDENS=1 and review it"
    assert actual == path.read_text(), f"{path.name} differs from its golden file"


@pytest.mark.parametrize("case", sorted(TRANSLATE_CASES))
def test_translate_matches_golden(case: str) -> None:
    spec, gres_type, partition = TRANSLATE_CASES[case]
    check_golden(GOLDEN / "translate" / f"{case}.txt", render_translation(spec, gres_type, partition))


@pytest.mark.parametrize("document", ["squeue-mixed", "squeue-faults"])
def test_squeue_json_parses_to_golden_states(document: str) -> None:
    jobs = parse_jobs(json.loads((GOLDEN / f"{document}.json").read_text()))
    states = {f"{job.job_id} {job.name} {job.state}": jsonable(engine_state(job)) for job in jobs}
    check_golden(GOLDEN / f"{document}.expected.json", json.dumps(states, indent=1) + "\n")


@pytest.mark.parametrize("document", ["sinfo-idle", "sinfo-drained-down"])
def test_sinfo_json_parses_to_golden_nodes(document: str) -> None:
    nodes = imported_nodes(json.loads((GOLDEN / f"{document}.json").read_text()), load_catalog())
    check_golden(GOLDEN / f"{document}.expected.json", json.dumps(jsonable(nodes), indent=1) + "\n")
