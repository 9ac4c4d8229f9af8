"""Loading and validating node lists and pod traces in the openb CSV format.

Node list columns: ``sn, cpu_milli, memory_mib, gpu, model``. Pod trace columns: ``name, cpu_milli,
memory_mib, num_gpu, gpu_milli`` and optionally ``gpu_spec`` (allowed models joined by ``|``); other
columns are ignored; ``.csv.gz`` files are read transparently. Every problem is reported as
``TraceFormatError`` naming the file, line and field.

Pod resources follow the paper's converter: only if ``num_gpu != 0`` the pod asks for ``num_gpu``
devices of ``gpu_milli`` (values above 1000 mean a whole device) restricted to ``gpu_spec``.
"""

from __future__ import annotations

import csv
import gzip
from dataclasses import dataclass
from pathlib import Path

import numpy as np

NODE_COLUMNS = ("sn", "cpu_milli", "memory_mib", "gpu", "model")
POD_COLUMNS = ("name", "cpu_milli", "memory_mib", "num_gpu", "gpu_milli")
MILLI = 1000


class TraceFormatError(ValueError):
    """A bad input file: ``path``, 1-based ``line`` (0 = whole file) and ``field``."""

    def __init__(self, path: Path, line: int, field: str, problem: str) -> None:
        self.path, self.line, self.field = path, line, field
        where = f"{path}:{line}" if line else str(path)
        super().__init__(f"{where}: field '{field}': {problem}" if field else f"{where}: {problem}")


@dataclass(frozen=True)
class NodeTable:
    names: tuple[str, ...]
    cpu: np.ndarray
    mem: np.ndarray
    gpus: np.ndarray
    model: tuple[str, ...]

    @property
    def total_gpus(self) -> int:
        return int(self.gpus.sum())


@dataclass(frozen=True)
class PodTable:
    names: tuple[str, ...]
    cpu: np.ndarray
    mem: np.ndarray
    count: np.ndarray  # devices asked for (0 for CPU-only)
    milli: np.ndarray  # milli per device (0 for CPU-only)
    spec: tuple[str, ...]  # "|"-joined allowed models, "" = any

    def __len__(self) -> int:
        return len(self.names)

    def gpu_milli(self) -> np.ndarray:
        return self.milli * self.count


def _read_rows(path: Path, required: tuple[str, ...]) -> list[tuple[int, dict[str, str]]]:
    if not path.is_file():
        raise TraceFormatError(path, 0, "", "file not found")
    opener = gzip.open if path.suffix == ".gz" else open  # the packaged data is gzip-compressed
    with opener(path, "rt", newline="", encoding="utf-8") as handle:
        reader = csv.DictReader(handle)
        header = reader.fieldnames
        if not header:
            raise TraceFormatError(path, 1, "", "empty file (no header line)")
        missing = [c for c in required if c not in header]
        if missing:
            raise TraceFormatError(path, 1, missing[0], f"missing column(s) {', '.join(missing)}; header is {header}")
        rows = [(reader.line_num, row) for row in reader]
    if not rows:
        raise TraceFormatError(path, 2, "", "no data rows")
    return rows


def _integer(path: Path, line: int, row: dict[str, str], field: str, minimum: int = 0) -> int:
    raw = (row.get(field) or "").strip()
    try:
        value = int(raw)
    except ValueError:
        raise TraceFormatError(path, line, field, f"expected an integer, got {raw!r}") from None
    if value < minimum:
        raise TraceFormatError(path, line, field, f"must be >= {minimum}, got {value}")
    return value


def load_nodes(path: Path) -> NodeTable:
    """Read a node list; every node must have a unique name and a model when it has devices."""
    rows = _read_rows(path, NODE_COLUMNS)
    names, cpu, mem, gpus, model = [], [], [], [], []
    for line, row in rows:
        name = (row["sn"] or "").strip()
        if not name:
            raise TraceFormatError(path, line, "sn", "empty node name")
        count = _integer(path, line, row, "gpu")
        kind = (row["model"] or "").strip()
        if count and not kind:
            raise TraceFormatError(path, line, "model", "a node with devices needs a model")
        names.append(name)
        cpu.append(_integer(path, line, row, "cpu_milli"))
        mem.append(_integer(path, line, row, "memory_mib"))
        gpus.append(count)
        model.append(kind)
    if len(set(names)) != len(names):
        raise TraceFormatError(path, 0, "sn", "node names are not unique")
    return NodeTable(
        tuple(names), np.array(cpu, np.int64), np.array(mem, np.int64), np.array(gpus, np.int64), tuple(model)
    )


def _pod_gpu(path: Path, line: int, row: dict[str, str], models: set[str]) -> tuple[int, int, str]:
    count = _integer(path, line, row, "num_gpu")
    milli = _integer(path, line, row, "gpu_milli")
    if count == 0:
        return 0, 0, ""
    if milli == 0:
        raise TraceFormatError(path, line, "gpu_milli", f"must be > 0 when num_gpu = {count}")
    milli = min(milli, MILLI)
    if count > 1 and milli < MILLI:
        raise TraceFormatError(path, line, "gpu_milli", "a share below 1000 is only supported with num_gpu = 1")
    parts = [p for p in (row.get("gpu_spec") or "").split("|") if p]
    unknown = [p for p in parts if p not in models]
    if unknown:
        raise TraceFormatError(
            path,
            line,
            "gpu_spec",
            f"unknown model(s) {', '.join(unknown)}; the node list has {', '.join(sorted(models))}",
        )
    return count, milli, "|".join(parts)


def load_pods(path: Path, known_models: set[str]) -> PodTable:
    """Read a pod trace; names must be unique, requests non-negative, ``gpu_spec`` models known."""
    rows = _read_rows(path, POD_COLUMNS)
    names: list[str] = []
    cpu, mem, count, milli, spec = [], [], [], [], []
    seen: set[str] = set()
    for line, row in rows:
        name = (row["name"] or "").strip()
        if not name or name in seen:
            raise TraceFormatError(path, line, "name", f"empty or repeated pod name {name!r}")
        seen.add(name)
        names.append(name)
        cpu.append(_integer(path, line, row, "cpu_milli"))
        mem.append(_integer(path, line, row, "memory_mib"))
        k, m, s = _pod_gpu(path, line, row, known_models)
        count.append(k)
        milli.append(m)
        spec.append(s)
    return PodTable(
        tuple(names),
        np.array(cpu, np.int64),
        np.array(mem, np.int64),
        np.array(count, np.int64),
        np.array(milli, np.int64),
        tuple(spec),
    )


def node_models(nodes: NodeTable) -> set[str]:
    return {m for m in nodes.model if m}
