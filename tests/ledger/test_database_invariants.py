"""PostgreSQL itself refuses overlapping exclusive holds, whatever code writes them (migration 0005)."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from sqlalchemy.exc import IntegrityError

from tests.api.conftest import Api, h100_node
from zhisuan.inventory.models import Device
from zhisuan.ledger.models import Allocation
from zhisuan.store.base import transaction

T0 = datetime(2026, 11, 1, 8, tzinfo=UTC)


def row(device: Device, tenant_id: int, purpose: str, milli: int, start: datetime,
        end: datetime | None) -> Allocation:
    return Allocation(tenant_id=tenant_id, provider_id=1, node_id=device.node_id, device_id=device.id,
                      model=device.model, milli=milli, purpose=purpose, start=start, end=end)


@pytest.mark.parametrize("purpose", ["contract", "manual"])
def test_postgresql_refuses_two_exclusive_holds_of_a_device_at_once(world: Api, backend: str, purpose: str) -> None:
    if backend != "postgresql":
        pytest.skip("SQLite has no exclusion constraints: its serialized writes are the guarantee")
    world.ok("POST", "/agent/register", "agent1", h100_node("gpu-a", 1))
    sessions = world.client.app.state.ctx.sessions  # type: ignore[attr-defined]
    with transaction(sessions) as session:
        device = session.query(Device).one()
        session.add(row(device, 1, purpose, 1000, T0, datetime(2026, 12, 1, tzinfo=UTC)))
    with pytest.raises(IntegrityError, match="ex_allocations_"), transaction(sessions) as session:
        device = session.query(Device).one()
        session.add(row(device, 2, purpose, 1000, datetime(2026, 11, 30, tzinfo=UTC), None))
    with transaction(sessions) as session:  # back to back is not overlapping
        device = session.query(Device).one()
        session.add(row(device, 2, purpose, 1000, datetime(2026, 12, 1, tzinfo=UTC), None))
