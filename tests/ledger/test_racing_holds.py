"""Hundreds of racing holds through the real API: no device is ever held twice.

Requests run from many client threads at once (the app serves them from its thread pool, each with
its own session and transaction), so their check-then-write windows overlap. At most ``IN_FLIGHT``
are in flight: more would exhaust the app's connection pool while their sync dependencies hold every
worker thread (a starvation of the test set-up, not of the ledger).
"""

from __future__ import annotations

from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from tests.api.conftest import Api, h100_node

RACERS = 200
IN_FLIGHT = 12


def race(api: Api, bodies: list[tuple[str, str, dict[str, Any]]]) -> list[Any]:
    """Send every (method, path, body) from ``IN_FLIGHT`` threads at once; the responses in order."""
    with ThreadPoolExecutor(max_workers=IN_FLIGHT) as pool:
        return list(pool.map(lambda item: api.call(item[0], item[1], "operator", item[2]), bodies))


def held_per_device(api: Api) -> Counter[int]:
    held: Counter[int] = Counter()
    for row in api.ok("GET", "/allocations", "operator", limit=10000):
        if row["purpose"] != "contract" and row["end"] is None and row["device_index"] is not None:
            held[row["device_index"]] += row["milli"]
    return held


def test_racing_allocations_never_hold_a_device_twice(world: Api) -> None:
    world.ok("POST", "/agent/register", "agent1", h100_node("gpu-a", 8))
    bodies = [("POST", "/allocations", {"tenant": "acme" if n % 2 else "beta", "node": "s1/gpu-a",
                                        "devices": [n % 8, (n + 3) % 8] if n % 5 == 0 else [n % 8]})
              for n in range(RACERS)]
    responses = race(world, bodies)
    statuses = Counter(r.status_code for r in responses)
    assert set(statuses) <= {201, 409}, [r.text for r in responses if r.status_code not in (201, 409)][:3]
    held = held_per_device(world)
    assert max(held.values()) <= 1000, held  # before the ledger's locks: devices at 2000 milli
    for response in responses:
        if response.status_code == 409:
            error = response.json()["error"]
            assert "s1/gpu-a#" in error["message"] and error["field"].startswith("devices."), error
    assert statuses[201] == len(responses) - statuses[409] and sum(held.values()) <= 8000
