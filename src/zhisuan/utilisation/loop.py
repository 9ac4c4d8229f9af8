"""The utilisation sampler: every minute, the fleet's allocated share into minute, hour and day buckets.

One pass: (1) a short transaction takes the ``utilisation`` lease, reads the fleet (one grouped
query over devices and the ledger) and the buckets this minute adds to; (2) pure code decides the
new bucket values (``core.utilisation``); (3) a second short transaction writes them and drops
what is past retention, only while the lease token is still ours. A second pass in one minute (a
restart, or a shorter interval) replaces that minute's reading instead of counting it twice.
"""

from __future__ import annotations

import socket
from datetime import datetime, timedelta

from sqlalchemy.orm import Session, sessionmaker

from zhisuan.core.utilisation import apply_sample
from zhisuan.store.base import transaction
from zhisuan.store.leases import acquire_lease, lease_is_held
from zhisuan.utilisation.service import read_fleet, stored_buckets, write_buckets

LEASE = "utilisation"


def utilisation_pass(sessions: sessionmaker[Session], now: datetime, holder: str | None = None,
                     ttl: timedelta = timedelta(minutes=3)) -> int | None:
    """Sample once; the number of buckets written, or None if another process holds the lease."""
    holder = holder or socket.gethostname()
    with transaction(sessions) as session:
        token = acquire_lease(session, LEASE, holder, now, ttl)
        if token is None:
            return None
        existing = stored_buckets(session, now)
        readings = read_fleet(session, now)
    buckets = apply_sample(existing, readings, now)
    with transaction(sessions) as session:
        if not lease_is_held(session, LEASE, token, now):
            return None
        write_buckets(session, buckets, now)
    return len(buckets)
