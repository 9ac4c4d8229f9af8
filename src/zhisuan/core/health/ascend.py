"""Huawei Ascend NPU alarms from ``npu-smi info -t health -i <npu id>`` (npu-smi command reference).

The command prints one block per chip::

        Health Status                  : Alarm
        Error Code                     : 80E18005 80C98008
        Error Information              : node type=HBM, sensor type=Memory, ...

"OK" is healthy; "Warning" is a minor alarm (the chip keeps working: healthy, with the codes as a
warning); "Alarm", "Critical" and anything else are faults. Error code "NA" means none.
"""

from __future__ import annotations

from dataclasses import dataclass

HEALTHY_STATUSES = ("OK", "Warning")


@dataclass(frozen=True)
class NpuHealth:
    status: str
    error_codes: tuple[str, ...]
    information: str

    @property
    def fault(self) -> str:
        if self.status in HEALTHY_STATUSES:
            return ""
        codes = " ".join(self.error_codes) or "no code"
        return f"npu-smi health {self.status}: {codes}" + (f" ({self.information})" if self.information else "")

    @property
    def warning(self) -> str:
        return f"npu-smi health Warning: {' '.join(self.error_codes)}" if self.status == "Warning" else ""


def parse_npu_health(text: str) -> list[NpuHealth]:
    """One ``NpuHealth`` per "Health Status" line (a chip), with the error lines that follow it."""
    out: list[NpuHealth] = []
    status: str | None = None
    codes: tuple[str, ...] = ()
    info = ""
    for line in text.splitlines():
        if ":" not in line:
            continue
        key, value = (part.strip() for part in line.split(":", 1))
        if key == "Health Status":
            if status is not None:
                out.append(NpuHealth(status, codes, info))
            status, codes, info = value, (), ""
        elif key == "Error Code" and status is not None:
            codes = tuple(c for c in value.split() if c.upper() != "NA")
        elif key == "Error Information" and status is not None:
            info = "" if value.upper() == "NA" else value
    if status is not None:
        out.append(NpuHealth(status, codes, info))
    if not out:
        raise ValueError("no 'Health Status' line: not the output of npu-smi info -t health")
    return out
