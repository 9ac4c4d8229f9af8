"""Which faults take out one device and which its node (core.health.scope), and the device cordon's
transitions (core.health.cordon's rule applied to one device)."""

from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from zhisuan.core.health.cordon import CordonState, device_after_report, device_uncordon_check
from zhisuan.core.health.scope import DeviceFault, finding_scope, findings, node_faults

T0 = datetime(2026, 12, 3, tzinfo=UTC)
CLEAR = timedelta(seconds=300)


@pytest.mark.parametrize(("finding", "scope"), [
    # The agent's own spelling (agent/detection/faults.py): "XID <code> (<kernel text>)".
    ("XID 48 (DBE (Double Bit Error) ECC Error)", "device"),
    ("XID 63 (Row Remapper: New row marked for remapping, reset gpu to activate.)", "device"),
    ("XID 64 (no detail)", "device"),
    ("XID 92 (High single-bit ECC error rate)", "device"),
    ("XID 94 (Contained ECC error)", "device"),
    ("XID 95 (Uncontained ECC error)", "device"),
    ("XID 48", "device"),
    ("XID 79 (GPU has fallen off the bus.)", "node"),
    ("XID 74 (NVLINK Error)", "node"),
    ("XID 119 (Timeout waiting for RPC from GSP!)", "node"),
    ("XID 120 (GSP error)", "node"),
    ("XID 61 (no detail)", "node"),      # micro-controller breakpoint: not known to stay in one GPU
    ("XID 140 (no detail)", "node"),     # not in the device table: conservative
    ("XID 480 (no detail)", "node"),     # not 48: the code is read whole
    ("XID 4", "node"),                   # a detail cut short at 255 characters
    ("ECC: 2 volatile uncorrectable errors", "device"),
    ("ECC: row remapping failed", "device"),
    ("ECC: memory repair pending a GPU reset", "device"),
    ("NVLink: link 2, 3 inactive", "node"),
    ("npu-smi health Alarm: 80E18005 (node type=HBM, sensor type=Memory)", "device"),
    ("npu-smi health Critical: 80E18008 (multi-bit ECC error)", "device"),
    ("npu-smi health Alarm: 80CB8009 (node type=AICORE, sensor type=Heartbeat)", "node"),
    ("npu-smi health Alarm: no code", "node"),
    ("unhealthy", "node"),
    ("something the vendor added last week", "node"),
    ("", "node"),
])
def test_finding_scope(finding: str, scope: str) -> None:
    assert finding_scope(finding) == scope


@pytest.mark.parametrize(("detail", "scope"), [
    ("XID 48 (DBE)", "device"),
    ("ECC: 1 volatile uncorrectable errors; XID 48 (DBE)", "device"),
    ("ECC: 1 volatile uncorrectable errors; NVLink: link 1 inactive", "node"),  # one node finding is enough
    ("XID 94 (Contained ECC error); XID 79 (GPU has fallen off the bus.)", "node"),
    ("", "node"),  # an unhealthy device that says nothing more
])
def test_a_device_is_device_scoped_only_when_every_finding_is(detail: str, scope: str) -> None:
    assert DeviceFault(3, detail).scope == scope


def test_findings_split_as_the_agent_joins_them() -> None:
    assert findings("XID 48 (a); ECC: b") == ("XID 48 (a)", "ECC: b")
    assert findings("") == ("unhealthy",)


@pytest.mark.parametrize(("faulty", "count", "expected"), [
    ([], 8, ()),
    ([DeviceFault(3, "XID 48 (DBE)")], 8, ()),  # one bad GPU of 8: the node stays
    ([DeviceFault(3, "XID 79 (off the bus)")], 8, ("device 3: XID 79 (off the bus)",)),
    ([DeviceFault(i, "XID 48 (DBE)") for i in range(4)], 8, ()),  # exactly half: still device by device
    ([DeviceFault(i, "XID 48 (DBE)") for i in range(5)], 8, ("5 of 8 devices faulty",)),
    ([DeviceFault(0, "ECC: row remapping failed")], 1, ("1 of 1 devices faulty",)),  # a 1-device node
    ([DeviceFault(0, "XID 48"), DeviceFault(1, "XID 74")], 8, ("device 1: XID 74",)),
    ([DeviceFault(2, "")], 8, ("device 2: unhealthy",)),
])
def test_node_faults(faulty: list[DeviceFault], count: int, expected: tuple[str, ...]) -> None:
    assert node_faults(faulty, count) == expected


@given(st.lists(st.sampled_from(["XID 48 (DBE)", "XID 79 (bus)", "ECC: row remapping failed", "odd"]),
                max_size=16), st.integers(min_value=0, max_value=16))
def test_the_node_is_cordoned_exactly_when_a_fault_is_node_scoped_or_most_devices_are_faulty(
        details: list[str], extra_healthy: int) -> None:
    faulty = [DeviceFault(i, detail) for i, detail in enumerate(details)]
    count = len(faulty) + extra_healthy
    expected = any(f.scope == "node" for f in faulty) or 2 * len(faulty) > count
    assert bool(node_faults(faulty, count)) == expected


def test_device_cordon_transitions() -> None:
    fault = ("device 3: XID 48 (DBE)",)
    state = device_after_report(CordonState(None), fault, T0, CLEAR)
    assert (state.reason, state.since, state.manual) == ("device 3: XID 48 (DBE)", T0, False)
    state = device_after_report(state, (), T0 + timedelta(seconds=10), CLEAR)  # clean: the clock starts
    assert state.reason is not None and state.clean_since == T0 + timedelta(seconds=10)
    flapped = device_after_report(state, fault, T0 + timedelta(seconds=200), CLEAR)
    assert flapped.clean_since is None and flapped.since == T0  # a fault again restarts the clean period
    assert device_after_report(state, (), T0 + timedelta(seconds=309), CLEAR).reason is not None
    assert device_after_report(state, (), T0 + timedelta(seconds=310), CLEAR) == CordonState(None)


def test_device_uncordon_check() -> None:
    assert device_uncordon_check(True, ()) == ""
    assert device_uncordon_check(True, ("device 3: XID 48",)) == "the device still reports faults: device 3: XID 48"
    assert "unreachable" in device_uncordon_check(False, ())
