"""NVIDIA device faults from three sources, as NVIDIA documents them.

XID (kernel log, one line per event; "XID Errors", NVIDIA GPU deployment and management docs)::

    NVRM: Xid (PCI:0000:3b:00): 79, pid=1234, name=python, GPU has fallen off the bus.

The number after the colon is the XID. Codes whose documented action is a GPU reset or node
reboot (hardware, memory or interconnect) are faults; codes documented as application errors
(13 graphics engine exception, 31 MMU fault, 43 GPU stopped processing, 45 preemptive cleanup,
69 graphics engine class error) are the program's, not the device's — they do not cordon.

ECC (``nvidia-smi -q -d ECC``): a "Volatile" uncorrectable count above zero (since the last driver
load), a pending page retirement or a pending row remap (needs a reset), or a failed row remap is a
fault; aggregate counts alone are history, reported as a warning.

NVLink (``nvidia-smi nvlink -s``): a GPU with some links up and others ``<inactive>`` has lost a link
(a GPU with every link inactive simply has no NVLink).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

FAULT_XIDS = frozenset({48, 61, 62, 63, 64, 74, 79, 92, 94, 95, 119, 120, 140})
APPLICATION_XIDS = frozenset({13, 31, 43, 45, 69})
XID_PATTERN = re.compile(r"NVRM: Xid \(PCI:([0-9a-fA-F:.]+)\): (\d+)(?:, (.*))?$")


@dataclass(frozen=True)
class Xid:
    bus_id: str  # as the kernel wrote it, e.g. 0000:3b:00
    code: int
    text: str

    @property
    def fault(self) -> bool:
        return self.code in FAULT_XIDS

    @property
    def application(self) -> bool:
        return self.code in APPLICATION_XIDS


def parse_xid_lines(lines: list[str]) -> list[Xid]:
    """Every XID event in these kernel-log lines (other lines ignored), in order."""
    out = []
    for line in lines:
        match = XID_PATTERN.search(line.rstrip())
        if match:
            out.append(Xid(match.group(1).lower(), int(match.group(2)), (match.group(3) or "").strip()))
    return out


def short_bus_id(bus_id: str) -> str:
    """``00000000:3B:00.0`` (nvidia-smi) and ``0000:3b:00`` (kernel) both → ``3b:00``: bus and device."""
    parts = bus_id.lower().split(":")
    return ":".join(parts[-2:]).split(".")[0] if len(parts) >= 2 else bus_id.lower()


@dataclass(frozen=True)
class EccReport:
    bus_id: str
    volatile_uncorrectable: int
    aggregate_uncorrectable: int
    pending_retirement: bool
    remap_pending: bool
    remap_failed: bool

    @property
    def fault(self) -> str:
        """Why this GPU is faulty, or "" when it is not."""
        if self.remap_failed:
            return "ECC: row remapping failed"
        if self.volatile_uncorrectable > 0:
            return f"ECC: {self.volatile_uncorrectable} volatile uncorrectable errors"
        if self.remap_pending or self.pending_retirement:
            return "ECC: memory repair pending a GPU reset"
        return ""


_GPU_HEADER = re.compile(r"^GPU ([0-9A-Fa-f]{4,8}:[0-9A-Fa-f]{2}:[0-9A-Fa-f]{2}\.[0-7])\s*$")
_KEY_VALUE = re.compile(r"^(\s*)([^:]+?)\s*:\s*(.*)$")
_UNCORRECTABLE_KEYS = ("SRAM Uncorrectable", "DRAM Uncorrectable")


def parse_ecc(text: str) -> list[EccReport]:
    """One ``EccReport`` per ``GPU <bus id>`` section of ``nvidia-smi -q -d ECC``.

    Counts are summed over the section's uncorrectable lines within "Volatile" and "Aggregate"
    (older drivers: "Double Bit" → "Device Memory"/"Total"; newer: "SRAM/DRAM Uncorrectable");
    "N/A" counts are 0.
    """
    reports: list[EccReport] = []
    current: dict[str, object] | None = None
    scope: list[tuple[int, str]] = []  # (indent, section) of the enclosing headers
    for raw in text.splitlines():
        header = _GPU_HEADER.match(raw.strip())
        if header:
            if current is not None:
                reports.append(EccReport(**current))  # type: ignore[arg-type]
            current = {"bus_id": header.group(1), "volatile_uncorrectable": 0, "aggregate_uncorrectable": 0,
                       "pending_retirement": False, "remap_pending": False, "remap_failed": False}
            scope = []
            continue
        if current is None or not raw.strip():
            continue
        indent = len(raw) - len(raw.lstrip())
        scope = [(i, s) for i, s in scope if i < indent]
        match = _KEY_VALUE.match(raw)
        if match is None or not match.group(3).strip():  # a section header ("Volatile", "Double Bit")
            scope.append((indent, raw.strip().rstrip(":").strip()))
            continue
        _apply_ecc_value(current, [s for _, s in scope], match.group(2).strip(), match.group(3).strip())
    if current is not None:
        reports.append(EccReport(**current))  # type: ignore[arg-type]
    return reports


def _apply_ecc_value(report: dict[str, object], scope: list[str], key: str, value: str) -> None:
    """Uncorrectable = "SRAM/DRAM Uncorrectable" (newer drivers) or the "Total" under "Double Bit"
    (older drivers, whose per-memory lines the Total already sums: counted once)."""
    count = int(value) if value.isdigit() else 0
    uncorrectable = key in _UNCORRECTABLE_KEYS or (key == "Total" and "Double Bit" in scope)
    if uncorrectable and "Volatile" in scope:
        report["volatile_uncorrectable"] = int(report["volatile_uncorrectable"]) + count  # type: ignore[call-overload]
    elif uncorrectable and "Aggregate" in scope:
        report["aggregate_uncorrectable"] = int(report["aggregate_uncorrectable"]) + count  # type: ignore[call-overload]
    elif key in ("Pending Page Blacklist", "Pending Page Retirement"):
        report["pending_retirement"] = value.lower() == "yes"
    elif key == "Pending" and "Remapped Rows" in scope:
        report["remap_pending"] = value.lower() == "yes"
    elif key == "Remapping Failure Occurred":
        report["remap_failed"] = value.lower() == "yes"


_NVLINK_GPU = re.compile(r"^GPU (\d+): .*$")
_NVLINK_LINK = re.compile(r"^\s*Link (\d+): (.*)$")


def parse_nvlink_status(text: str) -> dict[int, str]:
    """GPU index → fault ("" when fine) from ``nvidia-smi nvlink -s``: a GPU with some links up and
    others inactive has lost those links."""
    links: dict[int, list[tuple[int, bool]]] = {}
    gpu: int | None = None
    for line in text.splitlines():
        head = _NVLINK_GPU.match(line.strip())
        if head:
            gpu = int(head.group(1))
            links[gpu] = []
            continue
        link = _NVLINK_LINK.match(line)
        if link and gpu is not None:
            links[gpu].append((int(link.group(1)), "inactive" not in link.group(2).lower()))
    out = {}
    for index, states in links.items():
        down = [n for n, up in states if not up]
        out[index] = (f"NVLink: link {', '.join(map(str, down))} inactive"
                      if down and len(down) < len(states) else "")
    return out
