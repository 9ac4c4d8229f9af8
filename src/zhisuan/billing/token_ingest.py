"""Token events from the MaaS gateways → usage records, in bulk and idempotently.

Each event is one request; it becomes one record per non-zero side (``tok:{event_id}:in`` /
``:out``, both with ``source_id`` = the event id and the event's ``api_key_id``) — the records
invoices, the usage summary and settlements read.

How a batch is written (why: the ORM's one INSERT per row cost ~0.4 ms of server CPU per request and
capped ingestion near 2,000 events/s; see BENCHMARKS.md "Usage ingestion"):

1. validate every event and turn the batch into core records (``core.economics.metering``), deduplicated
   within the batch (an identical repeat is a replay, a different payload under one key is a 409);
2. insert them all with ``ON CONFLICT (key) DO NOTHING RETURNING key`` — on PostgreSQL through ``COPY``
   into a temporary staging table and one ``INSERT … SELECT``; elsewhere (SQLite) one multi-row INSERT;
3. the keys that were not inserted already existed: they are read back and compared with the batch —
   identical is a replay (counted once), different is a 409 and the whole transaction (nothing of the
   batch) is rolled back.

A concurrent batch holding the same key makes PostgreSQL wait for that transaction and then skip the
row (step 3 then sees it as a replay or a 409) — no "retry" error on PostgreSQL. On SQLite (one
writer at a time) the same race can only surface as an IntegrityError → 409 asking to retry.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

from sqlalchemy import select
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from zhisuan.billing import models as b
from zhisuan.billing import schemas as s
from zhisuan.billing.service import _ref_id, chunks, core_record
from zhisuan.core.economics import metering as me
from zhisuan.errors import Conflict, InvalidInput
from zhisuan.identity import audit
from zhisuan.identity.access import Principal, require_role
from zhisuan.identity.models import ApiKey, Tenant, User
from zhisuan.inventory.models import Provider
from zhisuan.market.service import econ_errors
from zhisuan.store.base import utcnow

COLUMNS = ("key", "source_kind", "source_id", "tenant_id", "provider_id", "model", "pricing_model", "tier",
           "term_months", "start", "end", "quantity", "pflops_seconds", "api_key_id", "requests", "recorded_at")
ZERO = Decimal(0)
FUTURE_SLACK = timedelta(minutes=5)


def ingest_tokens(session: Session, principal: Principal, body: s.TokenBatch, now: datetime) -> s.IngestResult:
    """Record a batch of token events (module doc): a replayed event is counted once; a key reused with
    a different payload (tokens, model, … or API key) is a 409 and nothing of the batch is written."""
    require_role(principal, "operator")
    events, key_of = _token_events(session, body, now)
    with econ_errors():
        staged = me.UsageLedger().append(me.meter_tokens(events))
    records = list(staged.accepted)
    extra = _extra_columns(records, key_of, {e.event_id: e.requests for e in body.events})
    inserted = _insert(session, records, extra)
    existing = [r for r in records if r.key not in inserted]
    _check_replays(session, existing, extra)
    accepted = [r.key for r in records if r.key in inserted]
    replayed = [r.key for r in existing] + [r.key for r in staged.replayed]
    if accepted:
        audit.record(session, principal, "usage.ingest", "usage", f"{len(accepted)} records",
                     detail={"events": len(body.events), "replayed": len(replayed)})
    status = "accepted" if not replayed else ("replayed" if not accepted else "partly replayed")
    return s.IngestResult(status=status, accepted=accepted, replayed=replayed)


def _extra_columns(records: Sequence[me.UsageRecord], key_of: dict[str, str | None],
                   requests_of: dict[str, int]) -> dict[str, tuple[str | None, int]]:
    """Per record key: its API key id and the requests it holds — all of its event's on the event's first
    record (':in', or ':out' when there is no input), none on the second, so Σ requests counts each once."""
    extra, seen = {}, set()
    for record in records:
        first = record.source_id not in seen
        seen.add(record.source_id)
        extra[record.key] = (key_of[record.source_id], requests_of[record.source_id] if first else 0)
    return extra


def _row(record: me.UsageRecord, extra: tuple[str | None, int], recorded_at: datetime) -> tuple[Any, ...]:
    scope = record.scope
    return (record.key, "tokens", record.source_id, int(scope.tenant_id), int(scope.provider_id), scope.model,
            str(scope.pricing_model), str(scope.tier), scope.term_months, record.start, record.end,
            record.quantity, record.pflops_seconds, *extra, recorded_at)


def _insert(session: Session, records: Sequence[me.UsageRecord], extra: dict[str, tuple[str | None, int]]) -> set[str]:
    """Insert ``records`` unless their key exists; returns the keys inserted."""
    if not records:
        return set()
    at = utcnow()
    rows = [_row(r, extra[r.key], at) for r in records]
    connection = session.connection()
    if connection.dialect.name == "postgresql":
        return _copy_insert(connection.connection.driver_connection, rows)
    statement = sqlite_insert(b.UsageRecord).on_conflict_do_nothing(index_elements=["key"]).returning(
        b.UsageRecord.key)
    try:
        result = session.execute(statement, [dict(zip(COLUMNS, row, strict=True)) for row in rows])
    except IntegrityError as error:
        raise Conflict("these usage events are being recorded concurrently; retry", field="events") from error
    return set(result.scalars())


def _copy_insert(raw: Any, rows: list[tuple[Any, ...]]) -> set[str]:
    """PostgreSQL: COPY into a staging table dropped at commit, then one INSERT … ON CONFLICT DO NOTHING."""
    names = ", ".join(f'"{c}"' for c in COLUMNS)
    with raw.cursor() as cursor:
        cursor.execute(f"CREATE TEMP TABLE usage_stage ON COMMIT DROP AS SELECT {names} FROM usage_records "
                       "WITH NO DATA")
        with cursor.copy(f"COPY usage_stage ({names}) FROM STDIN") as copy:
            for row in rows:
                copy.write_row(row[:12] + (str(row[12]),) + row[13:])
        cursor.execute(f"INSERT INTO usage_records ({names}) SELECT {names} FROM usage_stage "
                       "ON CONFLICT (key) DO NOTHING RETURNING key")
        inserted = {key for (key,) in cursor.fetchall()}
        cursor.execute("DROP TABLE usage_stage")  # a second batch in this transaction stages afresh
    return inserted


def _check_replays(session: Session, records: Sequence[me.UsageRecord],
                   extra: dict[str, tuple[str | None, int]]) -> None:
    """Each of ``records`` already exists: identical (a replay) or a 409 naming the key."""
    if not records:
        return
    stored = {row.key: row for chunk in chunks([r.key for r in records]) for row in session.execute(
        select(b.UsageRecord).where(b.UsageRecord.key.in_(chunk))).scalars()}
    for record in records:
        row = stored.get(record.key)
        if row is None:  # inserted by a transaction that has since rolled back
            raise Conflict("these usage events are being recorded concurrently; retry", field="events")
        if core_record(row) != record or row.requests != extra[record.key][1]:
            raise Conflict(f"usage key '{record.key}' reused with a different payload", field="events")
        if row.api_key_id != extra[record.key][0]:
            raise Conflict(f"usage key '{record.key}' reused with a different payload (api_key_id)", field="events")


def _token_events(session: Session, body: s.TokenBatch,
                  now: datetime) -> tuple[list[me.TokenEvent], dict[str, str | None]]:
    """The batch as core token events (validated), and each event id's API key id."""
    tenants: dict[str, int] = {}
    providers: dict[str, int] = {}
    key_tenants: dict[str, int | None] = {}
    events: list[me.TokenEvent] = []
    key_of: dict[str, str | None] = {}
    requests_of: dict[str, int] = {}
    latest = now + FUTURE_SLACK
    for n, event in enumerate(body.events):
        if event.input_tokens + event.output_tokens == 0:
            raise InvalidInput("an event must count some tokens", field=f"events.{n}.input_tokens")
        if event.at > latest:
            raise InvalidInput("event is in the future", field=f"events.{n}.at")
        if event.tenant not in tenants:
            tenants[event.tenant] = _ref_id(session, Tenant, event.tenant, f"events.{n}.tenant")
        if event.provider not in providers:
            providers[event.provider] = _ref_id(session, Provider, event.provider, f"events.{n}.provider")
        if event.api_key_id is not None and \
                _key_tenant(session, event.api_key_id, f"events.{n}.api_key_id", key_tenants) != tenants[event.tenant]:
            raise InvalidInput(f"API key '{event.api_key_id}' does not belong to tenant '{event.tenant}'",
                               field=f"events.{n}.api_key_id")
        if key_of.setdefault(event.event_id, event.api_key_id) != event.api_key_id:
            raise Conflict(f"event '{event.event_id}' is sent twice with different API keys",
                           field=f"events.{n}.api_key_id")
        if requests_of.setdefault(event.event_id, event.requests) != event.requests:
            raise Conflict(f"event '{event.event_id}' is sent twice with different request counts",
                           field=f"events.{n}.requests")
        with econ_errors(f"events.{n}: "):
            events.append(me.TokenEvent(event.event_id, str(tenants[event.tenant]), str(providers[event.provider]),
                                        event.model, event.at, event.input_tokens, event.output_tokens))
    return events, key_of


def _key_tenant(session: Session, key_id: str, field: str, cache: dict[str, int | None]) -> int | None:
    """The tenant of the user owning API key ``key_id`` (revoked keys count: usage outlives them)."""
    if key_id not in cache:
        row = session.execute(select(User.tenant_id).join(ApiKey, ApiKey.user_id == User.id)
                              .where(ApiKey.key_id == key_id)).first()
        if row is None:
            raise InvalidInput(f"API key '{key_id}' not found", field=field)
        cache[key_id] = row[0]
    return cache[key_id]
