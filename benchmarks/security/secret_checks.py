"""Do response times tell which user names or key ids exist? Median time of a failed console login
for an existing user (wrong password) against a user that does not exist, and of a failed API-key
check for an existing key id (wrong secret) against an unknown key id, calls interleaved so load from
other processes weighs on both alike. Throttles are lifted for the measurement. A ratio near 1.0
means the two cases cost the same (equal hashing work: tests/api/test_login_abuse.py asserts that).

    uv run python benchmarks/security/secret_checks.py --runs 21

The same file runs against an older checkout for the reference ("before"):
    git worktree add /tmp/before 498580b && cd /tmp/before && uv sync --locked \
        && uv run python /path/to/this/file --runs 21
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from fastapi.testclient import TestClient

from zhisuan.api.app import create_app
from zhisuan.bootstrap import ensure_first_operator, migrate
from zhisuan.config import Settings
from zhisuan.store.base import make_engine, make_session_factory


def interleaved_medians(first: Callable[[], object], second: Callable[[], object], runs: int) -> tuple[float, float]:
    first(), second()  # warm-up (the dummy hash is made once per process)
    times: tuple[list[float], list[float]] = ([], [])
    for _ in range(runs):
        for action, spent in ((first, times[0]), (second, times[1])):
            started = time.perf_counter()
            action()
            spent.append(time.perf_counter() - started)
    return statistics.median(times[0]) * 1000, statistics.median(times[1]) * 1000


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runs", type=int, default=21)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        settings = Settings(data_dir=Path(tmp))
        migrate(settings)
        first = ensure_first_operator(make_session_factory(make_engine(settings.resolved_database_url())), settings)
        assert first is not None
        app = create_app(settings)
        for throttle in (getattr(app.state.ctx, "login_throttle", None),
                         getattr(app.state.ctx.verifier, "throttle", None)):
            if throttle is not None:  # (releases before 2026-12 had none)
                throttle.free = 10**9
        client = TestClient(app)
        key_id = first.api_key.split("_")[1]

        def login(user: str) -> Callable[[], object]:
            return lambda: client.post("/api/v1/auth/login", json={"username": user, "password": "wrong password!"})

        def whoami(key: str) -> Callable[[], object]:
            return lambda: client.get("/api/v1/auth/whoami", headers={"Authorization": f"Bearer {key}"})

        results = {}
        for name, known, unknown in (
                ("login", login(first.username), login("no-such-user")),
                ("api key", whoami(f"zs_{key_id}_{'x' * 43}"), whoami(f"zs_{'f' * 12}_{'x' * 43}"))):
            a, b = interleaved_medians(known, unknown, args.runs)
            results[name] = {"existing_ms": round(a, 1), "unknown_ms": round(b, 1), "ratio": round(b / a, 2)}
        print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
