"""The on-disk records of one worker, which let any runner instance adopt it.

``<root>/state/<key>/`` (0700, agent only) holds ``launch.json`` (written by the runner: wrapper pid
and its kernel start time, start time, limits, notes), ``spec.json`` (the wrapper's input: argv, env,
user, limits), ``exit.json`` (written by the wrapper when the command ends), ``cancel.json`` (a stop
was requested) and ``final.json`` (the ended status, fixed once observed). A pid is trusted only
while ``/proc/<pid>/stat`` shows the same start time: pids are reused.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

LAUNCH = "launch.json"
SPEC = "spec.json"
EXIT = "exit.json"
CANCEL = "cancel.json"
FINAL = "final.json"


def write_record(path: Path, record: dict[str, Any]) -> None:
    """Atomic replace (write a temporary file, rename): readers see the old or the new record, never half."""
    temporary = path.with_name(f".{path.name}.tmp")
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        json.dump(record, handle)
    os.replace(temporary, path)


def read_record(path: Path) -> dict[str, Any] | None:
    try:
        with path.open() as handle:
            record: dict[str, Any] = json.load(handle)
    except (FileNotFoundError, NotADirectoryError):
        return None
    except json.JSONDecodeError:  # a torn write cannot happen (rename), but a hand-edited file can
        return None
    return record


def process_start_ticks(pid: int) -> int | None:
    """Field 22 of ``/proc/<pid>/stat`` (start time in clock ticks since boot); None if gone or a zombie."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as handle:
            stat = handle.read()
    except (FileNotFoundError, ProcessLookupError):
        return None
    fields = stat[stat.rindex(b")") + 2 :].split()  # the command name may hold spaces and parens
    if fields[0] in (b"Z", b"X"):
        return None
    return int(fields[19])


def is_same_process(pid: int | None, start_ticks: int | None) -> bool:
    return pid is not None and start_ticks is not None and process_start_ticks(pid) == start_ticks
