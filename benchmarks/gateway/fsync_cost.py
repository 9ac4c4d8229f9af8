"""What one spool commit costs on this disk: the ways to make a usage line durable, measured in
turn (one of each per round, so a noisy neighbour's flushes hit every way alike).

    uv run python benchmarks/gateway/fsync_cost.py [--dir /var/tmp] [--rounds 1500]

Ways: append + fdatasync (a file growing: the new size must go through the journal); overwrite of a
pre-allocated, pre-zeroed, fsync'd file + fdatasync (no metadata); the same with O_DSYNC pwrite;
overwrite of fallocate'd but unwritten blocks + fdatasync (extent conversion). Then, from an
event loop: pre-zeroed write + fdatasync inline on the loop thread vs in a worker thread (the spool's
group commit), and the bare thread hop. Prints p50/p90/p99 in µs per way.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

LINE = (b'{"event_id":"gw-0123456789ab-1f","key_id":"k","tenant_id":"t","model":"m","replica":"r",'
        b'"prompt_tokens":7,"completion_tokens":5,"stream":true,"status":"ok","started_at":1.0,"ended_at":2.0}\n')
SIZE = 64 << 20


def open_file(path: Path, flags: int = 0, *, allocate: bool = False, zero: bool = False) -> int:
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o600)
    if allocate:
        os.posix_fallocate(fd, 0, SIZE)
    if zero:
        chunk = bytes(1 << 20)
        for off in range(0, SIZE, len(chunk)):
            os.pwrite(fd, chunk, off)
    os.fsync(fd)
    if flags:
        os.close(fd)
        fd = os.open(path, os.O_RDWR | flags)
    return fd


def report(times: dict[str, list[float]]) -> None:
    for name, xs in times.items():
        xs.sort()
        n = len(xs)
        print(f"{name:44s} p50 {xs[n // 2] * 1e6:7.0f} µs   p90 {xs[int(n * 0.9)] * 1e6:7.0f}   "
              f"p99 {xs[int(n * 0.99)] * 1e6:7.0f}")


def raw(d: Path, rounds: int) -> None:
    fa = os.open(d / "append", os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_APPEND, 0o600)
    fz = open_file(d / "zeroed", allocate=True, zero=True)
    fs = open_file(d / "zeroed-dsync", os.O_DSYNC, allocate=True, zero=True)
    fu = open_file(d / "unwritten", allocate=True)
    ways: dict[str, Callable[[int], object]] = {
        "append + fdatasync": lambda i: (os.write(fa, LINE), os.fdatasync(fa)),
        "pre-zeroed overwrite + fdatasync": lambda i: (os.pwrite(fz, LINE, i * len(LINE)), os.fdatasync(fz)),
        "pre-zeroed overwrite, O_DSYNC pwrite": lambda i: os.pwrite(fs, LINE, i * len(LINE)),
        "fallocate'd unwritten + fdatasync": lambda i: (os.pwrite(fu, LINE, i * len(LINE)), os.fdatasync(fu)),
    }
    times: dict[str, list[float]] = {k: [] for k in ways}
    for i in range(rounds):
        for name, way in ways.items():
            t = time.perf_counter()
            way(i)
            times[name].append(time.perf_counter() - t)
    report(times)


async def from_loop(d: Path, rounds: int) -> None:
    loop = asyncio.get_running_loop()
    fi, fw = open_file(d / "inline", allocate=True, zero=True), open_file(d / "worker", allocate=True, zero=True)

    def sync_at(fd: int, off: int) -> None:
        os.pwrite(fd, LINE, off)
        os.fdatasync(fd)

    times: dict[str, list[float]] = {"loop: pre-zeroed write+fdatasync inline": [],
                                     "loop: pre-zeroed write, fdatasync in thread": [], "loop: bare thread hop": []}
    for i in range(rounds):
        t = time.perf_counter()
        sync_at(fi, i * len(LINE))
        t1 = time.perf_counter()
        os.pwrite(fw, LINE, i * len(LINE))
        await loop.run_in_executor(None, os.fdatasync, fw)
        t2 = time.perf_counter()
        await loop.run_in_executor(None, int)
        t3 = time.perf_counter()
        for name, secs in zip(times, (t1 - t, t2 - t1, t3 - t2), strict=True):
            times[name].append(secs)
        await asyncio.sleep(0)
    report(times)


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--dir", type=Path, default=Path(tempfile.gettempdir()))
    p.add_argument("--rounds", type=int, default=1500)
    a = p.parse_args()
    with tempfile.TemporaryDirectory(dir=a.dir, prefix="zs-fsync-") as d:
        raw(Path(d), a.rounds)
        try:
            import uvloop

            uvloop.install()
        except ImportError:
            pass
        asyncio.run(from_loop(Path(d), a.rounds))


if __name__ == "__main__":
    main()
