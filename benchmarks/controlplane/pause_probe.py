"""Where a server's latency spikes come from, without py-spy: pauses logged from inside the process.

``beat_steady.py --probe`` starts the server with this directory's ``probe_site/sitecustomize.py``
on ``PYTHONPATH``, which calls ``install`` in ``zhisuan up`` processes (each worker of ``--workers N``
writes its own log). Logged, one JSON line each, wall-clock times (``time.time``, comparable across
processes):

- ``gc``: every collection (generation, objects collected, pause in ms) — ``gc.callbacks``;
- ``pass``: every background pass (``api.app.every``: the monitor, the beat flush, metering,
  utilisation, ...) with its wall time and the CPU its thread used (``time.thread_time``);
- ``stall``: a sampling thread sleeping ``SAMPLE_S`` that woke up more than ``STALL_MS`` late
  (another thread held the GIL, or the process had no core), with the stack the event loop's thread
  was in when the sampler got the GIL back (what ran during the stall, often).

``summarise`` folds the logs into 5-s windows aligned with the generator's.
"""

from __future__ import annotations

import gc
import json
import os
import sys
import threading
import time
import traceback
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path
from typing import Any

SAMPLE_S = 0.002
STALL_MS = 20.0


class Log:
    """One file per process: a worker forked after ``install`` opens its own on its first line."""

    def __init__(self, directory: Path, prefix: str = "probe") -> None:
        self.directory, self.prefix, self.pid = directory, prefix, -1
        self.lock = threading.Lock()

    def write(self, **record: Any) -> None:
        line = json.dumps(record)
        with self.lock:
            if self.pid != os.getpid():
                self.pid = os.getpid()
                self.file = (self.directory / f"{self.prefix}-{self.pid}.jsonl").open("a", buffering=1)
            self.file.write(line + "\n")


def watch_gc(log: Log) -> None:
    started: dict[int, float] = {}

    def callback(phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            started[info["generation"]] = time.perf_counter()
            return
        began = started.pop(info["generation"], None)
        if began is not None:
            pause = (time.perf_counter() - began) * 1000
            if pause >= 1.0 or info["generation"] == 2:
                log.write(kind="gc", at=time.time(), gen=info["generation"], ms=round(pause, 2),
                          collected=info["collected"])

    gc.callbacks.append(callback)


def watch_passes(log: Log) -> None:
    """Wrap ``zhisuan.api.app.every`` so each pass of each background loop is timed."""
    from zhisuan.api import app as api_app

    original = api_app.every

    def every(seconds: float, work: Callable[[], object], name: str, wake: Any = None) -> Any:
        def timed() -> object:
            wall, cpu = time.time(), time.thread_time()
            try:
                return work()
            finally:
                log.write(kind="pass", name=name, at=wall, ms=round((time.time() - wall) * 1000, 2),
                          cpu_ms=round((time.thread_time() - cpu) * 1000, 2))
        return original(seconds, timed, name, wake)

    api_app.every = every  # type: ignore[assignment]


def watch_stalls(log: Log, main: threading.Thread) -> None:
    def sample() -> None:
        while True:
            before = time.perf_counter()
            time.sleep(SAMPLE_S)
            late = (time.perf_counter() - before - SAMPLE_S) * 1000
            if late > STALL_MS:
                frame = sys._current_frames().get(main.ident or 0)
                stack = [f"{Path(f.filename).name}:{f.lineno}:{f.name}"
                         for f in traceback.extract_stack(frame)[-6:]] if frame else []
                log.write(kind="stall", at=time.time(), ms=round(late, 1), main=stack)

    def start() -> None:
        threading.Thread(target=sample, name="pause-probe", daemon=True).start()

    start()
    os.register_at_fork(after_in_child=start)  # ``--workers N`` forks after this ran


def install(directory: str) -> None:
    log = Log(Path(directory))
    watch_gc(log)
    watch_passes(log)
    watch_stalls(log, threading.main_thread())


def summarise(directory: Path, start_wall: float, duration: float, prefix: str = "probe") -> dict[str, Any]:
    """Per 5-s window: GC pauses (count ≥ 1 ms, the longest, full collections), the background
    passes that began in it (longest wall and CPU per loop), the longest stall."""
    windows: dict[int, dict[str, Any]] = defaultdict(lambda: {"gc_max_ms": 0.0, "gc2": [], "passes": {},
                                                              "stall_max_ms": 0.0, "stall_at": None})
    for path in sorted(directory.glob(f"{prefix}-*.jsonl")):
        for line in path.read_text().splitlines():
            record = json.loads(line)
            offset = record["at"] - start_wall
            if not 0 <= offset < duration:
                continue
            window = windows[int(offset // 5) * 5]
            if record["kind"] == "gc":
                window["gc_max_ms"] = max(window["gc_max_ms"], record["ms"])
                if record["gen"] == 2:
                    window["gc2"].append(record["ms"])
            elif record["kind"] == "pass":
                seen = window["passes"].get(record["name"], [0.0, 0.0])
                window["passes"][record["name"]] = [max(seen[0], record["ms"]), max(seen[1], record["cpu_ms"])]
            elif record["ms"] > window["stall_max_ms"]:
                window["stall_max_ms"], window["stall_at"] = record["ms"], record["main"][-2:]
    return {f"{t}-{t + 5}s": windows[t] for t in sorted(windows)}
