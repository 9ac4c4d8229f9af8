"""Per-process throttles of failed credential checks, keyed by account or client address.

A subject (``user:alice``, ``client:203.0.113.9``) that keeps failing is refused for an
exponentially growing time (``core.backoff``), with 429 and Retry-After, *before* any password or
key is hashed: an unauthenticated caller cannot make the server do unbounded scrypt work (passwords,
keys stored before SHA-256 digests), nor
guess passwords faster than the backoff allows. State is in memory, bounded (least recently failed
subjects are forgotten first) and forgotten after ``forget_after_s`` without failures; one
control-plane process (``zhisuan up``) holds all of it.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from zhisuan.core.backoff import lockout_seconds
from zhisuan.errors import TooManyRequests


@dataclass
class Failures:
    count: int
    last: datetime
    blocked_until: datetime


@dataclass
class FailureThrottle:
    free: int = 5
    base_s: float = 1.0
    cap_s: float = 900.0
    forget_after_s: float = 3600.0
    capacity: int = 100_000
    _subjects: OrderedDict[str, Failures] = field(default_factory=OrderedDict)
    # Requests run in a thread pool: updates of one subject must not interleave.
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def check(self, subjects: list[str], now: datetime, what: str) -> None:
        """Raise TooManyRequests if any of ``subjects`` is still locked out at ``now``."""
        with self._lock:
            waits = [(entry.blocked_until - now).total_seconds() for subject in subjects
                     if (entry := self._current(subject, now)) is not None]
        wait = max(waits, default=0.0)
        if wait > 0:
            raise TooManyRequests(f"too many failed {what}; retry in {wait:.0f} s", retry_after_s=wait)

    def failed(self, subjects: list[str], now: datetime) -> None:
        with self._lock:
            self._record_failures(subjects, now)

    def succeeded(self, subjects: list[str]) -> None:
        with self._lock:
            for subject in subjects:
                self._subjects.pop(subject, None)

    def _record_failures(self, subjects: list[str], now: datetime) -> None:
        for subject in subjects:
            entry = self._current(subject, now)
            count = 1 if entry is None else entry.count + 1
            wait = timedelta(seconds=lockout_seconds(count, self.free, self.base_s, self.cap_s))
            self._subjects[subject] = Failures(count, now, now + wait)
            self._subjects.move_to_end(subject)
        while len(self._subjects) > self.capacity:
            self._subjects.popitem(last=False)

    def _current(self, subject: str, now: datetime) -> Failures | None:
        entry = self._subjects.get(subject)
        if entry is not None and (now - entry.last).total_seconds() > self.forget_after_s:
            del self._subjects[subject]
            return None
        return entry
