"""Progress reports per the platform's protocol: one JSON object per line, appended to
``ZHISUAN_PROGRESS_FILE``::

    {"step": int, "tokens": int, "checkpoint_step": int | null, "checkpoint_s": float | null, "at": float}

``checkpoint_step`` is the last COMPLETE checkpoint's step, ``checkpoint_s`` the seconds its write blocked
training, ``at`` epoch seconds. The platform reads the newest line; silence for the job's hang timeout
means the job is hung.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path


def progress_line(step: int, tokens: int, checkpoint_step: int | None, checkpoint_s: float | None, at: float) -> str:
    record = {"step": step, "tokens": tokens, "checkpoint_step": checkpoint_step, "checkpoint_s": checkpoint_s,
              "at": at}
    return json.dumps(record, separators=(",", ":")) + "\n"


class ProgressFile:
    """Appends one line per report; a single ``write`` on an ``O_APPEND`` descriptor, so a reader (or a
    second rank appending to the same file) never sees half a line interleaved with another."""

    def __init__(self, path: Path | None) -> None:
        self._fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644) if path else None

    def report(self, step: int, tokens: int, checkpoint_step: int | None, checkpoint_s: float | None) -> None:
        if self._fd is not None:
            os.write(self._fd, progress_line(step, tokens, checkpoint_step, checkpoint_s, time.time()).encode())

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
