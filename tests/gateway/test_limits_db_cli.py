"""``zhisuan key create --money-budget`` and ``zhisuan tenant limits --money-budget`` against a real
``zhisuan up`` process, and what reaches the database the gateways read limits from."""

from __future__ import annotations

from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path

import pytest
from sqlalchemy import select

from tests.e2e.conftest import Platform, start_platform, stop
from zhisuan.gateway.db_limits import limits_from_db
from zhisuan.gateway.protocols import Limits
from zhisuan.identity.access import Principal
from zhisuan.identity.models import ApiKey, Tenant
from zhisuan.store.base import make_engine, make_session_factory


@pytest.fixture
def control_plane(database_url: str, tmp_path: Path) -> Iterator[Platform]:
    running = start_platform(tmp_path, "--database", database_url)
    yield running
    stop(running)


def test_money_budget_flags_reach_the_gateway_limits(control_plane: Platform, database_url: str) -> None:
    cp = control_plane
    cp.cli("tenant", "create", "acme")
    cp.cli("user", "create", "ann", "--role", "tenant", "--tenant", "acme")
    tenant = cp.cli_json("tenant", "limits", "acme", "--rpm", "60", "--money-budget", "100")
    assert (tenant["rpm"], tenant["money_budget"]) == (60, "100.00")
    key = cp.cli_json("key", "create", "--user", "ann", "--scope", "inference", "--money-budget", "12.5",
                      "--token-budget", "1000")
    assert (key["money_budget"], key["token_budget"]) == ("12.50", 1000)
    table = cp.cli("tenant", "limits", "acme", "--money-budget", "0.01").stdout
    assert "MONEY_BUDGET" in table and "0.01" in table

    engine = make_engine(database_url)
    sessions = make_session_factory(engine)
    with sessions() as s:
        tenant_id = s.execute(select(Tenant.id).where(Tenant.name == "acme")).scalar_one()
        stored = s.execute(select(ApiKey.money_budget).where(ApiKey.key_id == key["key_id"])).scalar_one()
    assert stored == Decimal("12.50")
    principal = Principal(user_id=0, username="ann", role="tenant", tenant_id=tenant_id, key_id=key["key_id"])
    _, key_limits, tenant_limits = limits_from_db(sessions)(principal)
    assert key_limits == Limits(token_budget=1000, money_budget_micros=12_500_000)
    assert tenant_limits == Limits(money_budget_micros=10_000)  # limits not given are cleared
    engine.dispose()


def test_bad_money_budget_flag_fails_with_the_field(control_plane: Platform) -> None:
    control_plane.cli("tenant", "create", "acme")
    keys_before = len(control_plane.cli_json("key", "list"))
    for bad in ("1.234", "-5", "ten"):
        result = control_plane.cli("tenant", "limits", "acme", "--money-budget", bad, check=False)
        assert result.returncode == 1
        assert "field: money_budget" in result.stderr and "HTTP 422" in result.stderr, result.stderr
        result = control_plane.cli("key", "create", "--money-budget", bad, check=False)
        assert result.returncode == 1 and "field: money_budget" in result.stderr, result.stderr
    assert control_plane.cli_json("tenant", "show", "acme")["money_budget"] is None
    assert len(control_plane.cli_json("key", "list")) == keys_before
