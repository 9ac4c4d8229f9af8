"""Utilisation over time: minute readings of the fleet rolled up into minute, hour and day buckets.

A *reading* is what one sample sees of one series (a site × accelerator model) at one instant:
``devices`` on its nodes and ``allocated_milli``, the thousandths of a device held by the allocation
ledger (each device counted at most once: min(1000, Σ milli of its live holds)). A *bucket* adds up
the readings that fall in its window, so roll-ups are plain sums and any bucket can be merged with
a later reading of the same window:

    samples   = n                     (readings in the window)
    devices   = Σ devices_i           (device-samples)
    allocated = Σ allocated_milli_i   (milli-device-samples)
    peak      = max allocated_milli_i

Over any set of buckets (several sites, a whole day, …) utilisation is device-time weighted:

    utilisation = Σ allocated / (1000 · Σ devices)

and the mean number of devices a bucket saw is ``devices / samples``. Retention keeps the history
bounded: minute buckets for ``RETENTION["minute"]``, hour buckets for ``RETENTION["hour"]``, day
buckets for ``RETENTION["day"]``, so each series holds at most 2,880 + 2,160 + 731 rows.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from decimal import Decimal

RESOLUTIONS = ("minute", "hour", "day")
RETENTION = {"minute": timedelta(hours=48), "hour": timedelta(days=90), "day": timedelta(days=731)}
# The widest window one answer may span per resolution (it bounds the points a chart receives).
MAX_SPAN = {"minute": timedelta(hours=48), "hour": timedelta(days=90), "day": timedelta(days=731)}
# What a chart asks for when it names no window.
DEFAULT_SPAN = {"minute": timedelta(hours=6), "hour": timedelta(days=7), "day": timedelta(days=90)}
FULL_DEVICE = 1000


@dataclass(frozen=True)
class Reading:
    site_id: int
    model: str
    devices: int
    allocated_milli: int


@dataclass(frozen=True)
class Bucket:
    resolution: str
    start: datetime
    site_id: int
    model: str
    samples: int
    devices: int
    allocated: int
    peak: int

    @property
    def key(self) -> tuple[str, datetime, int, str]:
        return (self.resolution, self.start, self.site_id, self.model)


def bucket_start(at: datetime, resolution: str) -> datetime:
    """The first instant (UTC) of the ``resolution`` window holding ``at``."""
    at = at.astimezone(UTC)
    if resolution == "minute":
        return at.replace(second=0, microsecond=0)
    if resolution == "hour":
        return at.replace(minute=0, second=0, microsecond=0)
    if resolution == "day":
        return at.replace(hour=0, minute=0, second=0, microsecond=0)
    raise ValueError(f"resolution must be one of {RESOLUTIONS}, not {resolution!r}")


def device_allocation(held_milli: int) -> int:
    """A device's allocated share: its holds' milli, at most one whole device (a job inside a lease
    holds the same device as the lease: counted once)."""
    return max(0, min(FULL_DEVICE, held_milli))


def roll_up(readings: Iterable[Reading], at: datetime) -> list[Bucket]:
    """The bucket increments one sample taken at ``at`` adds: one per series and resolution."""
    increments = []
    for reading in readings:
        for resolution in RESOLUTIONS:
            increments.append(Bucket(resolution, bucket_start(at, resolution), reading.site_id, reading.model,
                                     samples=1, devices=reading.devices, allocated=reading.allocated_milli,
                                     peak=reading.allocated_milli))
    return increments


def merge(existing: Bucket | None, increment: Bucket) -> Bucket:
    """``existing`` with ``increment`` (same window and series) added in."""
    if existing is None:
        return increment
    if existing.key != increment.key:
        raise ValueError(f"cannot merge bucket {increment.key} into {existing.key}")
    return replace(existing, samples=existing.samples + increment.samples,
                   devices=existing.devices + increment.devices,
                   allocated=existing.allocated + increment.allocated, peak=max(existing.peak, increment.peak))


def apply_sample(existing: Sequence[Bucket], increments: Sequence[Bucket]) -> list[Bucket]:
    """Buckets to write after a sample: each increment merged into the stored bucket of its key."""
    stored = {bucket.key: bucket for bucket in existing}
    return [merge(stored.get(increment.key), increment) for increment in increments]


def expired_before(now: datetime) -> dict[str, datetime]:
    """Per resolution, the bucket start before which rows are deleted (bounded history)."""
    return {resolution: bucket_start(now - keep, resolution) for resolution, keep in RETENTION.items()}


@dataclass(frozen=True)
class Point:
    """One instant of a chart's series: mean devices, mean devices allocated, and the ratio."""

    start: datetime
    devices: Decimal
    allocated: Decimal
    utilisation: Decimal | None


def points(buckets: Iterable[Bucket]) -> list[Point]:
    """Buckets of one series (any mix of sites/models) summed per window start, oldest first.

    Mean devices sum each bucket's own mean (``devices / samples``): sites that joined mid-hour
    count for the samples they had; utilisation is device-time weighted (the module's formula).
    """
    by_start: dict[datetime, list[Bucket]] = {}
    for bucket in buckets:
        by_start.setdefault(bucket.start, []).append(bucket)
    result = []
    for start in sorted(by_start):
        group = by_start[start]
        devices = sum((Decimal(b.devices) / b.samples for b in group if b.samples), Decimal(0))
        allocated = sum((Decimal(b.allocated) / FULL_DEVICE / b.samples for b in group if b.samples), Decimal(0))
        device_samples = sum(b.devices for b in group)
        ratio = (Decimal(sum(b.allocated for b in group)) / (FULL_DEVICE * device_samples)
                 if device_samples else None)
        result.append(Point(start, devices.quantize(Decimal("0.01")), allocated.quantize(Decimal("0.01")),
                            None if ratio is None else ratio.quantize(Decimal("0.0001"))))
    return result
