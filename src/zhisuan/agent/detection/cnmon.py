"""Cambricon: the ``cnmon`` table (CNMON 4.x and 5.x layouts).

Each card is two rows:

    | 0     /   MLU370-X8    v1.1.6 |         0000:13:00.0 | 0%                  0 |
    |  0%   28C        107 W/ 250 W |     0 MiB/ 20638 MiB | FULL          Default |

row 1: card, VF, name, firmware | bus id (5.x) or "Inited Driver" (4.x) | utilisation, ECC errors;
row 2: fan, temperature, power | memory used/total | mode.
Health: cnmon has no health column; a non-zero ECC error count is a warning, heat is a warning.
"""

from __future__ import annotations

import re

from zhisuan.agent.detection.device import (
    BUS_ID_PATTERN,
    DetectedDevice,
    SmiParseError,
    parse_float,
    parse_int,
    resolve_model_key,
    table_cells,
    temperature_health,
)
from zhisuan.catalog import Catalog, default_catalog

TOOL = "cnmon"
VENDOR = "cambricon"
MEMORY = re.compile(r"(\d+)\s*MiB\s*/\s*(\d+)\s*MiB")
TEMPERATURE = re.compile(r"(\d+(?:\.\d+)?)C\b")


def parse_cnmon(text: str, catalog: Catalog | None = None) -> list[DetectedDevice]:
    """Devices from the plain ``cnmon`` output; the process table is ignored."""
    catalog = catalog or default_catalog()
    devices: list[DetectedDevice] = []
    first: list[str] | None = None
    for line in text.splitlines():
        if "Processes:" in line:
            break
        cells = table_cells(line)
        if not cells or len(cells) != 3:
            continue
        if first is None and re.match(r"^\d+\s+\S+\s+\S+", cells[0]) and "%" not in cells[0]:
            first = cells
        elif first is not None and "%" in cells[0]:
            devices.append(_device(first, cells, catalog))
            first = None
    if not devices and "CNMON" not in text:
        raise SmiParseError("cnmon output has no device table")
    return devices


def _device(first: list[str], second: list[str], catalog: Catalog) -> DetectedDevice:
    index, _vf, name, *_firmware = first[0].split()
    bus_id = first[1] if BUS_ID_PATTERN.match(first[1]) else None
    ecc_errors = parse_int(first[2].split()[-1]) if first[2].split() else None
    memory = MEMORY.search(second[1])
    temperature = TEMPERATURE.search(second[0])
    temperature_c = parse_float(temperature.group(1)) if temperature else None
    healthy, detail = temperature_health(temperature_c)
    if ecc_errors:
        detail = f"warning: {ecc_errors} ECC errors"
    return DetectedDevice(
        index=int(index),
        uuid=bus_id or f"cnmon-card-{index}",
        reported_name=name,
        model_key=resolve_model_key(catalog, name),
        memory_mib=int(memory.group(2)) if memory else None,
        memory_used_mib=int(memory.group(1)) if memory else None,
        temperature_c=temperature_c,
        healthy=healthy,
        health_detail=detail,
        vendor=VENDOR,
        tool=TOOL,
    )
