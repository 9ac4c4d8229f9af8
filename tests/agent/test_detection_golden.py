"""Golden-file tests: each recorded tool output parses to exactly its checked-in expected devices.

Regenerate after an intended parser change with ``ZHISUAN_UPDATE_GOLDENS=1 pytest tests/agent`` and
review the diff: the goldens are the contract, the hand-written assertions below pin the key facts.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path

import pytest

from zhisuan.agent.detection.cnmon import parse_cnmon
from zhisuan.agent.detection.device import DetectedDevice
from zhisuan.agent.detection.hy_smi import parse_dcu_json, parse_dcu_table
from zhisuan.agent.detection.ixsmi import parse_ixsmi
from zhisuan.agent.detection.mthreads_gmi import parse_mthreads_gmi
from zhisuan.agent.detection.mx_smi import parse_mx_smi
from zhisuan.agent.detection.npu_smi import parse_npu_smi_info
from zhisuan.agent.detection.nvidia_smi import parse_nvidia_smi_csv

FIXTURES = Path(__file__).parent / "fixtures"
GOLDEN = Path(__file__).parent / "golden"
MAPPING_SUFFIX = ".mapping.txt"


def _npu(path: Path) -> list[DetectedDevice]:
    mapping = path.with_name(path.stem + MAPPING_SUFFIX)
    return parse_npu_smi_info(path.read_text(), mapping.read_text() if mapping.is_file() else None)


PARSERS: dict[str, Callable[[Path], list[DetectedDevice]]] = {
    "nvidia-smi": lambda path: parse_nvidia_smi_csv(path.read_text()),
    "npu-smi": _npu,
    "cnmon": lambda path: parse_cnmon(path.read_text()),
    "hy-smi-json": lambda path: parse_dcu_json(path.read_text()),
    "hy-smi": lambda path: parse_dcu_table(path.read_text()),
    "mthreads-gmi": lambda path: parse_mthreads_gmi(path.read_text()),
    "ixsmi": lambda path: parse_ixsmi(path.read_text()),
    "mx-smi": lambda path: parse_mx_smi(path.read_text()),
}
CASES = sorted(path for path in FIXTURES.glob("*/*.txt") if not path.name.endswith(MAPPING_SUFFIX))


def parse_fixture(path: Path) -> list[DetectedDevice]:
    return PARSERS[path.parent.name](path)


def test_every_tool_directory_has_fixtures() -> None:
    assert {path.parent.name for path in CASES} == set(PARSERS)


@pytest.mark.parametrize("fixture", CASES, ids=lambda p: f"{p.parent.name}/{p.stem}")
def test_parse_matches_golden(fixture: Path) -> None:
    golden = GOLDEN / fixture.parent.name / f"{fixture.stem}.json"
    parsed = [device.to_dict() for device in parse_fixture(fixture)]
    if os.environ.get("ZHISUAN_UPDATE_GOLDENS"):
        golden.parent.mkdir(parents=True, exist_ok=True)
        golden.write_text(json.dumps(parsed, indent=2, ensure_ascii=False) + "\n")
    assert parsed == json.loads(golden.read_text())


def devices_of(relative: str) -> list[DetectedDevice]:
    return parse_fixture(FIXTURES / relative)


def test_h100x8_is_eight_healthy_h100_sxm() -> None:
    devices = devices_of("nvidia-smi/h100x8-healthy.txt")
    assert [d.index for d in devices] == list(range(8))
    assert {d.model_key for d in devices} == {"h100-sxm"}
    assert all(d.healthy and d.health_detail == "ok" and d.memory_mib == 81559 for d in devices)
    assert len({d.uuid for d in devices}) == 8


def test_nvidia_faults_lost_gpu_and_heat() -> None:
    devices = devices_of("nvidia-smi/a800x8-faults.txt")
    assert len(devices) == 8
    by_index = {d.index: d for d in devices}
    assert not by_index[5].healthy and "[Unknown Error]" in by_index[5].health_detail
    assert by_index[2].healthy and by_index[2].health_detail.startswith("warning: temperature 88")
    lost = by_index[-1]
    assert (lost.healthy, lost.uuid, lost.model_key) == (False, "0000:3B:00.0", None)
    assert sum(not d.healthy for d in devices) == 2


def test_nvidia_no_devices_and_unknown_models() -> None:
    assert devices_of("nvidia-smi/no-devices.txt") == []
    keys = [d.model_key for d in devices_of("nvidia-smi/mixed-models.txt")]
    assert keys == ["a10", "t4", "rtx-4090", None]  # a part newer than the catalog stays unresolved


def test_ascend_910b3x8_uses_the_mapping_for_full_names_and_logical_ids() -> None:
    devices = devices_of("npu-smi/910b3x8-healthy.txt")
    assert [d.index for d in devices] == list(range(8))
    assert {d.reported_name for d in devices} == {"Ascend 910B3"}
    assert {d.model_key for d in devices} == {"ascend-910b3"}
    assert all(d.memory_mib == 65536 and d.healthy for d in devices)


def test_ascend_health_column() -> None:
    devices = devices_of("npu-smi/910b3x8-critical.txt")
    assert [d.index for d in devices if not d.healthy] == [3]
    assert devices[6].healthy and "Warning" in devices[6].health_detail
    masked = devices_of("npu-smi/atlas800-910a-warning.txt")
    assert [d.index for d in masked if "Warning" in d.health_detail] == [3, 7]
    assert {d.reported_name for d in masked} == {"Ascend 910A"}  # "xxx" replaced from info -m
    assert {d.memory_mib for d in masked} == {32768}  # HBM column, not the 15 GB DDR column


def test_ascend_a3_dies_resolve_to_910c_and_310_uses_device_ids() -> None:
    a3 = devices_of("npu-smi/atlas-a3-910c.txt")
    assert [(d.index, d.model_key) for d in a3] == [(i, "ascend-910c") for i in range(4)]
    inference = devices_of("npu-smi/atlas300-310x4.txt")
    assert [d.index for d in inference] == [3, 4, 5, 6]
    assert {d.memory_mib for d in inference} == {8192}


def test_cambricon_layouts_and_warnings() -> None:
    assert [d.uuid for d in devices_of("cnmon/mlu370-x8-v5.txt")] == ["0000:13:00.0", "0000:16:00.0"]
    old = devices_of("cnmon/mlu370-x4-v4.txt")
    assert [(d.index, d.model_key, d.memory_mib) for d in old] == [(i, "mlu370-x4", 23308) for i in range(3)]
    warned = devices_of("cnmon/mlu370-x8-ecc-derived.txt")
    assert [d.health_detail for d in warned] == ["warning: 3 ECC errors", "warning: temperature 91 C >= 85 C"]


def test_hygon_json_and_table() -> None:
    (card,) = devices_of("hy-smi-json/dcu-gpustack.txt")
    assert (card.uuid, card.memory_mib, card.vendor, card.temperature_c) == (
        "7100fa8866904061",
        65520,
        "hygon",
        39.0,
    )
    table = devices_of("hy-smi/dcu-x8-busy.txt")
    assert [d.temperature_c for d in table][:3] == [67.0, 68.0, 69.0]
    assert all(d.model_key is None and d.healthy for d in table)


def test_moore_threads_iluvatar_metax() -> None:
    s5000 = devices_of("mthreads-gmi/s5000x8.txt")
    assert len(s5000) == 8 and {d.model_key for d in s5000} == {"mtt-s5000"}
    assert devices_of("mthreads-gmi/s3000-mpc.txt")[0].memory_used_mib == 30094
    assert [d.healthy for d in devices_of("ixsmi/bi-v100-err-derived.txt")] == [False]
    assert {d.model_key for d in devices_of("ixsmi/bi-v100x8.txt")} == {"iluvatar-bi-v100"}
    metax = devices_of("mx-smi/c500x8.txt")
    assert [d.uuid for d in metax][:2] == ["0000:0e:00.0", "0000:0f:00.0"]
    assert {(d.model_key, d.memory_mib, d.memory_used_mib) for d in metax} == {("metax-c500", 65536, 826)}
