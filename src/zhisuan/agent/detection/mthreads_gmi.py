"""Moore Threads: the default ``mthreads-gmi`` table.

Each GPU is a block of rows:

    0    MTT S5000            |00000000:18:00.0    |0%    0MiB(81920MiB)
         Physical      P0     |16x(16x)            |48C   YES
                                                   |      On-die, EDC

row 1: id, name | PCIe bus id | utilisation, memory used(total); row 2: device type, perf state |
lane width | temperature, MPC capable. mthreads-gmi has no health column: heat is a warning.
"""

from __future__ import annotations

import re

from zhisuan.agent.detection.device import (
    DetectedDevice,
    SmiParseError,
    resolve_model_key,
    temperature_health,
)
from zhisuan.catalog import Catalog, default_catalog

TOOL = "mthreads-gmi"
VENDOR = "moorethreads"
FIRST_ROW = re.compile(
    r"^\s*(?P<index>\d+)\s+(?P<name>.+?)\s*\|\s*(?P<bus>[0-9a-fA-F:.]+)\s*\|\s*\d+%\s+"
    r"(?P<used>\d+)MiB\((?P<total>\d+)MiB\)"
)
TEMPERATURE = re.compile(r"\|\s*(\d+(?:\.\d+)?)C\b")


def parse_mthreads_gmi(text: str, catalog: Catalog | None = None) -> list[DetectedDevice]:
    """Devices from the plain ``mthreads-gmi`` output; the process table is ignored."""
    catalog = catalog or default_catalog()
    lines = text.splitlines()
    devices: list[DetectedDevice] = []
    for position, line in enumerate(lines):
        if "Processes:" in line:
            break
        match = FIRST_ROW.match(line)
        if not match:
            continue
        following = lines[position + 1] if position + 1 < len(lines) else ""
        temperature = TEMPERATURE.search(following)
        temperature_c = float(temperature.group(1)) if temperature else None
        healthy, detail = temperature_health(temperature_c)
        name = match.group("name")
        devices.append(
            DetectedDevice(
                index=int(match.group("index")),
                uuid=match.group("bus"),
                reported_name=name,
                model_key=resolve_model_key(catalog, name),
                memory_mib=int(match.group("total")),
                memory_used_mib=int(match.group("used")),
                temperature_c=temperature_c,
                healthy=healthy,
                health_detail=detail,
                vendor=VENDOR,
                tool=TOOL,
            )
        )
    if not devices and "mthreads-gmi" not in text:
        raise SmiParseError("mthreads-gmi output has no device table")
    return devices
