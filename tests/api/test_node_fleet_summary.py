"""The fleet summary a serving process keeps (inventory.fleet.SummaryCache): at most max-age old, served
stale while one background refresh runs, per scope (a provider sees its own capacity only)."""

from __future__ import annotations

import time

from tests.api.conftest import Api, h100_node
from zhisuan.catalog.loader import default_catalog
from zhisuan.identity.access import Principal
from zhisuan.inventory.fleet import SummaryCache

OPERATOR = Principal(user_id=1, username="op", role="operator")


def wait_for_refresh(cache: SummaryCache) -> None:
    deadline = time.monotonic() + 10
    while cache._refreshing and time.monotonic() < deadline:  # noqa: SLF001 - the test watches the thread
        time.sleep(0.01)
    assert not cache._refreshing  # noqa: SLF001


def test_a_kept_summary_is_served_until_it_is_older_than_its_max_age(world: Api) -> None:
    now = [100.0]
    cache = SummaryCache(world.client.app.state.ctx.sessions, default_catalog(), 2.0,  # type: ignore[attr-defined]
                         monotonic=lambda: now[0])
    assert cache.get(OPERATOR).accelerators == 0  # the first request computes in line
    world.ok("POST", "/agent/register", "agent1", h100_node("gpu-a", 8))
    now[0] += 1.5
    assert cache.get(OPERATOR).accelerators == 0  # young enough: no scan
    now[0] += 1.0
    assert cache.get(OPERATOR).accelerators == 0  # stale: still answered at once, refreshed behind
    wait_for_refresh(cache)
    assert cache.get(OPERATOR).accelerators == 8
    p2 = Principal(user_id=2, username="p2", role="provider", provider_id=2)
    assert cache.get(p2).accelerators == 0  # p2's own scope: gpu-a is p1's


def test_the_route_answers_from_the_processes_cache_when_it_keeps_one(world: Api) -> None:
    app = world.client.app  # type: ignore[attr-defined]
    now = [0.0]
    app.state.fleet_summaries = SummaryCache(app.state.ctx.sessions, default_catalog(), 2.0, monotonic=lambda: now[0])
    try:
        assert world.ok("GET", "/fleet/summary", "operator")["accelerators"] == 0
        world.ok("POST", "/agent/register", "agent1", h100_node("gpu-a", 8))
        assert world.ok("GET", "/fleet/summary", "operator")["accelerators"] == 0
    finally:
        del app.state.fleet_summaries
    assert world.ok("GET", "/fleet/summary", "operator")["accelerators"] == 8  # no cache: computed now
