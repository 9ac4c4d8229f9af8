"""A backlog of count rows (a busy fleet nobody read for a day) and the fold loop that clears it, on
PostgreSQL: what a read pays with the backlog, how long the loop's passes take (and their longest
transaction), a read after them, and what a writer's transaction costs meanwhile.

A throw-away database with ``--nodes`` nodes of 8 devices (``read_paths.insert_fleet``) gets
``--rows`` extra signed rows in ``fleet_device_counts`` (pairs of −1/+1 per key, as device-health flips
append them: no count changes). Then, with a writer thread flipping one device's health per
transaction (``--writes-per-s``) throughout:

1. ``device_counts`` (the fleet summary's read) timed 3 times over the backlog — each of those reads
   also folds one chunk of 10,000 rows, as a reader does;
2. ``fold_pass`` until the backlog is gone: each pass's wall time, its chunks, its longest chunk
   transaction (each chunk timed by wrapping ``fold``);
3. ``device_counts`` timed again, 3 times;

and the writer's transaction latency (median, p99, max) while the passes run against idle (no pass).

    uv run --no-sync python benchmarks/controlplane/count_backlog.py --nodes 1000 --rows 1000000
"""

from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import sys
import threading
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import func, select, text

sys.path.insert(0, str(Path(__file__).resolve().parent))

from read_paths import fleet_database  # noqa: E402

from zhisuan.identity.access import Principal  # noqa: E402
from zhisuan.inventory import fleet_counts  # noqa: E402
from zhisuan.inventory.models import Node  # noqa: E402
from zhisuan.loops import count_fold  # noqa: E402
from zhisuan.store.base import transaction  # noqa: E402

OPERATOR = Principal(user_id=1, username="operator", role="operator")


class Writer(threading.Thread):
    """One device's health flipped per transaction, ``per_s`` a second; each latency kept with its phase."""

    def __init__(self, sessions: Any, per_s: int) -> None:
        super().__init__(daemon=True, name="writer")
        self.sessions, self.per_s = sessions, per_s
        self.stop, self.phase = threading.Event(), "idle"
        self.latencies: dict[str, list[float]] = {}

    def run(self) -> None:
        with transaction(self.sessions) as session:
            first, last = session.execute(select(func.min(Node.id), func.max(Node.id))).one()
        n = 0
        while not self.stop.is_set():
            started = time.perf_counter()
            with transaction(self.sessions) as session:
                session.execute(text("UPDATE devices SET health = CASE health WHEN 'healthy' THEN 'degraded' "
                                     "ELSE 'healthy' END WHERE node_id = :n AND \"index\" = 0"),
                                {"n": first + n % (last - first + 1)})
            self.latencies.setdefault(self.phase, []).append(time.perf_counter() - started)
            n += 1
            self.stop.wait(max(0.0, 1 / self.per_s - (time.perf_counter() - started)))


def summary(samples: list[float]) -> dict[str, float]:
    ordered = sorted(samples)
    p99 = ordered[max(0, math.ceil(0.99 * len(ordered)) - 1)]
    return {"count": len(samples), "median_ms": round(statistics.median(samples) * 1000, 2),
            "p99_ms": round(p99 * 1000, 2), "max_ms": round(max(samples) * 1000, 2)}


def timed_reads(sessions: Any, count: int = 3) -> list[float]:
    times = []
    for _ in range(count):
        started = time.perf_counter()
        with transaction(sessions) as session:
            fleet_counts.device_counts(session, OPERATOR)
        times.append(round((time.perf_counter() - started) * 1000, 1))
    return times


def append_backlog(sessions: Any, rows: int) -> None:
    """``rows`` rows as health flips append them: −1 on (…, healthy), +1 on (…, degraded), and back."""
    with transaction(sessions) as session:
        session.execute(text(
            "INSERT INTO fleet_device_counts (site_id, model, health, available, devices) "
            "SELECT k.site_id, k.model, CASE WHEN g % 4 IN (0, 3) THEN 'healthy' ELSE 'degraded' END, "
            "k.available, CASE WHEN g % 4 IN (0, 2) THEN -1 ELSE 1 END "
            "FROM generate_series(0, :n - 1) g, "
            "(SELECT site_id, model, available FROM fleet_device_counts LIMIT 1) k"), {"n": rows - rows % 4})


def clear(sessions: Any) -> list[dict[str, Any]]:
    """Fold passes until a pass folds nothing; each pass's wall time, chunks and longest chunk."""
    chunk_times: list[float] = []
    original = fleet_counts.fold

    def timed_fold(*args: Any, **kwargs: Any) -> int | None:
        started = time.perf_counter()
        try:
            return original(*args, **kwargs)
        finally:
            chunk_times.append(time.perf_counter() - started)

    count_fold.fold = timed_fold  # type: ignore[assignment]
    passes = []
    try:
        while True:
            chunk_times.clear()
            started = time.perf_counter()
            folded = count_fold.fold_pass(sessions, datetime.now(UTC), "bench")
            wall = time.perf_counter() - started
            assert folded is not None
            if not any(folded.values()):
                break
            passes.append({"wall_s": round(wall, 2), "rows_folded": folded["fleet_device_counts"],
                           "chunks": len(chunk_times), "longest_chunk_ms": round(max(chunk_times) * 1000, 1)})
    finally:
        count_fold.fold = original  # type: ignore[assignment]
    return passes


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--nodes", type=int, default=1_000)
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--writes-per-s", type=int, default=20)
    args = parser.parse_args()
    with fleet_database(args.nodes) as (engine, sessions):
        with transaction(sessions) as session:
            before = fleet_counts.device_counts(session, OPERATOR)
        append_backlog(sessions, args.rows)
        report: dict[str, Any] = {"nodes": args.nodes, "backlog_rows": args.rows,
                                  "load_average_before": os.getloadavg()}
        writer = Writer(sessions, args.writes_per_s)
        writer.start()
        time.sleep(5)  # the writer's idle reference
        writer.phase = "reads over the backlog"
        report["reads_over_backlog_ms"] = timed_reads(sessions)
        writer.phase = "fold passes"
        report["fold_passes"] = clear(sessions)
        writer.phase = "idle after"
        report["reads_after_ms"] = timed_reads(sessions)
        time.sleep(5)
        writer.stop.set()
        writer.join()
        report["writer"] = {phase: summary(samples) for phase, samples in writer.latencies.items()}
        with transaction(sessions) as session:
            report["rows_after"] = session.execute(
                select(func.count()).select_from(fleet_counts.DEVICE_COUNTS)).scalar_one()
            after = fleet_counts.device_counts(session, OPERATOR)
        flips = writer.latencies
        report["counts_unchanged_but_for_the_writer"] = (
            sum(c for *_, c in after) == sum(c for *_, c in before) and sum(map(len, flips.values())) > 0)
        report["load_average_after"] = os.getloadavg()
        print(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
