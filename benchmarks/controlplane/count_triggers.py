"""What the fleet-count triggers (migration 0022) cost the writers, with them and with them disabled,
alternating, on one throw-away PostgreSQL database: a bulk insert of 2,000 nodes with 8 devices each
(as a registration batch writes), single-device health changes and single-node status changes (each
its own transaction, as beats and the monitor make them) and the beat flush's ``last_heartbeat_at``
statement (which fires no count trigger). Round 1 warms up; compare the medians of the others.

    uv run python benchmarks/controlplane/count_triggers.py --rounds 4
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path
from typing import Any

from sqlalchemy import text

sys.path.insert(0, str(Path(__file__).resolve().parent))

from read_paths import insert_fleet  # noqa: E402
from throwaway import prepare  # noqa: E402

from zhisuan.store.base import make_engine, make_session_factory, transaction  # noqa: E402

TRIGGERS = (("fleet_nodes_inserted", "nodes"), ("fleet_node_updated", "nodes"), ("fleet_node_deleting", "nodes"),
            ("fleet_devices_inserted", "devices"), ("fleet_devices_deleted", "devices"),
            ("fleet_device_updated", "devices"))
FLIP_HEALTH = ("UPDATE devices SET health = CASE health WHEN 'healthy' THEN 'failed' ELSE 'healthy' END "
               "WHERE node_id = :n AND \"index\" = 0")
FLIP_STATUS = "UPDATE nodes SET status = CASE status WHEN 'ready' THEN 'unreachable' ELSE 'ready' END WHERE id = :n"


def per_transaction_ms(sessions: Any, statement: str, ids: list[int]) -> float:
    started = time.perf_counter()
    for node_id in ids:
        with transaction(sessions) as session:
            session.execute(text(statement), {"n": node_id})
    return round(1000 * (time.perf_counter() - started) / len(ids), 2)


def writes(sessions: Any) -> dict[str, float]:
    with transaction(sessions) as session:  # free the names the next batch uses (no count changes)
        session.execute(text("UPDATE nodes SET name = 'old-' || id"))
    started = time.perf_counter()
    insert_fleet(sessions, 2000)
    inserted = round(time.perf_counter() - started, 2)
    with transaction(sessions) as session:
        ids = list(session.execute(text("SELECT id FROM nodes ORDER BY id DESC LIMIT 500")).scalars())
    health, status = per_transaction_ms(sessions, FLIP_HEALTH, ids), per_transaction_ms(sessions, FLIP_STATUS, ids)
    started = time.perf_counter()
    with transaction(sessions) as session:
        session.execute(text("UPDATE nodes SET last_heartbeat_at = now() WHERE id = ANY(:ids)"), {"ids": ids})
    return {"insert_2000_nodes_s": inserted, "device_health_change_ms": health, "node_status_change_ms": status,
            "beat_flush_500_nodes_ms": round(1000 * (time.perf_counter() - started), 1)}


def set_triggers(sessions: Any, enabled: bool) -> None:
    with transaction(sessions) as session:
        for name, table in TRIGGERS:
            session.execute(text(f"ALTER TABLE {table} {'ENABLE' if enabled else 'DISABLE'} TRIGGER {name}"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=4)
    args = parser.parse_args()
    platform = prepare("postgresql", 0)
    try:
        engine = make_engine(platform.database_url)
        sessions = make_session_factory(engine)
        runs: dict[str, list[dict[str, float]]] = {"with": [], "without": []}
        load = os.getloadavg()[0]
        for _ in range(args.rounds):
            for kind in ("with", "without"):
                set_triggers(sessions, kind == "with")
                runs[kind].append(writes(sessions))
        engine.dispose()
        medians = {kind: {key: statistics.median(run[key] for run in rows[1:] or rows) for key in rows[0]}
                   for kind, rows in runs.items()}
        print(json.dumps({"load_average": [load, os.getloadavg()[0]], "median_after_round_1": medians,
                          "rounds": runs}, indent=1))
    finally:
        platform.drop()


if __name__ == "__main__":
    main()
