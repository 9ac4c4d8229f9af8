"""Two exchange upkeeps (``refresh``, run on any read) at once lapse a match and cancel its draft contract
once: the second one, which read the match as still proposed, waits on the first one's row lock and then
finds it lapsed (a conditional UPDATE), instead of recording a second DRAFT → CANCELLED transition.

The second session read the draft contract before the first one committed (as a request that looked at
the contract first would): without the guard it cancels its stale draft again, since nothing it does
after reading re-reads the contract."""

from __future__ import annotations

import threading
import time

import pytest
from sqlalchemy import func, select, text

from tests.api.conftest import Api, Clock
from tests.exchange.market_setup import fleet, offer, request
from zhisuan.exchange import service
from zhisuan.market import models as m


def waiting_on_a_lock(world: Api) -> bool:
    with world.client.app.state.ctx.sessions() as probe:  # type: ignore[attr-defined]
        waiting = probe.execute(text("SELECT count(*) FROM pg_locks WHERE NOT granted")).scalar_one()
    return bool(waiting)


def test_two_concurrent_refreshes_cancel_a_lapsed_draft_once(world: Api, clock: Clock, backend: str) -> None:
    if backend != "postgresql":
        pytest.skip("the race needs two concurrent writers (SQLite has one write lock for the whole file)")
    fleet(world)
    offer(world, "p1", site="s1", model="h800", devices=8, pricing_model="device_hour", floor_price="10")
    request(world, "acme", amount=8, models=["h800"], max_price="20")
    match = world.ok("POST", "/exchange/clear", "operator", {})["matches"][0]
    clock.advance(hours=49)  # past the acceptance deadline
    sessions = world.client.app.state.ctx.sessions  # type: ignore[attr-defined]
    errors: list[BaseException] = []

    second = sessions()
    seen = second.get(m.Contract, match["contract_id"])  # kept: the identity map holds objects weakly
    assert seen is not None and seen.state == "draft"

    def second_refresh() -> None:
        try:
            service.refresh(second, clock())
            second.commit()
        except BaseException as error:  # noqa: BLE001 — reported by the test below
            errors.append(error)
        finally:
            second.close()

    with sessions() as first:
        service.refresh(first, clock())  # lapses the match and cancels the draft, not yet committed
        first.flush()
        other = threading.Thread(target=second_refresh)
        other.start()
        deadline = time.monotonic() + 10
        while not waiting_on_a_lock(world) and other.is_alive():  # the second one reached the same rows
            assert time.monotonic() < deadline, "the second refresh never waited on the first one's locks"
            time.sleep(0.02)
        first.commit()
    other.join(timeout=30)
    assert not other.is_alive() and not errors, errors
    with sessions() as session:
        steps = session.execute(select(func.count(m.ContractTransition.id)).where(
            m.ContractTransition.contract_id == match["contract_id"])).scalar_one()
    assert steps == 1
    contract = world.ok("GET", f"/contracts/{match['contract_id']}", "acme")
    assert [(t["from_state"], t["to_state"]) for t in contract["transitions"]] == [("draft", "cancelled")]
