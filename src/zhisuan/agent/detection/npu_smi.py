"""Huawei Ascend: ``npu-smi info`` (the device table) and ``npu-smi info -m`` (the chip mapping).

``npu-smi info`` lists each chip as two table rows:

    | 0     910B3               | OK            | 93.6        41                0    / 0             |
    | 0                         | 0000:C1:00.0  | 0           0    / 0          3161 / 65536         |

row 1: NPU id, chip name, health, power, temperature, hugepages; row 2: chip id (and on some
versions a device or physical id), bus id, AI-core use, memory used/total and HBM used/total.
``npu-smi info -m`` maps (NPU id, chip id) to the logical device id and a full chip name, which
fills in names that ``info`` masks or shortens.

Health is npu-smi's own column: OK is healthy; Warning (a minor alarm, the chip keeps working) is
healthy with a warning; Alarm, Critical or anything else is a fault.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from zhisuan.agent.detection.device import (
    OK,
    DetectedDevice,
    SmiParseError,
    parse_float,
    parse_int,
    resolve_model_key,
    table_cells,
)
from zhisuan.catalog import Catalog, default_catalog

TOOL = "npu-smi"
VENDOR = "huawei"
USED_TOTAL = re.compile(r"(\d+)\s*/\s*(\d+)")
HEALTHY_STATES = {"OK": OK, "Warning": "warning: npu-smi health Warning"}
# npu-smi (25.x) names Atlas A3 chips just "Ascend910" and lists two chips (dies) per NPU: that pair
# is an Ascend 910C package. A single-chip "Ascend910" is left unresolved rather than guessed.
A3_GENERIC_NAME = "Ascend910"
A3_MODEL_KEY = "ascend-910c"


@dataclass(frozen=True)
class _ChipRows:
    npu_id: int
    name: str
    health: str
    temperature_c: float | None
    chip_ids: list[int]
    bus_id: str
    memory: tuple[int, int] | None


@dataclass(frozen=True)
class ChipMapping:
    """One row of ``npu-smi info -m``."""

    npu_id: int
    chip_id: int
    logic_id: int | None
    chip_name: str


def parse_npu_smi_mapping(text: str) -> dict[tuple[int, int], ChipMapping]:
    """(NPU id, chip id) → mapping, from ``npu-smi info -m``; MCU rows (no logical id) are skipped.

    Columns are found by the header, because newer npu-smi versions add columns (Slot ID, Chip Phy-ID).
    """
    lines = [line for line in text.splitlines() if line.strip()]
    header_at = next((i for i, line in enumerate(lines) if "Chip Logic ID" in line), None)
    if header_at is None:
        raise SmiParseError("npu-smi info -m output has no 'Chip Logic ID' header")
    columns = re.split(r"\s{2,}", lines[header_at].strip())
    mapping: dict[tuple[int, int], ChipMapping] = {}
    for line in lines[header_at + 1 :]:
        values = line.split(maxsplit=len(columns) - 1)
        if len(values) != len(columns) or not values[0].isdigit():
            continue
        row = dict(zip(columns, values, strict=True))
        logic_id = parse_int(row.get("Chip Logic ID", "-"))
        if logic_id is None or row.get("Chip Name", "").strip().lower() == "mcu":
            continue
        key = (int(row["NPU ID"]), int(row["Chip ID"]))
        mapping[key] = ChipMapping(key[0], key[1], logic_id, row.get("Chip Name", "").strip())
    return mapping


def parse_npu_smi_info(
    text: str, mapping_text: str | None = None, catalog: Catalog | None = None
) -> list[DetectedDevice]:
    """Devices from ``npu-smi info`` (and, when given, ``npu-smi info -m`` for names and logical ids)."""
    catalog = catalog or default_catalog()
    mapping = parse_npu_smi_mapping(mapping_text) if mapping_text else {}
    chips = _chip_rows(text)
    if not chips and "NPU" not in text:
        raise SmiParseError("npu-smi info output has no device table")
    chips_per_npu: dict[int, int] = {}
    for chip in chips:
        chips_per_npu[chip.npu_id] = chips_per_npu.get(chip.npu_id, 0) + 1
    return [_device(chip, mapping, chips_per_npu[chip.npu_id], catalog) for chip in chips]


def _chip_rows(text: str) -> list[_ChipRows]:
    """Pair up the two table rows of each chip; stop at the process table."""
    chips: list[_ChipRows] = []
    first: list[str] | None = None
    for line in text.splitlines():
        if "Process id" in line or "Process name" in line:
            break
        cells = table_cells(line)
        if not cells or len(cells) < 3 or not cells[0][:1].isdigit():
            continue
        if first is None:
            first = cells
            continue
        chips.append(_combine(first, cells))
        first = None
    return chips


def _combine(first: list[str], second: list[str]) -> _ChipRows:
    npu_id, _, name = first[0].partition(" ")
    readings = first[2].split()
    pairs = [(int(used), int(total)) for used, total in USED_TOTAL.findall(second[2])]
    # With an HBM column the second pair is HBM; chips without HBM (310P) only have memory usage.
    memory = pairs[1] if len(pairs) > 1 and pairs[1][1] > 0 else (pairs[0] if pairs else None)
    return _ChipRows(
        npu_id=int(npu_id),
        name=name.strip(),
        health=first[1],
        temperature_c=parse_float(readings[1]) if len(readings) > 1 else None,
        chip_ids=[int(token) for token in second[0].split() if token.isdigit()],
        bus_id=second[1],
        memory=memory,
    )


def _device(
    chip: _ChipRows, mapping: dict[tuple[int, int], ChipMapping], chips_on_npu: int, catalog: Catalog
) -> DetectedDevice:
    chip_id = chip.chip_ids[0] if chip.chip_ids else 0
    mapped = mapping.get((chip.npu_id, chip_id))
    name = chip.name if chip.name and chip.name.lower() != "xxx" else ""
    if mapped and (not name or len(mapped.chip_name) > len(name)):
        name = mapped.chip_name  # "-m" gives "Ascend 910B3" where "info" says "910B3" or masks it
    model_key = resolve_model_key(catalog, name) if name else None
    if model_key is None and normalised_a3(name) and chips_on_npu >= 2:
        model_key = A3_MODEL_KEY
    healthy = chip.health in HEALTHY_STATES
    detail = HEALTHY_STATES.get(chip.health, f"fault: npu-smi health {chip.health}")
    return DetectedDevice(
        index=_logical_index(chip, mapped),
        uuid=chip.bus_id,
        reported_name=name or "unknown",
        model_key=model_key,
        memory_mib=chip.memory[1] if chip.memory else None,
        memory_used_mib=chip.memory[0] if chip.memory else None,
        temperature_c=chip.temperature_c,
        healthy=healthy,
        health_detail=detail,
        vendor=VENDOR,
        tool=TOOL,
    )


def _logical_index(chip: _ChipRows, mapped: ChipMapping | None) -> int:
    """The id ASCEND_RT_VISIBLE_DEVICES uses: the mapping's logical id, else the device/phy id of
    row 2, else (one chip per NPU) the NPU id."""
    if mapped and mapped.logic_id is not None:
        return mapped.logic_id
    if len(chip.chip_ids) > 1:
        return chip.chip_ids[1]
    return chip.npu_id


def normalised_a3(name: str) -> bool:
    return name.replace(" ", "").lower() == A3_GENERIC_NAME.lower()
