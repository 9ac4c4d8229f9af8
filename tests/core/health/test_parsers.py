"""Health parsers on recorded outputs (tests/core/health/golden, written from the vendors' documented formats)."""

from pathlib import Path

import pytest

from zhisuan.core.health.ascend import parse_npu_health
from zhisuan.core.health.nvidia import parse_ecc, parse_nvlink_status, parse_xid_lines, short_bus_id

GOLDEN = Path(__file__).parent / "golden"


def read(name: str) -> str:
    return (GOLDEN / name).read_text()


def test_xid_lines_are_found_and_classified() -> None:
    xids = parse_xid_lines(read("kern-xid.log").splitlines())
    assert [(x.bus_id, x.code, x.fault, x.application) for x in xids] == [
        ("0000:3b:00", 13, False, True),
        ("0000:86:00", 79, True, False),
        ("0000:af:00", 94, True, False),
        ("0000:3b:00", 31, False, True),
    ]
    assert xids[1].text.endswith("GPU has fallen off the bus.")


def test_bus_ids_of_kernel_and_smi_match() -> None:
    assert short_bus_id("0000:86:00") == short_bus_id("00000000:86:00.0") == "86:00"


def test_ecc_newer_layout() -> None:
    first, second = parse_ecc(read("nvidia-smi-ecc-h100.txt"))
    assert (first.bus_id, first.volatile_uncorrectable, first.aggregate_uncorrectable) == ("00000000:18:00.0", 0, 1)
    assert first.fault == ""  # history only: the row was remapped, nothing pending
    assert (second.volatile_uncorrectable, second.remap_pending) == (2, True)
    assert second.fault == "ECC: 2 volatile uncorrectable errors"


def test_ecc_older_layout_counts_each_error_once() -> None:
    (gpu,) = parse_ecc(read("nvidia-smi-ecc-v100.txt"))
    assert (gpu.volatile_uncorrectable, gpu.aggregate_uncorrectable, gpu.pending_retirement) == (0, 1, True)
    assert gpu.fault == "ECC: memory repair pending a GPU reset"


def test_nvlink_lost_link_is_a_fault_but_no_nvlink_is_not() -> None:
    assert parse_nvlink_status(read("nvidia-smi-nvlink.txt")) == {0: "", 1: "NVLink: link 2 inactive", 2: ""}


@pytest.mark.parametrize(("name", "fault", "warning"), [
    ("npu-smi-health-ok.txt", "", ""),
    ("npu-smi-health-warning.txt", "", "npu-smi health Warning: 80E01801"),
    ("npu-smi-health-alarm.txt", "npu-smi health Alarm: 80E18005 80C98008 (node type=HBM, sensor type=Memory, "
                                 "event state=multi-bit ECC error)", ""),
])
def test_npu_smi_health(name: str, fault: str, warning: str) -> None:
    (chip,) = parse_npu_health(read(name))
    assert (chip.fault, chip.warning) == (fault, warning)


def test_npu_smi_garbage_is_refused() -> None:
    with pytest.raises(ValueError, match="Health Status"):
        parse_npu_health("command not found\n")
