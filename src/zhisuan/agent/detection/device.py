"""DetectedDevice: one accelerator as a vendor tool reported it, resolved against the catalog."""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass
from typing import Any

from zhisuan.catalog import Catalog

OK = "ok"
# A single alert line for every vendor: above it the device still works, but the operator should look.
# Vendor slowdown/shutdown thresholds are higher (and differ per part), so this only warns.
HIGH_TEMPERATURE_C = 85.0
UNKNOWN_INDEX = -1  # the tool listed the device but could not give it an index (e.g. a lost GPU)

BUS_ID_PATTERN = re.compile(r"^(?:[0-9a-fA-F]{4,8}:)?[0-9a-fA-F]{2}:[0-9a-fA-F]{2}\.[0-7]$")


class SmiParseError(ValueError):
    """The tool's output does not have the documented shape (a new tool version, or garbage)."""


@dataclass(frozen=True)
class DetectedDevice:
    """One device as its vendor tool reported it.

    ``uuid`` is the tool's UUID when it has one, else the PCI bus id or serial number — whatever
    identifies the device stably across reboots. ``model_key`` is the catalog key the reported name
    resolves to (``None`` when the catalog does not know the name). ``healthy`` is False only when the
    tool itself reports a fault; warnings (hot, ECC counts, vendor "Warning") keep it True and say so
    in ``health_detail``.
    """

    index: int
    uuid: str
    reported_name: str
    model_key: str | None
    memory_mib: int | None
    healthy: bool
    health_detail: str
    vendor: str
    tool: str
    memory_used_mib: int | None = None
    temperature_c: float | None = None

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict (used by golden files and the agent's report)."""
        return asdict(self)


def resolve_model_key(catalog: Catalog, reported_name: str) -> str | None:
    """The catalog key for a tool-reported name, or None when the catalog does not know it."""
    model = catalog.resolve(reported_name)
    return model.key if model else None


def temperature_health(temperature_c: float | None) -> tuple[bool, str]:
    """(healthy, detail) from temperature alone: hot is a warning, never a fault."""
    if temperature_c is not None and temperature_c >= HIGH_TEMPERATURE_C:
        return True, f"warning: temperature {temperature_c:g} C >= {HIGH_TEMPERATURE_C:g} C"
    return True, OK


def table_cells(line: str) -> list[str] | None:
    """The cells of a ``| a | b | c |`` table row, stripped; None for rules and other lines."""
    stripped = line.strip()
    if not (stripped.startswith("|") and stripped.endswith("|")) or set(stripped) <= set("|=-+ "):
        return None
    return [cell.strip() for cell in stripped[1:-1].split("|")]


def parse_int(text: str) -> int | None:
    """An integer, or None for the tools' placeholders (N/A, -, [Not Supported])."""
    try:
        return int(text.strip())
    except ValueError:
        return None


def parse_float(text: str) -> float | None:
    """A number with an optional unit suffix (``42.0C``, ``69.43``), or None for placeholders."""
    match = re.match(r"^\s*(-?\d+(?:\.\d+)?)", text)
    return float(match.group(1)) if match else None
