"""The spool's pre-zeroed segment format: end of data at the first NUL, recovery after torn writes,
reopening, rolling, and the inline ("alone") commit path."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Sequence
from pathlib import Path

import pytest

from zhisuan.gateway.http_sink import SinkUnavailable
from zhisuan.gateway.protocols import UsageEvent
from zhisuan.gateway.usage import (
    PREPARED_SUFFIX,
    InMemoryUsageSink,
    SpoolShipper,
    UsageSpool,
    data_end,
    decode_event,
    decode_events,
    encode_event,
    segment_name,
    segments,
    valid_end,
)


def event(i: int) -> UsageEvent:
    return UsageEvent(f"e{i}", "k", "t", "m", "r", 7, i, False, "ok", 0.0, 0.0)


async def ship(directory: Path) -> list[str]:
    sink = InMemoryUsageSink()
    await SpoolShipper(directory, sink).ship_all()
    assert sink.duplicates == 0
    return sorted(sink.events, key=lambda e: int(e[1:]))


def test_a_segment_is_allocated_full_size_and_zeroed(tmp_path: Path) -> None:
    async def go() -> None:
        spool = UsageSpool(tmp_path, segment_bytes=4096)
        spool.open()
        await spool.append(event(1))
        data = (tmp_path / segment_name(spool.segment)).read_bytes()
        line = encode_event(event(1))
        assert len(data) == 4096  # written in place: the file's size never changes
        assert data[: len(line)] == line and data[len(line) :] == bytes(4096 - len(line))
        spool.close()

    asyncio.run(go())


def test_end_of_data_is_the_last_newline_before_the_first_nul() -> None:
    assert data_end(b'{"a":1}\n{"b":2}\n\0\0\0') == 16
    assert data_end(b'{"a":1}\n{"b"\0\0') == 8  # a torn line is not data
    assert data_end(b'{"a":1}\n\0\0{"x":9}\n') == 8  # bytes after a hole are not data either
    assert data_end(b'{"a":1}\n') == 8  # a cut segment has no NUL at all
    assert data_end(b"\0" * 10) == 0


def test_recovery_cuts_a_torn_line_and_stray_bytes_after_a_hole(tmp_path: Path) -> None:
    async def go() -> None:
        spool = UsageSpool(tmp_path, segment_bytes=8192)
        spool.open()
        for i in range(3):
            await spool.append(event(i))
        path = tmp_path / segment_name(spool.segment)
        end = 3 * len(encode_event(event(0)))
        spool.close()
        # A kill mid-write left half a line; a machine crash left a later block after a hole.
        with open(path, "r+b") as f:
            f.seek(end)
            f.write(b'{"event_id":"torn","key')
            f.seek(6000)
            f.write(encode_event(event(99)))
        spool = UsageSpool(tmp_path, segment_bytes=8192)
        spool.open()
        assert path.stat().st_size == end  # the old segment is cut after its last good line
        assert spool.segment == segments(tmp_path)[-1] > segments(tmp_path)[0]
        await spool.append(event(3))
        spool.close()
        assert await ship(tmp_path) == ["e0", "e1", "e2", "e3"]

    asyncio.run(go())


def test_recovery_cuts_at_a_complete_line_that_does_not_parse(tmp_path: Path) -> None:
    good = encode_event(event(1))
    assert valid_end(good + b'{"event_id":"x","ke\n' + encode_event(event(2))) == len(good)

    async def go() -> None:
        spool = UsageSpool(tmp_path, segment_bytes=8192)
        spool.open()
        await spool.append(event(1))
        spool.close()
        with open(tmp_path / segment_name(spool.segment), "r+b") as f:
            f.seek(len(good))
            f.write(b"garbage from a torn page\n")
        spool = UsageSpool(tmp_path, segment_bytes=8192)
        spool.open()
        spool.close()
        assert await ship(tmp_path) == ["e1"]

    asyncio.run(go())


def test_reopen_after_a_clean_close_and_after_shipping_continues_the_numbering(tmp_path: Path) -> None:
    async def go() -> None:
        for round_ in range(3):
            spool = UsageSpool(tmp_path, segment_bytes=8192)
            spool.open()
            first = spool.segment
            for i in range(2):
                await spool.append(event(round_ * 10 + i))
            spool.close()
            if round_ == 1:
                assert await ship(tmp_path) == ["e0", "e1", "e10", "e11"]
            assert first > 0 or round_ == 0
        # Only what round 2 wrote is left to ship; shipped segments were removed.
        sink = InMemoryUsageSink()
        await SpoolShipper(tmp_path, sink).ship_all()
        assert sorted(sink.events) == ["e20", "e21"]
        assert not list(tmp_path.glob(f"*{PREPARED_SUFFIX}"))

    asyncio.run(go())


def test_segments_roll_when_a_batch_does_not_fit_and_a_prepared_file_is_renamed_in(tmp_path: Path) -> None:
    async def go() -> None:
        line = len(encode_event(event(10)))
        spool = UsageSpool(tmp_path, segment_bytes=3 * line)
        spool.open()
        first = spool.segment
        for i in range(10, 20):  # same-length lines: three fit in a segment
            await spool.append(event(i))
        assert spool.segment == first + 3
        sizes = [(tmp_path / segment_name(s)).stat().st_size for s in segments(tmp_path)]
        assert sizes == [3 * line] * 4
        # A batch larger than a segment goes whole into a fresh one, which grows to hold it.
        await asyncio.gather(*(spool.append(event(i)) for i in range(20, 30)))
        assert (tmp_path / segment_name(spool.segment)).stat().st_size == 10 * line
        spool.close()
        assert await ship(tmp_path) == [f"e{i}" for i in range(10, 30)]
        assert segments(tmp_path) == [spool.segment]

    asyncio.run(go())


def test_a_stale_prepared_file_is_removed_on_open(tmp_path: Path) -> None:
    (tmp_path / f"abc{PREPARED_SUFFIX}").write_bytes(b"\0" * 10)
    spool = UsageSpool(tmp_path, segment_bytes=4096)
    spool.open()
    spool.close()
    assert not list(tmp_path.glob(f"*{PREPARED_SUFFIX}"))


def test_alone_commits_inline_and_concurrent_appends_are_group_committed(tmp_path: Path) -> None:
    async def go() -> None:
        spool = UsageSpool(tmp_path, segment_bytes=1 << 16)
        spool.open()
        fut = spool.append(event(1), alone=True)
        assert fut.done() and fut.exception() is None  # committed before append returned
        assert spool.inline_commits == 1
        await asyncio.gather(*(spool.append(event(i)) for i in range(2, 12)))
        assert spool.inline_commits == 1 and spool.committed_events == 11
        # While a group commit is under way, an "alone" append joins the queue (one writer at a time).
        futs = [spool.append(event(12)), spool.append(event(13), alone=True)]
        await asyncio.gather(*futs)
        assert spool.inline_commits == 1
        spool.close()
        assert await ship(tmp_path) == [f"e{i}" for i in range(1, 14)]

    asyncio.run(go())


def test_shipper_does_not_skip_lines_written_just_before_a_roll(tmp_path: Path) -> None:
    """The writer adds a line to segment n and starts n+1 while the shipper is between reading n
    (nothing new yet) and looking for later segments: n must not be abandoned with a line unread."""

    async def go() -> None:
        spool = UsageSpool(tmp_path, segment_bytes=8192)
        spool.open()
        n = spool.segment
        sink = InMemoryUsageSink()
        shipper = SpoolShipper(tmp_path, sink)
        real_read = shipper._read

        def read_then_writer_rolls(segment: int, offset: int) -> tuple[list[bytes], int]:
            got = real_read(segment, offset)
            if not (tmp_path / segment_name(n + 1)).exists():
                with open(tmp_path / segment_name(n), "r+b") as f:
                    f.write(encode_event(event(1)))
                (tmp_path / segment_name(n + 1)).write_bytes(bytes(100))
            return got

        shipper._read = read_then_writer_rolls  # type: ignore[method-assign]
        await shipper.ship_all()
        await shipper.ship_all()
        assert sorted(sink.events) == ["e1"]
        spool.close()

    asyncio.run(go())


class FlakySink(InMemoryUsageSink):
    """Fault injection: refuses the ``fail_on``-th batch once (the control plane was away)."""

    def __init__(self, fail_on: int) -> None:
        super().__init__()
        self.fail_on, self.batches = fail_on, 0

    async def ingest(self, events: Sequence[UsageEvent]) -> None:
        self.batches += 1
        if self.batches == self.fail_on:
            raise SinkUnavailable("away")
        await super().ingest(events)


def test_the_batch_read_ahead_while_one_is_sent_ships_each_event_once_in_order_across_a_failure(
        tmp_path: Path) -> None:
    """The shipper reads and decodes batch n+1 while the sink takes batch n. A refused batch keeps its
    spool position and bounds: the batch read ahead is dropped, nothing is skipped nor sent twice."""

    async def go() -> None:
        spool = UsageSpool(tmp_path, fsync=False)
        spool.open()
        for i in range(250):
            spool.append(event(i))
        await spool.drain()
        sink = FlakySink(fail_on=2)
        shipper = SpoolShipper(tmp_path, sink, batch_size=100)
        order: list[str] = []
        real_ingest = sink.ingest

        async def recording(events: Sequence[UsageEvent]) -> None:
            await real_ingest(events)
            order.extend(e.event_id for e in events)

        sink.ingest = recording  # type: ignore[method-assign]
        assert await shipper.ship_once() == 100
        assert shipper._next is not None and len(shipper._next[3]) == 100  # batch 2, read ahead
        with pytest.raises(SinkUnavailable):
            await shipper.ship_once()
        assert await shipper.ship_all() == 150
        assert order == [f"e{i}" for i in range(250)] and sink.duplicates == 0
        spool.close()

    asyncio.run(go())


def test_a_batch_decodes_in_one_parse_or_line_by_line_with_the_same_result_and_errors() -> None:
    lines = [encode_event(event(i)).rstrip(b"\n") for i in range(5)]
    assert decode_events(lines) == [decode_event(line) for line in lines] == [event(i) for i in range(5)]
    two_in_one = lines[0] + b"," + lines[1]  # would split into two values in the joined parse
    with pytest.raises(json.JSONDecodeError):
        decode_events([two_in_one, lines[2]])
    with pytest.raises(json.JSONDecodeError):
        decode_events([lines[0], b"{not json"])
