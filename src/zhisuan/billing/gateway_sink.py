"""The usage sink of an in-process MaaS gateway: spooled token events → the billing ledger.

The gateway spools every request's usage durably before it answers, then ships batches here; this
sink turns them into token events and records them with ``billing.token_ingest.ingest_tokens`` — the
same code as ``POST /api/v1/usage/token-events`` — so a re-sent batch is counted once.

Rules: the event id is the idempotency key; an event with no tokens (the upstream failed before
producing any) bills nothing; a key that belongs to no tenant (an operator's own test call) is
platform-internal use and is not billed. Tokens are credited to ``provider``, the owner of the
replicas (on one box: provider ``local``). Each event carries its API key's public id
(``api_key_id``), so usage is visible per key; a key that no longer exists or no longer belongs to
the event's tenant (its user was deleted or moved) is dropped from the event rather than blocking
the spool behind a batch the ledger would refuse — the tokens are still billed to the tenant.
"""

from __future__ import annotations

import asyncio
import logging
import operator
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from zhisuan.billing import schemas as s
from zhisuan.billing.token_ingest import ingest_tokens
from zhisuan.bootstrap import system_principal
from zhisuan.gateway.protocols import UsageEvent
from zhisuan.gateway.usage import SPOOL_FIELDS
from zhisuan.identity.models import ApiKey, User
from zhisuan.store.base import transaction

log = logging.getLogger("zhisuan.billing.gateway")
TENANT_PREFIX = "tenant-"
EVENT_ID, KEY, TENANT, MODEL, PROMPT, COMPLETION, ENDED = map(SPOOL_FIELDS.index, (
    "event_id", "key_id", "tenant_id", "model", "prompt_tokens", "completion_tokens", "ended_at"))
event_row = operator.attrgetter(*SPOOL_FIELDS)  # an event as a spool row (a tuple of its field values)


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
            api_key_id=event.key_id or None,
        ))
    return billable


def rolled_up_token_events(events: Sequence[UsageEvent], provider: str) -> list[s.TokenEventIn]:
    """``rolled_up_rows`` of the events (pure)."""
    return rolled_up_rows([event_row(e) for e in events], provider)


def rolled_up_rows(rows: Iterable[Sequence[Any]], provider: str) -> list[s.TokenEventIn]:
    """The billable part of a batch — spool rows: an event's ``SPOOL_FIELDS`` values, as the shipper
    decodes them (``gateway.usage.decode_rows``) — summed per (tenant, API key, model, UTC second of its end) (pure).

    Exact: tokens are integers and a sum of a group bills the same as its members, because every
    member lies in the same second — the same month, UTC day and price-book segment (book versions and
    contract amendments take effect at whole seconds). A group of one keeps the single event's id
    (``gw:<event id>``); a larger group is ``gw:<first member's id>:r<members>`` with ``requests`` =
    members. Deterministic for a given batch, so re-sending the same batch (the shipper fixes a batch's
    bounds before sending it) re-sends the same ids and counts once. The per-request detail stays in the
    gateway's spool segments (``SpoolShipper.archive_dir`` keeps them).

    Why rows, not ``UsageEvent`` s: the shipper's cost per request is what limits how many requests/s
    one gateway's usage can be shipped at; building an object per request cost about as much as the
    roll-up itself (BENCHMARKS.md "Usage ingestion")."""
    # group → [requests, Σ input, Σ output, first member's id, first member's end]
    groups: dict[tuple[str, str, str, int], list[Any]] = {}
    for row in rows:
        tenant, prompt, completion = row[TENANT], row[PROMPT], row[COMPLETION]
        if prompt + completion == 0 or not tenant.startswith(TENANT_PREFIX):
            continue
        ended = row[ENDED]
        group = (tenant, row[KEY], row[MODEL], int(ended // 1))
        sums = groups.get(group)
        if sums is None:
            groups[group] = [1, prompt, completion, row[EVENT_ID], ended]
        else:
            sums[0] += 1
            sums[1] += prompt
            sums[2] += completion
    rolled = []
    for (tenant, key_id, model, second), (count, prompt, completion, first_id, first_end) in groups.items():
        one = count == 1
        rolled.append(s.TokenEventIn(
            event_id=f"gw:{first_id}" if one else f"gw:{first_id}:r{count}",
            tenant=tenant[len(TENANT_PREFIX):], provider=provider, model=model,
            at=datetime.fromtimestamp(first_end if one else second, UTC),
            input_tokens=prompt, output_tokens=completion, api_key_id=key_id or None, requests=count))
    return rolled


def known_keys(session: Session, batch: list[s.TokenEventIn]) -> list[s.TokenEventIn]:
    """``batch`` with every ``api_key_id`` that is unknown or not its event's tenant's set to None."""
    wanted = {e.api_key_id for e in batch if e.api_key_id}
    if not wanted:
        return batch
    owners = {key_id: str(tenant_id) for key_id, tenant_id in session.execute(
        select(ApiKey.key_id, User.tenant_id).join(User, ApiKey.user_id == User.id)
        .where(ApiKey.key_id.in_(wanted))).all()}
    fixed = []
    for event in batch:
        if event.api_key_id and owners.get(event.api_key_id) != event.tenant:
            log.warning("usage: event %s names API key %s, which is not tenant %s's; recorded without it",
                        event.event_id, event.api_key_id, event.tenant)
            event = event.model_copy(update={"api_key_id": None})
        fixed.append(event)
    return fixed


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
                events = known_keys(session, batch[start:start + 1000])
                result = ingest_tokens(session, system_principal(), s.TokenBatch(events=events), datetime.now(UTC))
            log.debug("usage: %d records accepted, %d replayed", len(result.accepted), len(result.replayed))
