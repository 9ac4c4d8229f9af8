"""The nvidia-smi-style boxed table that Iluvatar ``ixsmi`` and MetaX ``mx-smi`` both print.

Each device is two ``| … | … | … |`` rows: row 1 starts with the index and name and has the bus id in
the second cell; row 2 has the temperature in the first cell and memory used/total in the second.
The vendors differ only in how memory is written, so each passes its own pattern.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from zhisuan.agent.detection.device import (
    DetectedDevice,
    SmiParseError,
    parse_float,
    resolve_model_key,
    table_cells,
    temperature_health,
)
from zhisuan.catalog import Catalog

FAULT_MARKERS = ("ERR!", "Unknown Error", "GPU is lost")
TEMPERATURE = re.compile(r"(?:^|\s)(\d+(?:\.\d+)?)C\b")
FIRST_CELL = re.compile(r"^(?P<index>\d+)\s+(?P<name>.+)$")


@dataclass(frozen=True)
class TableDialect:
    tool: str
    vendor: str
    memory: re.Pattern[str]  # groups: used, total (MiB)
    banner: str  # text every real output contains, to tell "no devices" from "not this tool"


def parse_two_row_table(text: str, dialect: TableDialect, catalog: Catalog) -> list[DetectedDevice]:
    devices: list[DetectedDevice] = []
    first: list[str] | None = None
    for line in text.splitlines():
        if "Processes:" in line:
            break
        cells = table_cells(line)
        if not cells or len(cells) < 3:
            continue
        if first is None and FIRST_CELL.match(cells[0]):
            first = cells
        elif first is not None and dialect.memory.search(cells[1]):
            devices.append(_device(first, cells, dialect, catalog))
            first = None
    if not devices and dialect.banner not in text:
        raise SmiParseError(f"{dialect.tool} output has no device table")
    return devices


def _device(first: list[str], second: list[str], dialect: TableDialect, catalog: Catalog) -> DetectedDevice:
    head = FIRST_CELL.match(first[0])
    assert head is not None  # checked by the caller
    name = head.group("name").strip()
    memory = dialect.memory.search(second[1])
    temperature = TEMPERATURE.search(second[0])
    temperature_c = parse_float(temperature.group(1)) if temperature else None
    healthy, detail = temperature_health(temperature_c)
    faults = sorted({marker for cell in (*first, *second) for marker in FAULT_MARKERS if marker in cell})
    if faults:
        healthy, detail = False, f"fault: {dialect.tool} reports " + ", ".join(faults)
    return DetectedDevice(
        index=int(head.group("index")),
        uuid=first[1].split()[0] if first[1] else f"{dialect.tool}-{head.group('index')}",
        reported_name=name,
        model_key=resolve_model_key(catalog, name),
        memory_mib=int(memory.group(2)) if memory else None,
        memory_used_mib=int(memory.group(1)) if memory else None,
        temperature_c=temperature_c,
        healthy=healthy,
        health_detail=detail,
        vendor=dialect.vendor,
        tool=dialect.tool,
    )
