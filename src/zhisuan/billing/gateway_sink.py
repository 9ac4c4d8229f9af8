"""The usage sink of an in-process MaaS gateway: spooled token events → the billing ledger.

The gateway spools every request's usage durably before it answers, then ships batches here; this
sink turns them into token events and records them with ``billing.service.ingest_tokens`` — the
same code as ``POST /api/v1/usage/token-events`` — so a re-sent batch is counted once.

Rules: the event id is the idempotency key; an event with no tokens (the upstream failed before
producing any) bills nothing; a key that belongs to no tenant (an operator's own test call) is
platform-internal use and is not billed. Tokens are credited to ``provider``, the owner of the
replicas (on one box: provider ``local``).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from datetime import UTC, datetime

from sqlalchemy.orm import Session, sessionmaker

from zhisuan.billing import schemas as s
from zhisuan.billing.service import ingest_tokens
from zhisuan.bootstrap import system_principal
from zhisuan.gateway.protocols import UsageEvent
from zhisuan.store.base import transaction

log = logging.getLogger("zhisuan.billing.gateway")
TENANT_PREFIX = "tenant-"


def token_events(events: Sequence[UsageEvent], provider: str) -> list[s.TokenEventIn]:
    """The billable part of a batch, as billing's token events (pure)."""
    billable = []
    for event in events:
        if not event.tenant_id.startswith(TENANT_PREFIX) or event.prompt_tokens + event.completion_tokens == 0:
            continue
        billable.append(s.TokenEventIn(
            event_id=f"gw:{event.event_id}", tenant=event.tenant_id[len(TENANT_PREFIX):], provider=provider,
            model=event.model, at=datetime.fromtimestamp(event.ended_at, UTC),
            input_tokens=event.prompt_tokens, output_tokens=event.completion_tokens,
        ))
    return billable


class LedgerUsageSink:
    """``gateway.protocols.UsageSink`` writing into this control plane's database."""

    def __init__(self, sessions: sessionmaker[Session], provider: str = "local") -> None:
        self.sessions = sessions
        self.provider = provider

    async def ingest(self, events: Sequence[UsageEvent]) -> None:
        batch = token_events(events, self.provider)
        if batch:
            await asyncio.to_thread(self._record, batch)

    def _record(self, batch: list[s.TokenEventIn]) -> None:
        for start in range(0, len(batch), 1000):  # the ingestion API's batch limit
            with transaction(self.sessions) as session:
                result = ingest_tokens(session, system_principal(), s.TokenBatch(events=batch[start:start + 1000]),
                                       datetime.now(UTC))
            log.debug("usage: %d records accepted, %d replayed", len(result.accepted), len(result.replayed))
