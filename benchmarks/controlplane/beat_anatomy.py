"""Where one heartbeat's time goes, measured in-process on a throw-away database.

For ``--beats`` heartbeats of one registered node (8 devices) through the full ASGI app (Starlette's
TestClient: every middleware, dependency and thread hand-off of a real request, without sockets):

- SQL statements per beat (SQLAlchemy ``before_cursor_execute``) and pool check-outs per beat (each
  check-out on PostgreSQL also runs the pre-ping);
- thread hand-offs per beat (calls of ``anyio.to_thread.run_sync``: sync endpoints and dependencies);
- median time of the whole request, of the key check alone (``KeyVerifier.authenticate``, cached),
  and of the heartbeat's database work alone (``inventory.service.heartbeat`` in its transaction);
  the rest is HTTP, middleware, validation, dependencies and hand-offs;
- garbage-collector pauses seen during the run (``gc.callbacks``), by generation.

By default the app has the beat buffer a serving process has (``inventory.beats``): a beat that changes
nothing is one read and a buffered time; the buffer is flushed once a second of the run, as the
flusher would, and the flushes' statements are counted with the beats'. ``--write-through`` measures
every beat on the full path (the behaviour before the buffer, and of a process without it).

    uv run python benchmarks/controlplane/beat_anatomy.py --beats 2000
    uv run python benchmarks/controlplane/beat_anatomy.py --backend sqlite --beats 2000
    uv run python benchmarks/controlplane/beat_anatomy.py --write-through --beats 2000
"""

from __future__ import annotations

import argparse
import gc
import json
import statistics
import sys
import time
from collections import defaultdict
from datetime import timedelta
from pathlib import Path
from typing import Any

import anyio.to_thread
from fastapi.testclient import TestClient
from sqlalchemy import event

sys.path.insert(0, str(Path(__file__).resolve().parent))

from heartbeat_load import node_devices  # noqa: E402
from throwaway import prepare  # noqa: E402

from zhisuan.agent.host import heartbeat, registration  # noqa: E402
from zhisuan.api.app import create_app, freeze_startup_objects  # noqa: E402
from zhisuan.config import Settings  # noqa: E402
from zhisuan.inventory import service  # noqa: E402
from zhisuan.inventory.beats import BeatBuffer, quick_beat  # noqa: E402
from zhisuan.inventory.schemas import DeviceHealth, Heartbeat  # noqa: E402
from zhisuan.store.base import transaction  # noqa: E402


class Counters:
    def __init__(self) -> None:
        self.statements = 0
        self.checkouts = 0
        self.handoffs = 0
        self.gc_pauses: dict[int, list[float]] = defaultdict(list)
        self._gc_start = 0.0

    def gc_callback(self, phase: str, info: dict[str, Any]) -> None:
        if phase == "start":
            self._gc_start = time.perf_counter()
        else:
            self.gc_pauses[info["generation"]].append((time.perf_counter() - self._gc_start) * 1000)


def instrument(app: Any, counters: Counters) -> None:
    engine = app.state.engine

    def count_statement(*_: Any) -> None:
        counters.statements += 1

    for counted_engine in (engine, app.state.loop_engine):  # the loops' pool: the buffer's flushes
        event.listen(counted_engine, "before_cursor_execute", count_statement)

    @event.listens_for(engine, "checkout")
    def count_checkout(*_: Any) -> None:
        counters.checkouts += 1

    original = anyio.to_thread.run_sync

    async def counted(*args: Any, **kwargs: Any) -> Any:
        counters.handoffs += 1
        return await original(*args, **kwargs)

    anyio.to_thread.run_sync = counted  # type: ignore[assignment]
    gc.callbacks.append(counters.gc_callback)


def median_ms(samples: list[float]) -> float:
    return round(statistics.median(samples) * 1000, 3)


def measure(backend: str, beats: int, freeze: bool, buffered: bool) -> dict[str, Any]:
    platform = prepare(backend, 1)
    try:
        settings = Settings(data_dir=platform.data_dir, database_url=platform.database_url,
                            register_local_site=False, run_background_loops=False)
        app = create_app(settings)
        if freeze:
            freeze_startup_objects()
        key = platform.agent_keys[0]
        headers = {"Authorization": f"Bearer {key}"}
        with TestClient(app) as client:
            buffer = BeatBuffer("beat-anatomy", timedelta(minutes=5)) if buffered else None
            app.state.ctx.beats = buffer
            client.post("/api/v1/agent/register", json=registration("sim-000000", node_devices(0)),
                        headers=headers).raise_for_status()
            body = heartbeat("sim-000000", node_devices(0))
            for _ in range(50):  # warm: key cached, statements compiled
                client.post("/api/v1/agent/heartbeat", json=body, headers=headers).raise_for_status()
            counters = Counters()
            instrument(app, counters)
            whole, flushed_at, flushes = [], time.perf_counter(), 0
            for _ in range(beats):
                start = time.perf_counter()
                client.post("/api/v1/agent/heartbeat", json=body, headers=headers).raise_for_status()
                whole.append(time.perf_counter() - start)
                if buffer is not None and start - flushed_at >= 1.0:  # what the flusher does each second
                    buffer.flush(app.state.loop_sessions, app.state.ctx.clock())
                    flushed_at, flushes = start, flushes + 1
            gc.callbacks.remove(counters.gc_callback)
            ctx = app.state.ctx
            statements, checkouts = counters.statements, counters.checkouts
            keys, db, quick = [], [], []
            reports = [DeviceHealth.model_validate(d) for d in body["devices"]]
            parsed = Heartbeat.model_validate(body)
            for _ in range(min(beats, 500) if buffer is not None else 0):
                start = time.perf_counter()
                assert quick_beat(ctx, buffer, key, parsed) is not None
                quick.append(time.perf_counter() - start)
            for _ in range(min(beats, 500)):
                with transaction(ctx.sessions) as session:
                    start = time.perf_counter()
                    principal = ctx.verifier.authenticate(session, key, ctx.clock(), "127.0.0.1")
                    keys.append(time.perf_counter() - start)
                with transaction(ctx.sessions) as session:
                    start = time.perf_counter()
                    service.heartbeat(session, principal, "sim-000000", reports, ctx.clock())
                    session.commit()
                    db.append(time.perf_counter() - start)
        return {
            "backend": backend, "beats": beats, "gc_freeze": freeze, "buffered": buffered, "flushes": flushes,
            "statements_per_beat": round(statements / beats, 2),
            "pool_checkouts_per_beat": round(checkouts / beats, 2),
            "thread_handoffs_per_beat": round(counters.handoffs / beats, 2),
            "request_ms_median": median_ms(whole), "request_ms_p99": round(sorted(whole)[int(0.99 * beats)] * 1000, 3),
            "key_check_ms_median": median_ms(keys), "heartbeat_db_ms_median": median_ms(db),
            "quick_beat_ms_median": median_ms(quick) if quick else None,
            "gc_pauses": {f"gen{g}": {"count": len(p), "max_ms": round(max(p), 1), "total_ms": round(sum(p), 1)}
                          for g, p in sorted(counters.gc_pauses.items())},
        }
    finally:
        platform.drop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--backend", choices=("postgresql", "sqlite"), default="postgresql")
    parser.add_argument("--beats", type=int, default=2000)
    parser.add_argument("--no-freeze", action="store_true", help="skip gc.freeze() after start-up (as before)")
    parser.add_argument("--write-through", action="store_true", help="no beat buffer: every beat in full")
    args = parser.parse_args()
    print(json.dumps(measure(args.backend, args.beats, not args.no_freeze, not args.write_through), indent=1))


if __name__ == "__main__":
    main()
