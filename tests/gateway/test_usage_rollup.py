"""Usage roll-up at the gateway (``billing.gateway_sink.rolled_up_token_events``) and the shipper's fixed
batch bounds that make a re-sent roll-up carry the same ids (``gateway.usage.SpoolShipper``)."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path

import pytest

from zhisuan.billing.gateway_sink import rolled_up_token_events
from zhisuan.gateway.protocols import UsageEvent
from zhisuan.gateway.usage import SpoolShipper, UsageSpool, segment_name

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
