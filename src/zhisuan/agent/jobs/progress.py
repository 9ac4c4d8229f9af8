"""The job's progress file (``ZHISUAN_PROGRESS_FILE``): the worker appends one JSON object per line,

    {"step": int, "tokens": int, "checkpoint_step": int | null, "checkpoint_s": float | null, "at": float}

and the agent reads the newest complete line with each job sync. The file is in the tenant's own
directory and written by the tenant, so it is read defensively: never through a symlink, only a regular
file, only its last ``TAIL_BYTES``, and only the five fields above with their types (anything else is
dropped, so nothing but numbers leaves the machine).
"""

from __future__ import annotations

import json
import math
import os
import stat
from pathlib import Path
from typing import Any

TAIL_BYTES = 4096


def progress_path(tenant_dir: Path, key: str) -> Path:
    return tenant_dir / f".progress-{key}.jsonl"


def read_newest(path: Path) -> dict[str, Any] | None:
    """The newest complete, valid line as a clean dict, or None."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    except OSError:
        return None
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            return None
        start = max(0, info.st_size - TAIL_BYTES)
        data = os.pread(fd, TAIL_BYTES, start)
    finally:
        os.close(fd)
    for line in reversed(data.split(b"\n")[:-1]):  # the part after the last newline may be half-written
        parsed = parse_line(line)
        if parsed is not None:
            return parsed
    return None


def parse_line(line: bytes) -> dict[str, Any] | None:
    try:
        raw = json.loads(line)
    except ValueError:
        return None
    if not isinstance(raw, dict):
        return None
    step, tokens, at = raw.get("step"), raw.get("tokens", 0), raw.get("at")
    ckpt, ckpt_s = raw.get("checkpoint_step"), raw.get("checkpoint_s")
    if not (_count(step) and _count(tokens) and _number(at) and (ckpt is None or _count(ckpt))
            and (ckpt_s is None or _number(ckpt_s))):
        return None
    return {"step": step, "tokens": tokens, "checkpoint_step": ckpt, "checkpoint_s": ckpt_s, "at": float(at)}  # type: ignore[arg-type]


def _count(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and 0 <= value < 2**62


def _number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value) and value >= 0
