"""Exact metering: every forwarded request produces exactly one ``UsageEvent``.

Path of an event:
1. ``UsageSpool.append`` — the event becomes a JSON line in a local append-only segment file. Lines
   are group-committed: one ``write`` per batch, and then
   - ``fsync=True`` (default): one ``fdatasync`` (worker thread) before the batch counts as committed;
   - ``fsync=False``: committed once written (in the page cache: it survives a kill of the gateway
     process), ``fdatasync`` follows within ``sync_interval_s`` (the window a machine crash can lose).
   The gateway sends the last bytes of a response (the body of a non-streaming response, the final
   ``data: [DONE]`` of a stream) only after the batch holding its event is committed, so an
   acknowledged request's usage survives a kill of the gateway (and, with fsync, of the machine).
2. ``SpoolShipper`` — off the request path, reads committed lines from the saved position, sends
   them in batches to a ``UsageSink``, then saves the new position (atomic rename). A crash between
   the two re-sends a batch; sinks are idempotent on ``event_id``, so nothing counts twice.

A line torn by a crash mid-write was never acknowledged; the next ``open`` truncates it away.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from zhisuan.gateway.protocols import UsageEvent, UsageSink

SEGMENT_PREFIX = "usage-"
SEGMENT_SUFFIX = ".jsonl"
STATE_FILE = "shipped.json"


def segment_name(n: int) -> str:
    return f"{SEGMENT_PREFIX}{n:012d}{SEGMENT_SUFFIX}"


def segments(directory: Path) -> list[int]:
    out = []
    for p in directory.glob(f"{SEGMENT_PREFIX}*{SEGMENT_SUFFIX}"):
        with contextlib.suppress(ValueError):
            out.append(int(p.name[len(SEGMENT_PREFIX) : -len(SEGMENT_SUFFIX)]))
    return sorted(out)


def encode_event(e: UsageEvent) -> bytes:
    return json.dumps(e.__dict__, separators=(",", ":")).encode() + b"\n"


def decode_event(line: bytes) -> UsageEvent:
    return UsageEvent(**json.loads(line))


def _quiet_sync(fd: int) -> None:
    with contextlib.suppress(OSError):  # closed or rolled meanwhile: close() synced it
        os.fdatasync(fd)


class UsageSpool:
    """The gateway's local, append-only, group-committed usage log (one per gateway process)."""

    def __init__(self, directory: Path, *, fsync: bool = True, segment_bytes: int = 64 << 20,
                 sync_interval_s: float = 0.05) -> None:
        self.directory = Path(directory)
        self.fsync = fsync
        self.sync_interval_s = sync_interval_s
        self._sync_handle: asyncio.TimerHandle | None = None
        self.segment_bytes = segment_bytes
        self._fd = -1
        self._segment = 0
        self._size = 0
        self._pending: list[bytes] = []
        self._waiters: list[asyncio.Future[None]] = []
        self._flushing = False
        self.committed_events = 0

    def open(self) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        existing = segments(self.directory)
        self._segment = existing[-1] if existing else 0
        path = self.directory / segment_name(self._segment)
        if path.exists():
            data = path.read_bytes()
            keep = data.rfind(b"\n") + 1
            if keep != len(data):  # a torn, unacknowledged last line
                os.truncate(path, keep)
        self._fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        self._size = os.fstat(self._fd).st_size

    def append(self, event: UsageEvent) -> asyncio.Future[None]:
        """Queue ``event``; the future resolves once it is committed to the spool."""
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._pending.append(encode_event(event))
        self._waiters.append(fut)
        if not self._flushing:
            self._flushing = True
            asyncio.ensure_future(self._flush_loop())
        return fut

    async def _flush_loop(self) -> None:
        loop = asyncio.get_running_loop()
        try:
            while self._pending:
                lines, self._pending = self._pending, []
                waiters, self._waiters = self._waiters, []
                try:
                    data = b"".join(lines)
                    os.write(self._fd, data)
                    self._size += len(data)
                    if self.fsync:
                        await loop.run_in_executor(None, os.fdatasync, self._fd)
                except OSError as exc:
                    for w in waiters:
                        if not w.done():
                            w.set_exception(exc)
                    continue
                self.committed_events += len(lines)
                if not self.fsync and self._sync_handle is None:
                    self._sync_handle = loop.call_later(self.sync_interval_s, self._background_sync)
                for w in waiters:
                    if not w.done():
                        w.set_result(None)
                if self._size >= self.segment_bytes:
                    self._roll()
        finally:
            self._flushing = False

    def _background_sync(self) -> None:
        self._sync_handle = None
        if self._fd >= 0:
            fd = self._fd
            asyncio.get_running_loop().run_in_executor(None, _quiet_sync, fd)

    def _roll(self) -> None:
        os.close(self._fd)
        self._segment += 1
        self._fd = os.open(self.directory / segment_name(self._segment), os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        self._size = 0

    async def drain(self) -> None:
        while self._flushing or self._pending:
            await asyncio.sleep(0.001)

    def close(self) -> None:
        if self._sync_handle is not None:
            self._sync_handle.cancel()
            self._sync_handle = None
        if self._fd >= 0:
            os.fdatasync(self._fd)
            os.close(self._fd)
            self._fd = -1


@dataclass
class SpoolShipper:
    """Ships committed spool lines to a sink, at least once, in order; remembers where it is."""

    directory: Path
    sink: UsageSink
    batch_size: int = 1000
    interval_s: float = 0.2
    shipped_events: int = 0
    _stopping: bool = field(default=False, repr=False)

    def _load(self) -> tuple[int, int]:
        try:
            state = json.loads((self.directory / STATE_FILE).read_text())
            return int(state["segment"]), int(state["offset"])
        except (OSError, ValueError, KeyError):
            existing = segments(self.directory)
            return (existing[0] if existing else 0), 0

    def _save(self, segment: int, offset: int) -> None:
        tmp = self.directory / (STATE_FILE + ".tmp")
        with open(tmp, "w") as f:
            f.write(json.dumps({"segment": segment, "offset": offset}))
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, self.directory / STATE_FILE)

    def _read(self, segment: int, offset: int) -> tuple[list[bytes], int]:
        path = self.directory / segment_name(segment)
        try:
            with open(path, "rb") as f:
                f.seek(offset)
                data = f.read(4 << 20)
        except FileNotFoundError:
            return [], offset
        end = data.rfind(b"\n") + 1
        lines = data[:end].splitlines()[: self.batch_size]
        consumed = sum(len(line) + 1 for line in lines)
        return lines, offset + consumed

    async def ship_once(self) -> int:
        """Ship one batch; returns how many events went out (0 = nothing new)."""
        segment, offset = self._load()
        lines, new_offset = self._read(segment, offset)
        if not lines:
            later = [s for s in segments(self.directory) if s > segment]
            if later:  # this segment is complete and fully shipped: move on
                self._save(later[0], 0)
                with contextlib.suppress(FileNotFoundError):
                    (self.directory / segment_name(segment)).unlink()
                return await self.ship_once()
            return 0
        events = [decode_event(line) for line in lines]
        await self.sink.ingest(events)
        self._save(segment, new_offset)
        self.shipped_events += len(events)
        return len(events)

    async def run(self) -> None:
        while not self._stopping:
            try:
                shipped = await self.ship_once()
            except Exception:  # the sink is down: keep the spool, try again later
                shipped = 0
                await asyncio.sleep(self.interval_s * 5)
            if shipped == 0:
                await asyncio.sleep(self.interval_s)

    async def ship_all(self) -> int:
        total = 0
        while (n := await self.ship_once()) > 0:
            total += n
        return total

    def stop(self) -> None:
        self._stopping = True


@dataclass
class InMemoryUsageSink:
    """An idempotent sink holding events in memory (tests, benchmarks, the one-box default until the
    billing ingestion API is wired in). ``duplicates`` counts re-sent events it ignored."""

    events: dict[str, UsageEvent] = field(default_factory=dict)
    duplicates: int = 0

    async def ingest(self, events: Sequence[UsageEvent]) -> None:
        for e in events:
            if e.event_id in self.events:
                self.duplicates += 1
            else:
                self.events[e.event_id] = e


class SqliteUsageSink:
    """A durable idempotent sink: one SQLite table keyed by ``event_id`` (INSERT OR IGNORE).
    The one-box stand-in until the billing ingestion API takes the events."""

    def __init__(self, path: Path) -> None:
        import sqlite3

        self.path = Path(path)
        self._db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute(
            "CREATE TABLE IF NOT EXISTS usage_events (event_id TEXT PRIMARY KEY, key_id TEXT, tenant_id TEXT,"
            " model TEXT, replica TEXT, prompt_tokens INTEGER, completion_tokens INTEGER, stream INTEGER,"
            " status TEXT, started_at REAL, ended_at REAL, estimated INTEGER, endpoint TEXT)")

    def _insert(self, events: Sequence[UsageEvent]) -> None:
        rows = [(e.event_id, e.key_id, e.tenant_id, e.model, e.replica, e.prompt_tokens, e.completion_tokens,
                 int(e.stream), e.status, e.started_at, e.ended_at, int(e.estimated), e.endpoint) for e in events]
        self._db.execute("BEGIN")
        self._db.executemany("INSERT OR IGNORE INTO usage_events VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?)", rows)
        self._db.execute("COMMIT")

    async def ingest(self, events: Sequence[UsageEvent]) -> None:
        await asyncio.get_running_loop().run_in_executor(None, self._insert, events)

    def count(self) -> int:
        return int(self._db.execute("SELECT count(*) FROM usage_events").fetchone()[0])

    def close(self) -> None:
        self._db.close()
