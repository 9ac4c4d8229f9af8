"""The agent's fault probe on recorded tool outputs (a FAKE runner answers from tests/core/health/golden)."""

from collections.abc import Sequence
from pathlib import Path

from zhisuan.agent.detection.device import DetectedDevice
from zhisuan.agent.detection.faults import FaultProbe
from zhisuan.agent.detection.runners import CommandResult

GOLDEN = Path(__file__).parents[1] / "core" / "health" / "golden"


class RecordedTools:
    """FAKE: answers nvidia-smi/npu-smi invocations with recorded outputs (no GPU here)."""

    def __init__(self, answers: dict[tuple[str, ...], str]) -> None:
        self.answers = answers

    def which(self, tool: str) -> bool:
        return True

    def run(self, argv: Sequence[str], timeout_s: float) -> CommandResult:
        text = self.answers.get(tuple(argv))
        return CommandResult(0, text) if text is not None else CommandResult(127, "", "not recorded")


def gpu(index: int, vendor: str = "nvidia") -> DetectedDevice:
    return DetectedDevice(index=index, uuid=f"GPU-{index}", reported_name="NVIDIA H100 80GB HBM3", model_key="h100",
                          memory_mib=81559, healthy=True, health_detail="ok", vendor=vendor, tool="nvidia-smi")


def test_ecc_nvlink_and_new_xid_lines_mark_devices(tmp_path: Path) -> None:
    kernel = tmp_path / "kern.log"
    kernel.write_text((GOLDEN / "kern-xid.log").read_text())  # old lines: before the agent started
    tools = RecordedTools({
        ("nvidia-smi", "-q", "-d", "ECC"): (GOLDEN / "nvidia-smi-ecc-h100.txt").read_text(),
        ("nvidia-smi", "nvlink", "-s"): "",
        ("nvidia-smi", "--query-gpu=index,pci.bus_id", "--format=csv,noheader"):
            "0, 00000000:18:00.0\n1, 00000000:2A:00.0\n2, 00000000:86:00.0\n",
    })
    probe = FaultProbe(tools, kernel)
    devices = [gpu(0), gpu(1), gpu(2)]
    first = probe(devices)
    assert [d.healthy for d in first] == [True, False, True]  # the old XID 79 on 86:00 does not count
    assert first[1].health_detail == "ECC: 2 volatile uncorrectable errors"
    with kernel.open("a") as log:  # injected fault: the GPU at 86:00 falls off the bus now
        log.write("[ 9001.1] NVRM: Xid (PCI:0000:86:00): 79, pid=1, name=python, GPU has fallen off the bus.\n")
        log.write("[ 9001.2] NVRM: Xid (PCI:0000:18:00): 13, pid=1, name=python, Graphics Exception\n")
    second = probe(devices)
    assert second[2].health_detail == "XID 79 (pid=1, name=python, GPU has fallen off the bus.)"
    assert second[0].healthy  # XID 13 is the application's error, not the device's


def test_nvlink_and_ascend_alarms() -> None:
    tools = RecordedTools({
        ("nvidia-smi", "nvlink", "-s"): (GOLDEN / "nvidia-smi-nvlink.txt").read_text(),
        ("npu-smi", "info", "-t", "health", "-i", "0"): (GOLDEN / "npu-smi-health-ok.txt").read_text(),
        ("npu-smi", "info", "-t", "health", "-i", "1"): (GOLDEN / "npu-smi-health-alarm.txt").read_text(),
    })
    nvidia = FaultProbe(tools)([gpu(0), gpu(1)])
    assert [d.health_detail for d in nvidia] == ["ok", "NVLink: link 2 inactive"]
    ascend = FaultProbe(tools)([gpu(0, "huawei"), gpu(1, "huawei")])
    assert ascend[0].healthy and not ascend[1].healthy
    assert ascend[1].health_detail.startswith("npu-smi health Alarm: 80E18005 80C98008")
