"""Whether a device fault takes out that device only, or its whole node.

A device's fault report is its ``health_detail``: the agent's findings joined by ``"; "``
(``agent/detection/faults.py``: ``XID <code> (<text>)``, ``ECC: …``, ``NVLink: …``,
``npu-smi health <status>: <codes> (<information>)``). Each finding is classified alone:

    finding                                          scope   why
    XID 48  double-bit ECC error (DBE)               device  the GPU's own memory; reset that GPU
    XID 63  ECC page retirement / row-remap event    device  the GPU's own memory repair, needs its reset
    XID 64  ECC page retirement / row-remap failure  device  the GPU's own memory
    XID 92  high single-bit ECC error rate           device  the GPU's own memory
    XID 94  contained ECC error                      device  the GPU's own memory
    XID 95  uncontained ECC error                    device  the GPU's own memory; reset that GPU
    XID 74  NVLink error                             node    the link's peers (and NVSwitch) share it
    XID 79  GPU has fallen off the bus               node    PCIe / host side: usually needs a node reboot
    XID 119, 120  GSP RPC timeout / GSP error        node    driver state of the host
    any other XID (61, 62 micro-controller halts,
        140 unrecovered ECC, codes added later)      node    not known to stay within one device
    ``ECC: …`` (nvidia-smi -q -d ECC findings)       device  volatile uncorrectable counts, pending or
                                                             failed row remaps: that GPU's memory
    ``NVLink: link … inactive``                      node    as XID 74
    ``npu-smi health …`` naming HBM / ECC / memory   device  one chip's memory alarm (npu-smi reports
                                                             health per chip)
    any other npu-smi alarm, an empty or unknown
        detail, a detail cut short                   node    conservative: unknown faults take the node

And for the node as a whole: more than half of its devices faulty cordons the node (a shared cause —
power, cooling, the board — is likelier than that many independent device faults).

XID meanings: NVIDIA, "Xid Errors" and its Xid catalogue
(https://docs.nvidia.com/deploy/xid-errors/analyzing-xid-catalog.html). The agent keeps only the
codes ``core.health.nvidia.FAULT_XIDS`` names as faults; this table decides their scope.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

Scope = Literal["device", "node"]

DEVICE_XIDS = frozenset({48, 63, 64, 92, 94, 95})
NODE_XIDS = frozenset({74, 79, 119, 120})  # documented node-wide; any code in neither set is node too
FINDING_SEPARATOR = "; "
_XID = re.compile(r"^XID (\d+)(?:\s|$|\()")
_DEVICE_PREFIXES = ("ECC:",)
_NPU_MEMORY = re.compile(r"\b(HBM|ECC|memory)\b", re.IGNORECASE)


def finding_scope(finding: str) -> Scope:
    """The scope of one finding (one part of a device's ``health_detail``)."""
    text = finding.strip()
    xid = _XID.match(text)
    if xid:
        return "device" if int(xid.group(1)) in DEVICE_XIDS else "node"
    if text.startswith(_DEVICE_PREFIXES):
        return "device"
    if text.startswith("npu-smi health") and _NPU_MEMORY.search(text):
        return "device"
    return "node"


def findings(detail: str) -> tuple[str, ...]:
    """A faulty device's findings; an empty detail is one unknown finding ("unhealthy")."""
    parts = tuple(part.strip() for part in detail.split(FINDING_SEPARATOR) if part.strip())
    return parts or ("unhealthy",)


@dataclass(frozen=True)
class DeviceFault:
    """A faulty device as its node reported it."""

    index: int
    detail: str

    @property
    def scope(self) -> Scope:
        """Node when any one of its findings is node-scoped."""
        return "device" if all(finding_scope(f) == "device" for f in findings(self.detail)) else "node"

    @property
    def reason(self) -> str:
        return f"device {self.index}: {self.detail or 'unhealthy'}"


def node_faults(faulty: Sequence[DeviceFault], device_count: int) -> tuple[str, ...]:
    """The faults that cordon the whole node: every node-scoped device fault, and — when more than half
    of its ``device_count`` devices are faulty (2·faulty > count) — that count as one more reason."""
    reasons = tuple(fault.reason for fault in faulty if fault.scope == "node")
    if device_count > 0 and 2 * len(faulty) > device_count:
        reasons += (f"{len(faulty)} of {device_count} devices faulty",)
    return reasons
