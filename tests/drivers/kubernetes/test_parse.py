"""Pure parse (``parse.parse_nodes``, ``parse.parse_job_state``): API JSON fixtures → golden values.

The fixtures in golden/api/ are written by hand after the Kubernetes API reference (see golden/README.md);
the expected results are in golden/parsed/. Regenerate after an intended change with
``ZHISUAN_UPDATE_GOLDENS=1 pytest tests/drivers/kubernetes`` and review the diff; the hand-written
assertions below pin the key facts either way.
"""

from __future__ import annotations

import dataclasses
import json
import os
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from zhisuan.catalog.loader import default_catalog
from zhisuan.drivers.base import EngineJobState
from zhisuan.drivers.kubernetes.parse import parse_job_state, parse_nodes

GOLDEN = Path(__file__).parent / "golden"
JOB_CASES = sorted(p.name for p in (GOLDEN / "api" / "jobs").iterdir() if p.is_dir())


def plain(value: Any) -> Any:
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: plain(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, list | tuple):
        return [plain(v) for v in value]
    if isinstance(value, dict):
        return {k: plain(v) for k, v in value.items()}
    return value.isoformat() if isinstance(value, datetime) else value


def check_golden(name: str, value: Any) -> None:
    golden = GOLDEN / "parsed" / f"{name}.json"
    if os.environ.get("ZHISUAN_UPDATE_GOLDENS"):
        golden.parent.mkdir(parents=True, exist_ok=True)
        golden.write_text(json.dumps(plain(value), indent=2, ensure_ascii=False) + "\n")
    assert plain(value) == json.loads(golden.read_text())


def load(relative: str) -> Any:
    return json.loads((GOLDEN / "api" / relative).read_text())


def job_state(case: str) -> EngineJobState:
    return parse_job_state(load(f"jobs/{case}/job.json"), load(f"jobs/{case}/pods.json")["items"])


def test_nodes_match_golden() -> None:
    check_golden("nodes", parse_nodes(load("nodes.json"), default_catalog()))


def test_nodes_key_facts() -> None:
    nodes = {n.name: n for n in parse_nodes(load("nodes.json"), default_catalog())}
    assert list(nodes) == sorted(nodes)
    a = nodes["gpu-a"]
    assert (a.cpu_cores, a.memory_mib, a.state) == (191, 2112399636 // 1024, "ready")  # allocatable, not capacity
    assert [d.index for d in a.devices] == list(range(8)) and {d.model for d in a.devices} == {"h100-sxm"}
    assert {d.memory_mib for d in a.devices} == {81559}  # usable, as nvidia-smi reports it (nominal 80 GiB = 81920)
    assert nodes["gpu-b"].state == "drained"  # cordoned
    assert {d.model for d in nodes["gpu-b"].devices} == {"a800-sxm4-80gb"}
    npu = nodes["npu-01"]
    assert (npu.state, len(npu.devices), npu.devices[0].model) == ("ready", 8, "ascend-910b3")  # PreferNoSchedule
    c = nodes["gpu-c"]  # unknown product: the resource name and the label's memory; allocatable count
    assert (c.state, len(c.devices), c.devices[0].model, c.devices[0].memory_mib) == \
        ("drained", 3, "nvidia.com/gpu", 196608)
    assert (nodes["cpu-01"].state, nodes["cpu-01"].devices, nodes["cpu-01"].cpu_cores) == ("down", (), 31)


@pytest.mark.parametrize("case", JOB_CASES)
def test_job_states_match_golden(case: str) -> None:
    check_golden(f"jobs/{case}", job_state(case))


EXPECTED = {  # case: (state, exit code, platform fault, reason starts with)
    "pending-unschedulable": ("pending", None, False, "Unschedulable: 0/5 nodes are available"),
    "pending-image-pull": ("pending", None, False, "ImagePullBackOff"),
    "running-gang": ("running", None, False, ""),
    "complete": ("succeeded", 0, False, ""),
    "failed-gang-exit-3": ("failed", 3, False, "BackoffLimitExceeded"),
    "failed-deadline": ("failed", 143, False, "DeadlineExceeded"),
    "failed-evicted": ("failed", 137, True, "BackoffLimitExceeded: pod 0 Evicted"),
    "failed-node-taint-disruption": ("failed", 137, True, "BackoffLimitExceeded: pod 0 disrupted"),
    "failed-oom": ("failed", 137, False, "BackoffLimitExceeded"),
    "deleting-foreground": ("running", None, False, "cancelling"),
    "deleted-pods-gone": ("cancelled", None, False, "deleted"),
    "suspended": ("pending", None, False, "Job is suspended"),
}


def test_every_fixture_has_expectations() -> None:
    assert set(EXPECTED) == set(JOB_CASES)


@pytest.mark.parametrize("case", sorted(EXPECTED))
def test_job_state_key_facts(case: str) -> None:
    state, code, fault, reason = EXPECTED[case]
    got = job_state(case)
    assert (got.state, got.exit_code, got.platform_fault) == (state, code, fault)
    assert got.reason.startswith(reason), got.reason


def test_times_are_utc_aware() -> None:
    done = job_state("complete")
    assert done.started_at == datetime(2026, 12, 1, 10, 0, 5, tzinfo=UTC)  # the container's start, not the Job's
    assert done.ended_at == datetime(2026, 12, 1, 10, 42, 13, tzinfo=UTC)
    gang = job_state("running-gang")
    assert gang.started_at == datetime(2026, 12, 1, 10, 0, 7, tzinfo=UTC)  # the first worker to start


@pytest.mark.parametrize(("deleted_by_us", "state"), [(False, "lost"), (True, "cancelled")])
def test_a_job_the_api_has_forgotten(deleted_by_us: bool, state: str) -> None:
    assert parse_job_state(None, [], deleted_by_us=deleted_by_us).state == state
