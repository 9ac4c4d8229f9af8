"""Which cordons a running job's workers hit (``workloads.faults.fault_cordons_hit``): a node cordoned
for a fault hits every job there; a device cordon only the jobs holding that device."""

from __future__ import annotations

import pytest

from zhisuan.workloads.faults import Cordon, Cordons, fault_cordons_hit
from zhisuan.workloads.models import Job

LOW, HIGH = [0, 1, 2, 3], [4, 5, 6, 7]


def job(*workers: tuple[str, list[int]]) -> Job:
    return Job(placement=[{"rank": rank, "node": node, "device_indices": devices}
                          for rank, (node, devices) in enumerate(workers)])


@pytest.mark.parametrize(("workers", "cordons", "hit"), [
    ([("s/a", LOW)], Cordons({}, {"s/a": {3: "device 3: XID 48"}}), {"s/a": "device 3: XID 48"}),
    ([("s/a", HIGH)], Cordons({}, {"s/a": {3: "device 3: XID 48"}}), {}),  # the other half keeps running
    ([("s/b", LOW)], Cordons({}, {"s/a": {3: "device 3: XID 48"}}), {}),  # same index, another node
    ([("s/a", HIGH)], Cordons({"s/a": Cordon("device 3: XID 79", False)}, {}), {"s/a": "device 3: XID 79"}),
    ([("s/a", HIGH)], Cordons({"s/a": Cordon("operator: maintenance", True)}, {}), {}),  # by hand: stops nothing
    ([("s/a", LOW)], Cordons({"s/a": Cordon("operator: maintenance", True)}, {"s/a": {0: "device 0: ECC: x"}}),
     {"s/a": "device 0: ECC: x"}),  # a manual node cordon does not hide a device fault
    ([("s/a", HIGH), ("s/b", LOW)], Cordons({}, {"s/b": {1: "device 1: XID 94", 2: "device 2: XID 95"}}),
     {"s/b": "device 1: XID 94; device 2: XID 95"}),  # a gang: one worker's device stops the whole gang
])
def test_fault_cordons_hit(workers: list[tuple[str, list[int]]], cordons: Cordons, hit: dict[str, str]) -> None:
    assert fault_cordons_hit(job(*workers), cordons) == hit
