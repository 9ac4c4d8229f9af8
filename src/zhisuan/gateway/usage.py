"""Exact metering: every forwarded request produces exactly one ``UsageEvent``.

Path of an event:
1. ``UsageSpool.append`` — the event becomes a JSON line in the spool's current segment. Lines are
   group-committed: one ``pwrite`` per batch at the end of the data, and then
   - ``fsync=True`` (default): one ``fdatasync`` before the batch counts as committed — in a worker
     thread, so the loop serves other requests during the flush; but a request that is the only one
     in flight (``append(..., alone=True)``) is written and synced at once on the loop thread: no
     group to wait for and nobody to stall, and it saves a thread hop and several loop turns;
   - ``fsync=False``: committed once written (in the page cache: it survives a kill of the gateway
     process), ``fdatasync`` follows within ``sync_interval_s`` (the window a machine crash can lose).
   The gateway sends the last bytes of a response (the body of a non-streaming response, the final
   ``data: [DONE]`` of a stream) only after the batch holding its event is committed, so an
   acknowledged request's usage survives a kill of the gateway (and, with fsync, of the machine).
2. ``SpoolShipper`` — off the request path, reads committed lines from the saved position, saves the
   batch's end (``batch_end``), sends the batch to a ``UsageSink``, then saves the new position (atomic
   renames). A crash between the two re-sends exactly the same batch (the saved ``batch_end`` bounds
   the re-read even if more lines were committed since) — so a sink that rolls a batch up into sums
   (``HttpUsageSink``) re-sends the same sums under the same ids; sinks are idempotent on ``event_id``,
   so nothing counts twice. A finished segment is deleted, or moved to ``archive_dir`` when one is
   set (the per-request detail behind rolled-up usage, for audit; the operator prunes it).

Segment format (why: an ``fdatasync`` after an append must also commit the file's new size through
the filesystem journal; an overwrite inside allocated, written blocks needs no metadata, which
measured 40–70 µs cheaper per commit on ext4 — benchmarks/gateway/fsync_cost.py, BENCHMARKS.md):
- a segment ``usage-<n>.jsonl`` is created full size (``segment_bytes``) and filled with NUL bytes,
  fsync'd once, under a temporary ``*.zeroed`` name by a worker thread ahead of need, then renamed
  into place (directory fsync'd before any event in it is acknowledged);
- lines are written over the zeros, in order, from offset 0; the next segment starts when a batch
  would not fit (a single batch larger than a segment extends the file — slower, still correct);
- **end of data**: a segment's data ends at its first NUL byte (or at the end of the file), and only
  lines ending in a newline count. JSON lines never hold a NUL (``json.dumps`` escapes control bytes).
- the writer never touches segment n again once n+1 exists, so a reader that sees n+1 and then
  finds no new line in n is done with n.

Recovery (``UsageSpool.open``): a line torn by a crash mid-write was never acknowledged. The last
segment is cut (truncated, fsync'd) after its last complete line that parses — everything past the
first NUL or the first bad line, torn bytes and stray blocks a machine crash left after a hole, goes —
and writing resumes in a fresh segment, so a reopened segment is never written to again.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import operator
import os
import uuid
from collections.abc import Awaitable, Sequence
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, Protocol

from zhisuan.gateway.protocols import UsageEvent, UsageSink


class UsageRowSink(Protocol):
    async def ingest_rows(self, rows: Sequence[list[Any]]) -> None:
        """``UsageSink.ingest`` of spool rows (``decode_rows``) instead of events; idempotent alike."""
        ...

SEGMENT_PREFIX = "usage-"
SEGMENT_SUFFIX = ".jsonl"
STATE_FILE = "shipped.json"
PREPARED_SUFFIX = ".zeroed"
ZEROS = bytes(1 << 20)
READ_CHUNK = 64 << 10


def segment_name(n: int) -> str:
    return f"{SEGMENT_PREFIX}{n:012d}{SEGMENT_SUFFIX}"


def segments(directory: Path) -> list[int]:
    out = []
    for p in directory.glob(f"{SEGMENT_PREFIX}*{SEGMENT_SUFFIX}"):
        with contextlib.suppress(ValueError):
            out.append(int(p.name[len(SEGMENT_PREFIX) : -len(SEGMENT_SUFFIX)]))
    return sorted(out)


# A spool line is a JSON array of the event's fields in this order (new fields go at the end, with a
# default). Why not an object: the shipper parses every line it ships, and an array parses in about
# half the time of an object with its field names (and is half the bytes); the field names are here.
# Lines written as objects (before this format) are still read.
SPOOL_FIELDS = tuple(f.name for f in fields(UsageEvent))
_event_values = operator.attrgetter(*SPOOL_FIELDS)


def encode_event(e: UsageEvent) -> bytes:
    return json.dumps(_event_values(e), separators=(",", ":")).encode() + b"\n"


def event_of(value: object) -> UsageEvent:
    """A parsed spool line as an event: an array of ``SPOOL_FIELDS`` (or, written before, an object)."""
    if isinstance(value, list):
        return UsageEvent(*value)
    if isinstance(value, dict):
        return UsageEvent(**value)
    raise TypeError(f"a usage spool line is an array or an object, not {type(value).__name__}")


def decode_event(line: bytes) -> UsageEvent:
    return event_of(json.loads(line))


def _joined(lines: list[bytes]) -> list[Any] | None:
    """The lines' values in one JSON parse, or None when that parse does not give one value per line."""
    try:
        values = json.loads(b"[" + b",".join(lines) + b"]")
    except ValueError:
        return None
    return values if isinstance(values, list) and len(values) == len(lines) else None


def decode_events(lines: list[bytes]) -> list[UsageEvent]:
    """A batch of spool lines in one JSON parse: ``json.loads`` per line spends most of its time on
    per-call set-up (encoding detection, decoder dispatch) — ~3× the cost per event, and the
    shipper's largest cost (BENCHMARKS.md, "Usage ingestion"). A batch the joined parse refuses, or
    whose values do not match its lines one to one, is decoded line by line, raising as before."""
    values = _joined(lines)
    if values is None:
        return [decode_event(line) for line in lines]
    return [event_of(v) for v in values]


def decode_rows(lines: list[bytes]) -> list[list[Any]]:
    """A batch of spool lines as rows — lists of ``SPOOL_FIELDS`` values — in one JSON parse, without
    building an event per line (for a sink with ``ingest_rows``: building events was ~⅓ of the shipper's
    cost per request). Lines the joined parse refuses, or that are not complete rows (written as
    objects, or not events), go through ``decode_event``: converted, or raising as ``decode_events``."""
    width = len(SPOOL_FIELDS)
    values = _joined(lines)
    if values is not None and all(type(v) is list and len(v) == width for v in values):
        return values
    events = decode_events(lines)
    return [list(_event_values(e)) for e in events]


def data_end(data: bytes) -> int:
    """Length of the complete lines at the start of ``data``: up to the last ``\\n`` before the
    first NUL (the end-of-data rule of a pre-zeroed segment)."""
    nul = data.find(b"\0")
    return data.rfind(b"\n", 0, len(data) if nul < 0 else nul) + 1


def prepare_segment(path: Path, size: int) -> None:
    """Create ``path`` as ``size`` allocated, written, fsync'd NUL bytes (runs in a worker thread)."""
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        with contextlib.suppress(OSError):  # not every filesystem allocates; the zeros below do
            os.posix_fallocate(fd, 0, size)
        offset = 0
        while offset < size:
            offset += os.pwrite(fd, ZEROS[: size - offset], offset)
        os.fsync(fd)
    finally:
        os.close(fd)


def fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def pwrite_all(fd: int, data: bytes, offset: int) -> None:
    view = memoryview(data)
    while view:
        n = os.pwrite(fd, view, offset)
        view, offset = view[n:], offset + n


def valid_end(data: bytes) -> int:
    """End of the last complete, parseable line before the first NUL: what recovery keeps."""
    end = data_end(data)
    pos = 0
    while pos < end:
        nl = data.index(b"\n", pos)
        try:
            decode_event(data[pos:nl])
        except (ValueError, TypeError):
            return pos
        pos = nl + 1
    return end


def _quiet_sync(fd: int) -> None:
    with contextlib.suppress(OSError):  # closed or rolled meanwhile: close() synced it
        os.fdatasync(fd)


def _shipped_segment(directory: Path) -> int:
    try:
        return int(json.loads((directory / STATE_FILE).read_text())["segment"])
    except (OSError, ValueError, KeyError):
        return -1


class UsageSpool:
    """The gateway's local, pre-zeroed, group-committed usage log (one per gateway process)."""

    def __init__(self, directory: Path, *, fsync: bool = True, segment_bytes: int = 8 << 20,
                 sync_interval_s: float = 0.05) -> None:
        self.directory = Path(directory)
        self.fsync = fsync
        self.sync_interval_s = sync_interval_s
        self._sync_handle: asyncio.TimerHandle | None = None
        self.segment_bytes = segment_bytes
        self._fd = -1
        self._segment = 0
        self._pos = 0
        self._prepared: asyncio.Future[Path] | None = None
        self._pending: list[bytes] = []
        self._waiters: list[asyncio.Future[None]] = []
        self._flushing = False
        self.committed_events = 0
        self.inline_commits = 0

    @property
    def segment(self) -> int:
        return self._segment

    def open(self) -> None:
        """Recover the last segment (cut after its last good line) and start a fresh one."""
        self.directory.mkdir(parents=True, exist_ok=True)
        for stale in self.directory.glob(f"*{PREPARED_SUFFIX}"):  # a worker cut off mid-zeroing
            stale.unlink()
        existing = segments(self.directory)
        if existing:
            self._cut(self.directory / segment_name(existing[-1]))
        self._segment = max([*existing, _shipped_segment(self.directory)]) + 1
        tmp = self._prepared_path()
        prepare_segment(tmp, self.segment_bytes)
        self._install(tmp)

    def _cut(self, path: Path) -> None:
        data = path.read_bytes()
        keep = valid_end(data)
        if keep != len(data):
            os.truncate(path, keep)
            fd = os.open(path, os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)

    def _prepared_path(self) -> Path:
        return self.directory / f"{uuid.uuid4().hex}{PREPARED_SUFFIX}"

    def _install(self, prepared: Path) -> None:
        """Rename a prepared segment into place as ``self._segment`` and write from its start."""
        os.rename(prepared, self.directory / segment_name(self._segment))
        fsync_dir(self.directory)  # the name must be durable before an event in it is acknowledged
        self._fd = os.open(self.directory / segment_name(self._segment), os.O_RDWR)
        self._pos = 0

    def append(self, event: UsageEvent, *, alone: bool = False) -> asyncio.Future[None]:
        """Queue ``event``; the future resolves once it is committed to the spool.

        ``alone``: the caller is the only request in flight, so nothing could share a group commit
        or use the event loop meanwhile: write (and sync) right here, which saves a thread hop and
        several loop turns. Otherwise the batch is committed by ``_flush_loop`` (sync in a worker
        thread, the loop keeps serving other requests)."""
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        line = encode_event(event)
        if alone and not self._flushing and self._pos + len(line) <= self.segment_bytes:
            try:
                self._write(line)
                if self.fsync:
                    os.fdatasync(self._fd)
            except OSError as exc:
                fut.set_exception(exc)
                return fut
            self.inline_commits += 1
            self._committed(1)
            fut.set_result(None)
            return fut
        self._pending.append(line)
        self._waiters.append(fut)
        if not self._flushing:
            self._flushing = True
            asyncio.ensure_future(self._flush_loop())
        return fut

    def _write(self, data: bytes) -> None:
        pwrite_all(self._fd, data, self._pos)
        self._pos += len(data)

    def _committed(self, n: int) -> None:
        self.committed_events += n
        loop = asyncio.get_running_loop()
        if not self.fsync and self._sync_handle is None:
            self._sync_handle = loop.call_later(self.sync_interval_s, self._background_sync)
        if self._prepared is None and self._pos * 2 >= self.segment_bytes:  # zero the next one early
            self._prepared = loop.run_in_executor(None, self._prepare_next)

    def _prepare_next(self) -> Path:
        path = self._prepared_path()
        prepare_segment(path, self.segment_bytes)
        return path

    async def _flush_loop(self) -> None:
        loop = asyncio.get_running_loop()
        try:
            while self._pending:
                lines, self._pending = self._pending, []
                waiters, self._waiters = self._waiters, []
                try:
                    data = b"".join(lines)
                    if self._pos and self._pos + len(data) > self.segment_bytes:
                        await self._roll()
                    self._write(data)
                    if self.fsync:
                        await loop.run_in_executor(None, os.fdatasync, self._fd)
                except OSError as exc:
                    for w in waiters:
                        if not w.done():
                            w.set_exception(exc)
                    continue
                self._committed(len(lines))
                for w in waiters:
                    if not w.done():
                        w.set_result(None)
        finally:
            self._flushing = False

    async def _roll(self) -> None:
        loop = asyncio.get_running_loop()
        if self._prepared is None:
            self._prepared = loop.run_in_executor(None, self._prepare_next)
        try:
            prepared = await self._prepared
        finally:
            self._prepared = None  # a failed preparation is retried at the next roll
        old = self._fd
        self._segment += 1
        await loop.run_in_executor(None, self._install, prepared)
        await loop.run_in_executor(None, self._close_fd, old)

    @staticmethod
    def _close_fd(fd: int) -> None:
        try:
            os.fdatasync(fd)  # lines committed with fsync=False may still be only in the page cache
        finally:
            os.close(fd)

    def _background_sync(self) -> None:
        self._sync_handle = None
        if self._fd >= 0:
            fd = self._fd
            asyncio.get_running_loop().run_in_executor(None, _quiet_sync, fd)

    async def drain(self) -> None:
        while self._flushing or self._pending:
            await asyncio.sleep(0.001)

    def close(self) -> None:
        if self._sync_handle is not None:
            self._sync_handle.cancel()
            self._sync_handle = None
        if self._fd >= 0:
            self._close_fd(self._fd)
            self._fd = -1


@dataclass
class SpoolShipper:
    """Ships committed spool lines to a sink, at least once, in order; remembers where it is."""

    directory: Path
    sink: UsageSink
    batch_size: int = 10_000
    interval_s: float = 0.2
    archive_dir: Path | None = None
    shipped_events: int = 0
    _stopping: bool = field(default=False, repr=False)
    # The batch after the one being sent, read and decoded while the sink is busy with that one
    # (in a worker thread): (segment, offset it starts at, its lines' end, its events or rows).
    # Nothing on disk changes for it until it is sent in turn, so a crash loses only this work.
    _next: tuple[int, int, int, list[Any]] | None = field(default=None, repr=False)

    def _decode(self, lines: list[bytes]) -> list[Any]:
        """Rows for a sink that takes them (``UsageRowSink``: no object per request), else events."""
        return decode_rows(lines) if hasattr(self.sink, "ingest_rows") else decode_events(lines)

    def _send(self, batch: list[Any]) -> Awaitable[None]:
        ingest_rows = getattr(self.sink, "ingest_rows", None)
        return ingest_rows(batch) if ingest_rows is not None else self.sink.ingest(batch)

    def _load(self) -> tuple[int, int, int | None]:
        """(segment, offset, end of the batch in flight at a crash or None)."""
        try:
            state = json.loads((self.directory / STATE_FILE).read_text())
            end = state.get("batch_end")
            return int(state["segment"]), int(state["offset"]), None if end is None else int(end)
        except (OSError, ValueError, KeyError):
            existing = segments(self.directory)
            return (existing[0] if existing else 0), 0, None

    def _save(self, segment: int, offset: int, batch_end: int | None = None) -> None:
        tmp = self.directory / (STATE_FILE + ".tmp")
        state: dict[str, int] = {"segment": segment, "offset": offset}
        if batch_end is not None:
            state["batch_end"] = batch_end
        with open(tmp, "w") as f:
            f.write(json.dumps(state))
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, self.directory / STATE_FILE)

    def _read(self, segment: int, offset: int, end: int | None = None) -> tuple[list[bytes], int]:
        """Up to ``batch_size`` complete lines from ``offset`` (exactly those before ``end`` when given: a
        batch in flight at a crash), reading small chunks so that an idle poll of a mostly zero segment
        costs little."""
        path = self.directory / segment_name(segment)
        data = b""
        try:
            with open(path, "rb") as f:
                f.seek(offset)
                if end is not None:
                    data = f.read(end - offset)
                    lines = data[: data_end(data)].splitlines()
                    return lines, offset + sum(len(line) + 1 for line in lines)
                # Newlines counted per chunk and the chunks joined once: counting and growing the whole
                # buffer per chunk was quadratic in the batch (a tenth of the shipper's time).
                chunks: list[bytes] = []
                size = newlines = 0
                while size < (4 << 20):
                    chunk = f.read(READ_CHUNK)
                    chunks.append(chunk)
                    size, newlines = size + len(chunk), newlines + chunk.count(b"\n")
                    if len(chunk) < READ_CHUNK or b"\0" in chunk or newlines >= self.batch_size:
                        break
                data = b"".join(chunks)
        except FileNotFoundError:
            return [], offset
        lines = data[: data_end(data)].splitlines()[: self.batch_size]
        consumed = sum(len(line) + 1 for line in lines)
        return lines, offset + consumed

    async def ship_once(self) -> int:
        """Ship one batch; returns how many events went out (0 = nothing new)."""
        segment, offset, in_flight = self._load()
        # List before reading: the writer finishes a segment before the next one exists, so a
        # later segment seen *before* an empty read means this one is complete.
        later = [s for s in segments(self.directory) if s > segment]
        ahead, self._next = self._next, None
        if ahead is not None and in_flight is None and ahead[:2] == (segment, offset):
            new_offset, events = ahead[2], ahead[3]  # read and decoded while the previous batch was sent
        else:
            lines, new_offset = self._read(segment, offset) if in_flight is None else \
                self._read(segment, offset, in_flight)
            if not lines:
                if later:  # this segment is complete and fully shipped: move on
                    self._save(later[0], 0)
                    self._retire(segment)
                    return await self.ship_once()
                return 0
            events = self._decode(lines)
        if in_flight is None:
            self._save(segment, offset, new_offset)  # fix the batch's bounds before anything leaves
        # The next batch is read and decoded while the sink sends this one: the shipper's decoding
        # and the control plane's recording overlap instead of taking turns.
        sending = asyncio.ensure_future(self._send(events))
        try:
            self._next = await asyncio.to_thread(self._prepare, segment, new_offset)
        finally:
            await sending
        self._save(segment, new_offset)
        self.shipped_events += len(events)
        return len(events)

    def _prepare(self, segment: int, offset: int) -> tuple[int, int, int, list[Any]] | None:
        """The batch at ``offset`` read and decoded (``_next``), or None when there is none yet — or
        it cannot be decoded: then ``ship_once`` reads it again in turn and raises there, as it would
        have (the batch being sent still counts as sent)."""
        try:
            lines, end = self._read(segment, offset)
            return (segment, offset, end, self._decode(lines)) if lines else None
        except Exception:
            return None

    def _retire(self, segment: int) -> None:
        path = self.directory / segment_name(segment)
        with contextlib.suppress(FileNotFoundError):
            if self.archive_dir is None:
                path.unlink()
            else:
                self.archive_dir.mkdir(parents=True, exist_ok=True)
                os.replace(path, self.archive_dir / path.name)

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
