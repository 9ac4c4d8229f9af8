"""Leases that let exactly one control-plane process run a background loop at a time.

A loop acquires its lease with a compare-and-set UPDATE and writes its decisions only while the
token it got is still the lease's token, so two processes sharing one database never both apply.
"""

from __future__ import annotations

import secrets
from datetime import UTC, datetime, timedelta

from sqlalchemy import String, select, update
from sqlalchemy.orm import Mapped, Session, mapped_column

from zhisuan.store.base import Base, UTCDateTime


class LoopLease(Base):
    __tablename__ = "loop_leases"

    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    holder: Mapped[str] = mapped_column(String(64))
    token: Mapped[str] = mapped_column(String(64))
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime())


def acquire_lease(session: Session, name: str, holder: str, now: datetime, ttl: timedelta) -> str | None:
    """Take or renew lease ``name`` for ``holder``; return its token, or None if another holds it."""
    lease = session.get(LoopLease, name)
    token = secrets.token_hex(16)
    if lease is None:
        session.add(LoopLease(name=name, holder=holder, token=token, expires_at=now + ttl))
        session.flush()
        return token
    result = session.execute(
        update(LoopLease)
        .where(LoopLease.name == name, LoopLease.token == lease.token)
        .where((LoopLease.holder == holder) | (LoopLease.expires_at < now))
        .values(holder=holder, token=token, expires_at=now + ttl)
        .execution_options(synchronize_session=False)
    )
    return token if result.rowcount == 1 else None  # type: ignore[attr-defined]


def lease_is_held(session: Session, name: str, token: str, now: datetime) -> bool:
    current = session.execute(
        select(LoopLease.token, LoopLease.expires_at).where(LoopLease.name == name)
    ).one_or_none()
    return current is not None and current[0] == token and current[1] > now


def release_lease(session: Session, name: str, holder: str) -> None:
    """Give the lease up (a clean shutdown), so another process need not wait for it to expire."""
    session.execute(
        update(LoopLease).where(LoopLease.name == name, LoopLease.holder == holder)
        .values(expires_at=datetime(1970, 1, 1, tzinfo=UTC)).execution_options(synchronize_session=False)
    )
