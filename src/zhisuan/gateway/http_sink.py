"""A ``UsageSink`` that ships a gateway's usage to the control plane: ``POST /api/v1/usage/token-events``.

The body is ``{"events": [TokenEventIn, …]}``. With ``rollup=True`` (what ``zhisuan gateway`` uses) it is
built by ``billing.gateway_sink.rolled_up_token_events``: the batch's requests summed per tenant, API
key, model and UTC second —
exact, and at 10,000 requests/s a few dozen events instead of 10,000, which is what lets one control
plane keep up with many gateways (BENCHMARKS.md "Usage ingestion"). A group of one keeps the request's
own id (``gw:<gateway event id>``); a larger group is ``gw:<first id>:r<n>`` with ``requests`` = n, the
same for the same batch (the shipper fixes a batch's bounds before sending it), so a re-sent batch
counts once — but a re-sent *part* of a batch would not, hence off by default for other callers.
``rollup=False`` (the default) sends one event per request (``token_events``, as the in-process sink
records), safe to re-send in any grouping. Requests carry at most ``max_events`` events (the API takes 1000 and 1 MiB).

What a response means (the shipper calls ``ingest`` with one spooled batch, off the request path):

- 2xx: recorded. A re-sent event is answered ``replayed`` and counted once, so re-sending after a crash
  or a lost response is always safe.
- Unavailable — connection errors, timeouts, 5xx, 401/403 (a wrong or revoked token is the operator's to
  fix), 404/405 (not a zhisuan control plane), 408, 429, and 409 whose message asks to retry (the same
  event being recorded concurrently): ``SinkUnavailable`` is raised, the shipper keeps its spool position
  and retries later. The spool grows meanwhile; nothing is dropped.
- Refused content — 400, 409, 413, 422 — never blocks the spool:
  - a 422 naming ``events.N.api_key_id`` (the key was deleted or its user moved to another tenant, or the
    control plane predates the field): event N is re-sent without the key; the tenant is still billed;
  - a 422 naming another field of ``events.N``: event N is set aside and the rest re-sent;
  - a refusal naming no event (e.g. 409, an event id re-used with another payload): the request is split
    in halves until each refused event is alone, and that event is set aside.
  Set aside = appended, with the status and error, to ``rejected-usage.jsonl`` in ``dead_letter_dir``
  (fsync'd before the batch counts as shipped), for an operator to inspect and re-post.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import re
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx

from zhisuan.gateway.protocols import UsageEvent

log = logging.getLogger("zhisuan.gateway.usage")
PATH = "/api/v1/usage/token-events"
REJECTED_FILE = "rejected-usage.jsonl"
CONTENT_REFUSALS = frozenset({400, 409, 413, 422})
EVENT_FIELD = re.compile(r"^events\.(\d+)(?:\.(.+))?$")


class SinkUnavailable(Exception):
    """The control plane cannot take usage now; the batch stays spooled and is re-sent later."""


def is_content_refusal(status: int, error: dict[str, Any]) -> bool:
    """Whether a non-2xx answer refuses the events themselves (see the module doc) rather than says
    the control plane cannot take them now."""
    if status == 409 and "retry" in str(error.get("message", "")).lower():
        return False
    return status in CONTENT_REFUSALS


def event_field(error: dict[str, Any]) -> tuple[int, str] | None:
    """``events.3.tenant`` → (3, "tenant"); None when the error names no event."""
    match = EVENT_FIELD.match(str(error.get("field") or ""))
    return (int(match.group(1)), match.group(2) or "") if match else None


class HttpUsageSink:
    """``UsageSink`` posting to a control plane (see the module doc)."""

    def __init__(self, server: str, token: str, *, dead_letter_dir: Path, provider: str = "local",
                 max_events: int = 1000, timeout_s: float = 10.0, rollup: bool = False) -> None:
        self.url = server.rstrip("/") + PATH
        self.token = token
        self.provider = provider
        self.dead_letter = Path(dead_letter_dir) / REJECTED_FILE
        self.max_events = max_events
        self.timeout_s = timeout_s
        self.rollup = rollup
        self.requests = 0
        self.rejected = 0
        self._client: httpx.AsyncClient | None = None
        self._down: str | None = None  # why the control plane last could not take usage (logged once)

    async def ingest(self, events: Sequence[UsageEvent]) -> None:
        from zhisuan.billing.gateway_sink import rolled_up_token_events, token_events

        batch: list[Any] = (rolled_up_token_events if self.rollup else token_events)(events, self.provider)
        for start in range(0, len(batch), self.max_events):
            await self._deliver(batch[start:start + self.max_events])

    async def ingest_rows(self, rows: Sequence[list[Any]]) -> None:
        """``ingest`` of spool rows (``gateway.usage.decode_rows``, what ``SpoolShipper`` hands a sink that
        takes them): rolled up straight from the rows, without an ``UsageEvent`` per request."""
        if not self.rollup:
            await self.ingest([UsageEvent(*row) for row in rows])
            return
        from zhisuan.billing.gateway_sink import rolled_up_rows

        batch = rolled_up_rows(rows, self.provider)
        for start in range(0, len(batch), self.max_events):
            await self._deliver(batch[start:start + self.max_events])

    async def _deliver(self, batch: list[Any]) -> None:
        """Post ``batch``; on a refusal, narrow it down (module doc) until all that can be recorded is."""
        pending = [batch]
        while pending:
            part = pending.pop()
            refusal = await self._post(part)
            if refusal is not None:
                pending.extend(await self._narrow(part, *refusal))

    async def _narrow(self, part: list[Any], status: int, error: dict[str, Any]) -> list[list[Any]]:
        """What to re-send after ``part`` was refused; sets aside the event(s) found at fault."""
        named = event_field(error)
        if named is not None and named[0] < len(part):
            n, field = named
            rest = part[:n] + part[n + 1:]
            if field == "api_key_id" and part[n].api_key_id is not None:
                log.warning("usage: event %s re-sent without API key %s: %s", part[n].event_id, part[n].api_key_id,
                            error.get("message"))
                return [[*rest, part[n].model_copy(update={"api_key_id": None})]]
            await self._set_aside([part[n]], status, error)
            return [rest] if rest else []
        if len(part) == 1:
            await self._set_aside(part, status, error)
            return []
        middle = len(part) // 2
        return [part[:middle], part[middle:]]

    async def _post(self, part: list[Any]) -> tuple[int, dict[str, Any]] | None:
        """None when recorded; (status, error) when the content is refused; raises SinkUnavailable."""
        body = {"events": [e.model_dump(mode="json", exclude_defaults=True) for e in part]}
        self.requests += 1
        try:
            response = await self._http().post(self.url, json=body, headers={"Authorization": f"Bearer {self.token}"})
        except httpx.HTTPError as exc:
            raise self._unavailable(f"cannot reach {self.url}: {exc!r}") from exc
        if response.is_success:
            if self._down is not None:
                log.info("usage: %s takes usage again", self.url)
                self._down = None
            return None
        try:
            error = response.json().get("error") or {}
        except (ValueError, AttributeError):
            error = {"message": response.text[:500]}
        if not is_content_refusal(response.status_code, error):
            raise self._unavailable(f"{self.url} answered {response.status_code}: {error.get('message')}")
        return response.status_code, error

    def _unavailable(self, why: str) -> SinkUnavailable:
        # The shipper retries quietly; say once per outage why usage is piling up in the spool.
        if self._down is None:
            log.warning("usage: kept in the spool until the control plane takes it: %s", why)
        self._down = why
        return SinkUnavailable(why)

    async def _set_aside(self, events: list[Any], status: int, error: dict[str, Any]) -> None:
        at = datetime.now(UTC).isoformat()
        lines = [json.dumps({"at": at, "status": status, "error": error, "event": e.model_dump(mode="json")})
                 for e in events]
        await asyncio.to_thread(self._append, "".join(line + "\n" for line in lines))
        self.rejected += len(events)
        for e in events:
            log.error("usage: event %s refused by the control plane (%s: %s); kept in %s", e.event_id, status,
                      error.get("message"), self.dead_letter)

    def _append(self, text: str) -> None:
        self.dead_letter.parent.mkdir(parents=True, exist_ok=True)
        with open(self.dead_letter, "a", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())

    def _http(self) -> httpx.AsyncClient:
        if self._client is None:
            self._client = httpx.AsyncClient(timeout=self.timeout_s)
        return self._client

    async def aclose(self) -> None:
        if self._client is not None:
            await self._client.aclose()
            self._client = None
