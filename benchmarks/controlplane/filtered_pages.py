"""Filtered node pages on PostgreSQL: the page's statement (``inventory.listing.node_page_json``) timed
directly on a session, with and without planner statistics and with and without the devices'
``(model, node_id)`` index (migration 0023), in one run.

The fleet is seeded as ``read_paths.py`` seeds it (``--nodes`` nodes of 8 h100 devices, one site, all
ready), plus a rare model — the devices of every 400th node are a100s — and every 500th node
unreachable, so that a filter can match most of the fleet or a few nodes.

Phase 0 is the database as seeded, phase 1 the same with the index dropped and created again (which
also records the tables' sizes in ``pg_class``, but no column statistics): the tables have never been
analysed (this machine's PostgreSQL runs with autovacuum off; elsewhere autovacuum analyses a
bulk-loaded table within about a minute, so the first minute after a large registration looks like
this). Phase 2 follows ``ANALYZE``. In
each phase, rounds alternate with the index and without it (dropped and created again), and each
filter's median and fastest of ``--repeat`` statements per round are reported, every round listed, with
the buffers the statement's plan touches (the work, independent of the machine's load).

    uv run --no-sync python benchmarks/controlplane/filtered_pages.py --nodes 10000 --rounds 3
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

from sqlalchemy import event, select, text

sys.path.insert(0, str(Path(__file__).resolve().parent))

from read_paths import fleet_database  # noqa: E402
from throwaway import SITE  # noqa: E402

from zhisuan.identity.access import Principal  # noqa: E402
from zhisuan.inventory.listing import node_page_json  # noqa: E402
from zhisuan.inventory.models import Site  # noqa: E402
from zhisuan.store.base import transaction  # noqa: E402

OPERATOR = Principal(user_id=1, username="operator", role="operator")
INDEX = "CREATE INDEX ix_devices_model_node_id ON devices (model, node_id)"


def filters(site_id: int) -> dict[str, dict[str, Any]]:
    return {
        "none": {},
        "site+status+model (console filters, match all)": {"site_id": site_id, "status": "ready",
                                                           "model": "h100-sxm"},
        "model=h100-sxm (match all)": {"model": "h100-sxm"},
        "status=unreachable (1 in 500)": {"status": "unreachable"},
        "model=a100 (1 node in 400)": {"model": "a100-sxm4-80gb"},
    }


def seed_variety(sessions: Any) -> None:
    with transaction(sessions) as session:
        session.execute(text("UPDATE devices SET model = 'a100-sxm4-80gb' WHERE node_id % 400 = 3"))
        session.execute(text("UPDATE nodes SET status = 'unreachable' WHERE id % 500 = 7"))


def page_ms(sessions: Any, kwargs: dict[str, Any], repeat: int) -> dict[str, float]:
    """Median and fastest wall time of the page's statement (ms), and the buffers its plan touches
    (``EXPLAIN (ANALYZE, BUFFERS)``: the work done, whatever the machine's load)."""
    args: dict[str, Any] = {"site_id": None, "status": None, "drained": None, "after_id": None, "limit": 100}
    args.update(kwargs)
    samples = []
    with sessions() as session:
        statements: list[tuple[str, Any]] = []
        capture = lambda *a: statements.append((a[2], a[3]))  # noqa: E731 - (conn, cursor, statement, params, …)
        event.listen(session.get_bind(), "before_cursor_execute", capture)
        node_page_json(session, OPERATOR, **args)  # warm-up: connection, statement cache
        event.remove(session.get_bind(), "before_cursor_execute", capture)
        for _ in range(repeat):
            started = time.perf_counter()
            node_page_json(session, OPERATOR, **args)
            samples.append(time.perf_counter() - started)
        statement, params = statements[-1]
        plan = session.connection().exec_driver_sql(
            "EXPLAIN (ANALYZE, BUFFERS, FORMAT JSON) " + statement, params).scalar_one()[0]
    return {"median_ms": round(statistics.median(samples) * 1000, 2), "min_ms": round(min(samples) * 1000, 2),
            "buffers": plan["Plan"]["Shared Hit Blocks"] + plan["Plan"]["Shared Read Blocks"]}


def phase(sessions: Any, site_id: int, rounds: int, repeat: int) -> dict[str, dict[str, list[dict[str, float]]]]:
    result: dict[str, dict[str, list[dict[str, float]]]] = {"with index": {}, "without index": {}}
    for _ in range(rounds):
        for variant in ("with index", "without index"):
            with transaction(sessions) as session:
                session.execute(text("DROP INDEX IF EXISTS ix_devices_model_node_id"))
                if variant == "with index":
                    session.execute(text(INDEX))
            for name, kwargs in filters(site_id).items():
                result[variant].setdefault(name, []).append(page_ms(sessions, kwargs, repeat))
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--nodes", type=int, default=10_000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--repeat", type=int, default=15)
    args = parser.parse_args()
    with fleet_database(args.nodes) as (engine, sessions):
        seed_variety(sessions)
        with transaction(sessions) as session:
            site_id = session.execute(select(Site.id).where(Site.name == SITE)).scalar_one()
        report: dict[str, Any] = {"nodes": args.nodes, "load_average_before": os.getloadavg()}
        report["0 as seeded (index from the migration, no DDL yet)"] = {
            name: page_ms(sessions, kwargs, args.repeat) for name, kwargs in filters(site_id).items()}
        report["1 never analysed"] = phase(sessions, site_id, args.rounds, args.repeat)
        with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as connection:
            connection.execute(text("ANALYZE nodes"))
            connection.execute(text("ANALYZE devices"))
        report["2 after ANALYZE"] = phase(sessions, site_id, args.rounds, args.repeat)
        report["load_average_after"] = os.getloadavg()
        print(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
