"""Hygon DCU: ``hy-smi`` / ``rocm-smi`` (hy-smi takes rocm-smi's options).

Two shapes are parsed:
- ``--json`` output (per-card objects with "Card Series", "Unique ID", "vram Total Memory (MiB)"…),
  which carries names and memory totals;
- the default concise table (``DCU Temp AvgPwr Perf PwrCap VRAM% DCU% Mode``), which carries only
  index, temperature, use and mode — the fallback when JSON is not available.
Health: neither shape has a fault column. A mode other than Normal (or N/A) and heat are warnings.
"""

from __future__ import annotations

import json
import re
from typing import Any

from zhisuan.agent.detection.device import (
    OK,
    DetectedDevice,
    SmiParseError,
    parse_float,
    parse_int,
    resolve_model_key,
    temperature_health,
)
from zhisuan.catalog import Catalog, default_catalog

VENDOR = "hygon"
HYGON_VENDOR_WORDS = ("haiguang", "hygon")
TEMPERATURE_KEYS = ("Temperature (Sensor junction) (C)", "Temperature (Sensor edge) (C)")
TABLE_ROW = re.compile(r"^\s*(\d+)\s+(\d+(?:\.\d+)?)C\s+\S+\s+\S+\s+\S+\s+(\d+(?:\.\d+)?)%\s+\S+\s+(\S+)?")
QUIET_MODES = {"Normal", "N/A"}


def parse_dcu_json(text: str, tool: str = "hy-smi", catalog: Catalog | None = None) -> list[DetectedDevice]:
    """Devices from ``hy-smi``/``rocm-smi`` ``--json`` output (an object of ``cardN`` objects)."""
    catalog = catalog or default_catalog()
    try:
        document = json.loads(text)
    except json.JSONDecodeError as error:
        raise SmiParseError(f"{tool} --json output is not JSON: {error}") from error
    if not isinstance(document, dict):
        raise SmiParseError(f"{tool} --json output is not an object of cards")
    cards = sorted(
        ((int(key[4:]), value) for key, value in document.items() if re.fullmatch(r"card\d+", key)),
        key=lambda item: item[0],
    )
    return [_json_device(index, card, tool, catalog) for index, card in cards if isinstance(card, dict)]


def _json_device(index: int, card: dict[str, Any], tool: str, catalog: Catalog) -> DetectedDevice:
    name = str(card.get("Card Series") or card.get("Card series") or "unknown")
    vendor_text = str(card.get("Card Vendor", "")).lower()
    vendor = VENDOR if any(word in vendor_text for word in HYGON_VENDOR_WORDS) else "amd"
    temperature_c = next((parse_float(str(card[k])) for k in TEMPERATURE_KEYS if k in card), None)
    healthy, detail = temperature_health(temperature_c)
    return DetectedDevice(
        index=index,
        uuid=str(card.get("Unique ID") or card.get("Serial Number") or f"{tool}-card{index}"),
        reported_name=name,
        model_key=resolve_model_key(catalog, name),
        memory_mib=parse_int(str(card.get("vram Total Memory (MiB)", ""))),
        memory_used_mib=parse_int(str(card.get("vram Total Used Memory (MiB)", ""))),
        temperature_c=temperature_c,
        healthy=healthy,
        health_detail=detail,
        vendor=vendor,
        tool=tool,
    )


def parse_dcu_table(text: str, tool: str = "hy-smi") -> list[DetectedDevice]:
    """Devices from the concise table. It has no name or memory total, so ``model_key`` is None."""
    if "DCU%" not in text and "GPU%" not in text:
        raise SmiParseError(f"{tool} output has no concise device table")
    devices = []
    for line in text.splitlines():
        match = TABLE_ROW.match(line)
        if not match:
            continue
        index, temperature, _vram_percent, mode = match.groups()
        healthy, detail = temperature_health(float(temperature))
        if mode and mode not in QUIET_MODES and detail == OK:
            detail = f"warning: {tool} mode {mode}"
        devices.append(
            DetectedDevice(
                index=int(index),
                uuid=f"{tool}-dcu{index}",
                reported_name="Hygon DCU",
                model_key=None,
                memory_mib=None,
                temperature_c=float(temperature),
                healthy=healthy,
                health_detail=detail,
                vendor=VENDOR,
                tool=tool,
            )
        )
    return devices
