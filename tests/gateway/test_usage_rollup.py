"""Usage roll-up at the gateway (``billing.gateway_sink.rolled_up_token_events``) and the shipper's fixed
batch bounds that make a re-sent roll-up carry the same ids (``gateway.usage.SpoolShipper``)."""

from __future__ import annotations

import asyncio
import json
import multiprocessing
import os
import signal
import sqlite3
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from zhisuan.billing.gateway_sink import event_row, rolled_up_rows, rolled_up_token_events
from zhisuan.gateway.protocols import UsageEvent
from zhisuan.gateway.usage import (
    SpoolShipper,
    UsageSpool,
    decode_event,
    decode_events,
    decode_rows,
    encode_event,
    segment_name,
)

T0 = datetime(2026, 12, 1, 10, 0, tzinfo=UTC).timestamp()


def request(n: int, key: str = "k1", model: str = "m", at: float = T0, prompt: int = 10, completion: int = 5,
            tenant: str = "tenant-acme") -> UsageEvent:
    return UsageEvent(f"g-{n}", key, tenant, model, "r", prompt, completion, False, "ok", at - 1, at)


@pytest.mark.parametrize(("events", "expected"), [
    # (id, key, model, at, input, output, requests)
    ([request(1)], [("gw:g-1", "k1", "m", T0, 10, 5, 1)]),
    ([request(1), request(2, at=T0 + 0.9, prompt=1), request(3, at=T0 + 1.0)],  # 3 is the next second
     [("gw:g-1:r2", "k1", "m", T0, 11, 10, 2), ("gw:g-3", "k1", "m", T0 + 1, 10, 5, 1)]),
    ([request(1), request(2, key="k2"), request(3, model="m2"), request(4, key="k2")],
     [("gw:g-1", "k1", "m", T0, 10, 5, 1), ("gw:g-2:r2", "k2", "m", T0, 20, 10, 2),
      ("gw:g-3", "k1", "m2", T0, 10, 5, 1)]),
    ([request(1, prompt=0, completion=0), request(2, tenant="operator"), request(3, key="")],  # nothing billable,
     [("gw:g-3", None, "m", T0, 10, 5, 1)]),                                                   # not a tenant; no key
])
def test_roll_up_sums_per_key_model_and_second(events: list[UsageEvent],
                                               expected: list[tuple[object, ...]]) -> None:
    rolled = rolled_up_token_events(events, "p1")
    assert [(e.event_id, e.api_key_id, e.model, e.at.timestamp(), e.input_tokens, e.output_tokens, e.requests)
            for e in rolled] == expected
    assert all(e.tenant == "acme" and e.provider == "p1" for e in rolled)
    assert rolled_up_token_events(events, "p1") == rolled  # the same batch, the same ids


class CrashingSink:
    """FAKE sink: records every batch it is given; the first ``crashes`` calls then fail, as if the
    gateway died after the control plane stored the batch but before the shipper saved its position."""

    def __init__(self, crashes: int) -> None:
        self.crashes = crashes
        self.batches: list[list[str]] = []

    async def ingest(self, events: Sequence[UsageEvent]) -> None:
        self.batches.append([e.event_id for e in rolled_up_token_events(events, "p1")])
        if self.crashes:
            self.crashes -= 1
            raise ConnectionError("FAKE: died before the position was saved")


def test_a_batch_re_sent_after_a_crash_is_the_same_batch(tmp_path: Path) -> None:
    """Without the saved batch end, the re-read would take the lines committed meanwhile too, and the
    roll-up would re-send the first second's requests under another id (counted twice)."""
    async def go() -> CrashingSink:
        spool = UsageSpool(tmp_path)
        spool.open()
        for n in range(3):
            await spool.append(request(n, at=T0 + 0.1 * n))
        sink = CrashingSink(crashes=1)
        with pytest.raises(ConnectionError):
            await SpoolShipper(tmp_path, sink).ship_once()
        for n in range(3, 6):  # more requests in the same second arrive before the gateway restarts
            await spool.append(request(n, at=T0 + 0.1 * n))
        await SpoolShipper(tmp_path, sink).ship_all()  # a new process: state from disk only
        spool.close()
        return sink

    sink = asyncio.run(go())
    assert sink.batches == [["gw:g-0:r3"], ["gw:g-0:r3"], ["gw:g-3:r3"]]


def test_an_archive_keeps_the_per_request_detail(tmp_path: Path) -> None:
    async def go() -> None:
        spool = UsageSpool(tmp_path / "spool", segment_bytes=4096)
        spool.open()
        first = spool.segment
        for n in range(40):  # ~100 bytes a line: several segments
            await spool.append(request(n))
        shipper = SpoolShipper(tmp_path / "spool", CrashingSink(crashes=0), archive_dir=tmp_path / "archive")
        await shipper.ship_all()
        assert (tmp_path / "archive" / segment_name(first)).exists()
        archived = b"".join(p.read_bytes() for p in sorted((tmp_path / "archive").iterdir()))
        assert all(f'"g-{n}"'.encode() in archived for n in range(10))
        spool.close()

    asyncio.run(go())


spool_requests = st.lists(st.builds(
    request, n=st.integers(0, 10**6), key=st.sampled_from(["k1", "k2", ""]), model=st.sampled_from(["m", "m2"]),
    at=st.floats(T0, T0 + 3, allow_nan=False), prompt=st.integers(0, 3), completion=st.integers(0, 3),
    tenant=st.sampled_from(["tenant-acme", "operator"])), max_size=40)


@given(spool_requests)
def test_rows_decoded_from_the_spool_roll_up_as_the_events_do(events: list[UsageEvent]) -> None:
    """The shipper's path (spool lines → ``decode_rows`` → ``rolled_up_rows``, no object per request)
    sends exactly what the events' roll-up sends."""
    lines = [encode_event(e).rstrip(b"\n") for e in events]
    rows = decode_rows(lines)
    assert decode_events(lines) == events
    assert rows == [list(event_row(e)) for e in events]
    assert rolled_up_rows(rows, "p1") == rolled_up_token_events(events, "p1")


@given(spool_requests)
def test_lines_written_as_objects_before_the_array_format_read_the_same(events: list[UsageEvent]) -> None:
    objects = [json.dumps(e.__dict__).encode() for e in events]
    arrays = [encode_event(e).rstrip(b"\n") for e in events]
    assert all(line.startswith(b"[") for line in arrays)
    assert decode_events(objects) == decode_events(arrays) == [decode_event(line) for line in objects] == events
    assert decode_rows(objects) == decode_rows(arrays)


def test_rows_decode_line_by_line_with_the_same_errors_when_the_joined_parse_fails() -> None:
    lines = [encode_event(request(n)).rstrip(b"\n") for n in range(3)]
    with pytest.raises(json.JSONDecodeError):
        decode_rows([lines[0] + b"," + lines[1], lines[2]])  # two values in one line
    for not_an_event in (b'{"event_id": "x"}', b'["x"]', b'"x"'):
        with pytest.raises(TypeError):
            decode_rows([lines[0], not_an_event])


class FakeControlPlane:
    """FAKE control plane for fault injection: takes rolled-up rows idempotently (key = the rolled-up
    event id; a replay must carry the same payload, else it counts a conflict), in SQLite so that what
    it stored outlives a killed shipper. ``hang_after``: after storing that many batches it never
    answers — the shipper is killed there, its batch stored but its spool position not saved."""

    def __init__(self, path: Path, hang_after: int | None = None) -> None:
        self.path = path
        self.hang_after = hang_after
        with sqlite3.connect(path) as db:
            db.execute("CREATE TABLE IF NOT EXISTS usage (id TEXT PRIMARY KEY, payload TEXT, requests INT,"
                       " input INT, output INT)")
            db.execute("CREATE TABLE IF NOT EXISTS seen (batches INT, replays INT, conflicts INT)")
            if db.execute("SELECT count(*) FROM seen").fetchone()[0] == 0:
                db.execute("INSERT INTO seen VALUES (0, 0, 0)")

    async def ingest(self, events: Sequence[UsageEvent]) -> None:
        await self.ingest_rows([list(event_row(e)) for e in events])

    async def ingest_rows(self, rows: Sequence[list[Any]]) -> None:
        with sqlite3.connect(self.path) as db:
            for e in rolled_up_rows(rows, "p1"):
                payload = e.model_dump_json()
                stored = db.execute("SELECT payload FROM usage WHERE id = ?", (e.event_id,)).fetchone()
                if stored is None:
                    db.execute("INSERT INTO usage VALUES (?, ?, ?, ?, ?)",
                               (e.event_id, payload, e.requests, e.input_tokens, e.output_tokens))
                else:
                    column = "replays" if stored[0] == payload else "conflicts"
                    db.execute(f"UPDATE seen SET {column} = {column} + 1")
            db.execute("UPDATE seen SET batches = batches + 1")
            batches = db.execute("SELECT batches FROM seen").fetchone()[0]
        if batches == self.hang_after:
            time.sleep(3600)

    def totals(self) -> tuple[int, int, int, int, int, int]:
        """(Σ requests, Σ input, Σ output, batches, replays, conflicts)."""
        with sqlite3.connect(self.path) as db:
            sums = db.execute("SELECT sum(requests), sum(input), sum(output) FROM usage").fetchone()
            seen = db.execute("SELECT * FROM seen").fetchone()
        return (*sums, *seen)


def _ship_until_killed(spool_dir: Path, db: Path) -> None:
    asyncio.run(SpoolShipper(spool_dir, FakeControlPlane(db, hang_after=3), batch_size=100).ship_all())


def test_a_shipper_killed_mid_batch_loses_nothing_and_counts_nothing_twice(tmp_path: Path) -> None:
    """A real process shipping rolled-up rows is SIGKILLed after the control plane stored its third batch
    and before it saved its position (with the fourth batch read ahead); a new shipper re-sends that
    batch under the same ids and goes on: every request counted once."""
    requests = [request(n, key=f"k{n % 3}", model=f"m{n % 2}", at=T0 + n / 150, prompt=n % 7, completion=1 + n % 5)
                for n in range(1000)]

    async def spool_them() -> None:
        spool = UsageSpool(tmp_path / "spool", fsync=False)
        spool.open()
        for e in requests:
            spool.append(e)
        await spool.drain()
        spool.close()

    asyncio.run(spool_them())
    db = tmp_path / "control-plane.sqlite"
    FakeControlPlane(db)
    shipper = multiprocessing.get_context("fork").Process(target=_ship_until_killed, args=(tmp_path / "spool", db))
    shipper.start()
    deadline = time.monotonic() + 60
    while FakeControlPlane(db).totals()[3] < 3 and time.monotonic() < deadline:
        time.sleep(0.02)
    os.kill(shipper.pid or 0, signal.SIGKILL)
    shipper.join()
    stored_before_restart = FakeControlPlane(db).totals()
    assert stored_before_restart[0] == 300 and stored_before_restart[3] == 3  # three batches, then the kill

    asyncio.run(SpoolShipper(tmp_path / "spool", FakeControlPlane(db), batch_size=100).ship_all())
    requests_, inputs, outputs, _, replays, conflicts = FakeControlPlane(db).totals()
    assert (requests_, inputs, outputs) == (len(requests), sum(e.prompt_tokens for e in requests),
                                            sum(e.completion_tokens for e in requests))
    assert replays > 0 and conflicts == 0  # the third batch went again, under the same ids and sums
