"""Benchmark: the exchange's own work in one clearing round, around the matcher.

    uv run python benchmarks/exchange/bench_clearing_round.py [--providers 20] [--requests 200] [--standin]

Set-up (not timed): ``--providers`` providers, each with a site of 10 servers of 8 H800 and two
offers of 40 devices; ``--requests`` requests of 8 H800 from 50 tenants, caps spread around the floors.
All through the REST API over a fresh SQLite database, as operator.

Timed, per step of ``POST /exchange/clear``: (1) the read of the open book, (2) the matcher,
(3) the write (every match re-checked against its order's revision and the ledger, a match row and a
draft contract each), and the whole request. ``--standin`` uses the tests' deliberately simple
stand-in matcher (tests/exchange/standin_matching.py) when ``zhisuan.core.matching`` is absent, so
steps (1) and (3) can be measured before the real matcher lands; step (2) is then not meaningful.
"""

from __future__ import annotations

import argparse
import importlib
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from fastapi.testclient import TestClient

from zhisuan.api.app import create_app
from zhisuan.bootstrap import ensure_first_operator
from zhisuan.catalog.loader import default_catalog
from zhisuan.config import Settings
from zhisuan.exchange import clearing
from zhisuan.store.migrate import upgrade_to_head

WINDOW = {"start": "2030-01-01T00:00:00Z", "end": "2030-04-01T00:00:00Z"}


def install_matcher(standin: bool) -> None:
    try:
        importlib.import_module("zhisuan.core.matching")
    except ImportError:
        if not standin:
            sys.exit("zhisuan.core.matching is not installed; pass --standin to time the exchange around the stand-in")
        sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
        sys.modules["zhisuan.core.matching"] = importlib.import_module("tests.exchange.standin_matching")


def timed(steps: dict[str, float], name: str, work: Callable[..., Any]) -> Callable[..., Any]:
    def run(*args: Any, **kwargs: Any) -> Any:
        began = time.perf_counter()
        try:
            return work(*args, **kwargs)
        finally:
            steps[name] = steps.get(name, 0.0) + time.perf_counter() - began
    return run


def populate(client: TestClient, key: str, providers: int, requests: int) -> None:
    headers = {"Authorization": f"Bearer {key}"}

    def post(path: str, body: dict[str, Any]) -> None:
        response = client.post(f"/api/v1{path}", json=body, headers=headers)
        assert response.status_code < 300, response.text

    for t in range(50):
        post("/tenants", {"name": f"t{t}"})
    for p in range(providers):
        post("/providers", {"name": f"p{p}", "revenue_share": "0.7"})
        post("/sites", {"name": f"s{p}", "engine": "slurm", "region": f"r{p % 3}", "provider": f"p{p}"})
        for n in range(10):
            post("/nodes", {"site": f"s{p}", "name": f"n{n}", "cpu_cores": 64, "memory_mib": 512_000,
                            "accelerators": [{"model": "h800", "count": 8}]})
        for o in range(2):
            post("/exchange/offers", {**WINDOW, "provider": f"p{p}", "site": f"s{p}", "model": "h800", "devices": 40,
                                      "pricing_model": "device_hour", "floor_price": str(10 + (p + o) % 7),
                                      "min_term_h": 24})
    for r in range(requests):
        post("/exchange/requests", {"tenant": f"t{r % 50}", "amount": 8, "models": ["h800"],
                                    "earliest_start": WINDOW["start"], "latest_start": "2030-01-08T00:00:00Z",
                                    "duration_h": 720, "max_price": str(8 + r % 12)})


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--providers", type=int, default=20)
    parser.add_argument("--requests", type=int, default=200)
    parser.add_argument("--standin", action="store_true")
    args = parser.parse_args()
    install_matcher(args.standin)
    with tempfile.TemporaryDirectory() as where:
        settings = Settings(data_dir=Path(where), database_url=f"sqlite:///{where}/bench.db",
                            register_local_site=False, run_background_loops=False, scrypt_n=2**12)
        upgrade_to_head(settings.resolved_database_url())
        app = create_app(settings, catalog=default_catalog())
        first = ensure_first_operator(app.state.ctx.sessions, settings)
        assert first is not None
        steps: dict[str, float] = {}
        clearing.read_book = timed(steps, "read", clearing.read_book)  # type: ignore[method-assign]
        clearing.solve = timed(steps, "solve", clearing.solve)  # type: ignore[method-assign]
        clearing.write_match = timed(steps, "write", clearing.write_match)  # type: ignore[method-assign]
        with TestClient(app) as client:
            populate(client, first.api_key, args.providers, args.requests)
            began = time.perf_counter()
            response = client.post("/api/v1/exchange/clear", json={},
                                   headers={"Authorization": f"Bearer {first.api_key}"})
            total = time.perf_counter() - began
        summary = response.json()
        print(f"{args.providers * 2} offers, {args.requests} requests -> {len(summary['matches'])} matches "
              f"({summary['status']})")
        for name in ("read", "solve", "write"):
            print(f"  {name:>5}: {steps.get(name, 0.0) * 1000:8.1f} ms")
        print(f"  whole request: {total * 1000:8.1f} ms")


if __name__ == "__main__":
    main()
