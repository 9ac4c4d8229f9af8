"""Background metering: turns the allocation ledger into usage records as time passes.

One pass: (1) take the loop's lease in a short transaction; (2) meter in a second transaction,
which re-checks the lease before writing. The decision itself (how to cut allocations into
records) is the pure core's (``core.economics.metering``); the watermark's compare-and-set in
``billing.service.meter`` makes an overlapping pass fail rather than double-count.
Not wired into ``api.app.background_tasks`` yet: ``every(interval, lambda: metering_pass(...))``.
"""

from __future__ import annotations

import socket
from datetime import datetime, timedelta

from sqlalchemy.orm import Session, sessionmaker

from zhisuan.billing.schemas import MeterResult
from zhisuan.billing.service import meter
from zhisuan.catalog.loader import Catalog
from zhisuan.store.base import transaction
from zhisuan.store.leases import acquire_lease, lease_is_held

LEASE = "metering"


def metering_pass(sessions: sessionmaker[Session], catalog: Catalog, now: datetime,
                  ttl: timedelta = timedelta(minutes=5), holder: str | None = None) -> MeterResult | None:
    holder = holder or socket.gethostname()
    with transaction(sessions) as session:
        token = acquire_lease(session, LEASE, holder, now, ttl)
    if token is None:
        return None
    with transaction(sessions) as session:
        if not lease_is_held(session, LEASE, token, now):
            return None
        return meter(session, catalog, now)
