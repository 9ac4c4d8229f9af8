"""Where one node registration's time goes, measured in-process on a throw-away database.

``--nodes`` simulated agents (8 devices each, the real agent's body, one per-node key each, as
``zhisuan site agent-key`` issues them) register one after the other through the full ASGI app
(Starlette's TestClient: every middleware and dependency, no sockets), then all register again
(an agent restarting: same body, key already verified by this process). Reported per phase (first
registration / re-registration): registrations per second of one client, median and p99 of the whole
request, SQL statements and pool check-outs per registration, and the median time spent in:

- the key's check (``hashing.verify_secret``: once per key and process; SHA-256 for keys issued now,
  scrypt for keys stored before — ``--legacy-scrypt-n 16384`` stores the agent keys that way);
- ``inventory.service.register_node`` (validation, catalog matching, node and device rows, audit);
- the commit.

The rest is HTTP, middleware, body validation, dependencies and thread hand-offs — since session 6, for
a plain agent body, the registration shortcut's layer (``api.register_shortcut``) instead. Over real HTTP
with many agents at once (what a fleet start brings): ``register_load.py``.

    uv run python benchmarks/controlplane/register_anatomy.py --nodes 500
    # the batches a busy process applies (inventory.registrar), without HTTP: N registrations per batch
    uv run python benchmarks/controlplane/register_anatomy.py --nodes 1000 --batch 100
    uv run python benchmarks/controlplane/register_anatomy.py --backend sqlite --nodes 500
    # before SHA-256 key digests: the same agent keys stored as scrypt at the production cost
    uv run python benchmarks/controlplane/register_anatomy.py --nodes 1000 --batch 100 --legacy-scrypt-n 16384
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path
from typing import Any

from fastapi.testclient import TestClient
from sqlalchemy import event
from sqlalchemy.orm import Session

sys.path.insert(0, str(Path(__file__).resolve().parent))

from heartbeat_load import node_devices  # noqa: E402
from throwaway import prepare  # noqa: E402

from zhisuan.agent.host import registration  # noqa: E402
from zhisuan.api.app import create_app  # noqa: E402
from zhisuan.config import Settings  # noqa: E402
from zhisuan.identity import keys  # noqa: E402
from zhisuan.inventory import service  # noqa: E402


class Timers:
    """Seconds spent in wrapped functions, per registration (reset before each)."""

    def __init__(self) -> None:
        self.current: dict[str, float] = defaultdict(float)
        self.statements = 0
        self.checkouts = 0

    def wrap(self, owner: Any, attribute: str, label: str) -> None:
        original: Callable[..., Any] = getattr(owner, attribute)

        def timed(*args: Any, **kwargs: Any) -> Any:
            start = time.perf_counter()
            try:
                return original(*args, **kwargs)
            finally:
                self.current[label] += time.perf_counter() - start

        setattr(owner, attribute, timed)


def instrument(app: Any, timers: Timers) -> None:
    def count_statement(*_: Any) -> None:
        timers.statements += 1

    def count_checkout(*_: Any) -> None:
        timers.checkouts += 1

    event.listen(app.state.engine, "before_cursor_execute", count_statement)
    event.listen(app.state.engine, "checkout", count_checkout)
    timers.wrap(keys, "verify_secret", "key_check_ms")
    timers.wrap(service, "register_node", "register_node_ms")
    timers.wrap(Session, "commit", "commit_ms")


def body_of(number: int) -> dict[str, Any]:
    body = registration(f"sim-{number:06d}", node_devices(number), {"rack": f"r{number % 40}"})
    body["cpu_cores"], body["memory_mib"] = 128, 1_048_576
    return body


def phase(client: TestClient, agent_keys: list[str], timers: Timers) -> dict[str, Any]:
    whole: list[float] = []
    parts: dict[str, list[float]] = defaultdict(list)
    statements0, checkouts0 = timers.statements, timers.checkouts
    start = time.perf_counter()
    for number, key in enumerate(agent_keys):
        timers.current.clear()
        sent = time.perf_counter()
        client.post("/api/v1/agent/register", json=body_of(number),
                    headers={"Authorization": f"Bearer {key}"}).raise_for_status()
        whole.append(time.perf_counter() - sent)
        for label in ("key_check_ms", "register_node_ms", "commit_ms"):
            parts[label].append(timers.current.get(label, 0.0))
    elapsed = time.perf_counter() - start
    count = len(agent_keys)
    ordered = sorted(whole)
    return {
        "registrations_per_s": round(count / elapsed, 1),
        "median_ms": round(statistics.median(whole) * 1000, 2),
        "p99_ms": round(ordered[min(count - 1, int(0.99 * count))] * 1000, 2),
        "statements_per_registration": round((timers.statements - statements0) / count, 2),
        "checkouts_per_registration": round((timers.checkouts - checkouts0) / count, 2),
        **{label: round(statistics.median(values) * 1000, 2) for label, values in parts.items()},
    }


def batches(app: Any, agent_keys: list[str], size: int) -> dict[str, Any]:
    """Registrations applied as ``Registrar`` batches of ``size`` straight (no HTTP): per phase, rate,
    process CPU and statements per registration, errors."""
    from zhisuan.inventory.registrar import Pending, Registrar
    from zhisuan.inventory.schemas import NodeRegister

    queue = Registrar(app.state.ctx, app.state.catalog)
    statements = [0]
    event.listen(app.state.engine, "before_cursor_execute", lambda *_: statements.__setitem__(0, statements[0] + 1))
    result: dict[str, Any] = {}
    for phase_name in ("first_registration", "re_registration"):
        items = [Pending(key, NodeRegister.model_validate(body_of(n)), "127.0.0.1") for n, key in enumerate(agent_keys)]
        statements[0], cpu, start = 0, time.process_time(), time.perf_counter()
        for first in range(0, len(items), size):
            queue.apply(items[first:first + size])
        elapsed, cpu = time.perf_counter() - start, time.process_time() - cpu
        result[phase_name] = {"registrations_per_s": round(len(items) / elapsed, 1),
                              "cpu_ms_per_registration": round(cpu / len(items) * 1000, 2),
                              "statements_per_registration": round(statements[0] / len(items), 2),
                              "errors": sum(1 for item in items if item.answer.exception() is not None)}
    return result


def measure(backend: str, nodes: int, legacy_scrypt_n: int | None, batch: int = 0) -> dict[str, Any]:
    platform = prepare(backend, nodes, legacy_scrypt_n)
    keys_stored = f"scrypt n={legacy_scrypt_n}" if legacy_scrypt_n else "sha256"
    try:
        settings = Settings(data_dir=platform.data_dir, database_url=platform.database_url,
                            register_local_site=False, run_background_loops=False)
        app = create_app(settings)
        if batch:
            return {"backend": backend, "nodes": nodes, "keys_stored": keys_stored, "batch": batch,
                    **batches(app, platform.agent_keys, batch)}
        timers = Timers()
        with TestClient(app) as client:
            # Warm the app (statements compiled, catalog loaded) with a node outside the measured set.
            client.post("/api/v1/agent/register", json=body_of(nodes),
                        headers={"Authorization": f"Bearer {platform.agent_keys[-1]}"}).raise_for_status()
            instrument(app, timers)
            first = phase(client, platform.agent_keys[:-1], timers)
            again = phase(client, platform.agent_keys[:-1], timers)
        app.state.engine.dispose()
        app.state.loop_engine.dispose()
        return {"backend": backend, "nodes": nodes - 1, "keys_stored": keys_stored, "devices_per_node": 8,
                "first_registration": first, "re_registration": again}
    finally:
        platform.drop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--backend", choices=("postgresql", "sqlite"), default="postgresql")
    parser.add_argument("--nodes", type=int, default=500)
    parser.add_argument("--legacy-scrypt-n", type=int, default=None,
                        help="store the agent keys as scrypt at this cost (before SHA-256 digests; production: 16384)")
    parser.add_argument("--batch", type=int, default=0, help="apply registrations in batches of this size, no HTTP")
    args = parser.parse_args()
    nodes = args.nodes + (0 if args.batch else 1)
    print(json.dumps(measure(args.backend, nodes, args.legacy_scrypt_n, args.batch), indent=1))


if __name__ == "__main__":
    main()
