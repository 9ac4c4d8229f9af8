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


def apply_sample(existing: Sequence[Bucket], readings: Iterable[Reading], at: datetime) -> list[Bucket]:
    """The buckets to write after a sample at ``at``, given the stored buckets of its windows.

    A minute holds one reading: a second sample in the same minute (a shorter interval, a restart)
    replaces the minute's reading, and its hour and day take the difference, so they stay the sums of
    their minutes. The peak is the highest reading seen, replaced ones included.
    """
    stored = {bucket.key: bucket for bucket in existing}
    written = []
    for reading in readings:
        minute = Bucket("minute", bucket_start(at, "minute"), reading.site_id, reading.model, samples=1,
                        devices=reading.devices, allocated=reading.allocated_milli, peak=reading.allocated_milli)
        previous = stored.get(minute.key)
        if previous is not None:
            minute = replace(minute, peak=max(previous.peak, minute.peak))
        written.append(minute)
        for resolution in RESOLUTIONS[1:]:
            change = Bucket(resolution, bucket_start(at, resolution), reading.site_id, reading.model,
                            samples=0 if previous else 1,
                            devices=reading.devices - (previous.devices if previous else 0),
                            allocated=reading.allocated_milli - (previous.allocated if previous else 0),
                            peak=reading.allocated_milli)
            written.append(merge(stored.get(change.key), change))
    return written


def merge(existing: Bucket | None, change: Bucket) -> Bucket:
    """``existing`` with ``change`` (same window and series) added in; the peak is the higher one."""
    if existing is None:
        return change
    if existing.key != change.key:
        raise ValueError(f"cannot merge bucket {change.key} into {existing.key}")
    return replace(existing, samples=existing.samples + change.samples, devices=existing.devices + change.devices,
                   allocated=existing.allocated + change.allocated, peak=max(existing.peak, change.peak))


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


# Hours a bucket of each resolution covers when its window was sampled throughout.
BUCKET_HOURS = {"hour": Decimal(1), "day": Decimal(24)}


def period_resolution(start: datetime, now: datetime) -> str:
    """The resolution whose buckets still cover a period starting at ``start``: hour buckets while
    the period's first hour is kept (``RETENTION["hour"]``), day buckets for anything older."""
    return "hour" if start >= expired_before(now)["hour"] else "day"


def device_hours(bucket: Bucket) -> tuple[Decimal, Decimal]:
    """(device-hours, allocated device-hours) of one hour or day bucket: its mean devices (and mean
    devices allocated) × the hours of its window (a window sampled part of the time counts whole)."""
    if not bucket.samples:
        return Decimal(0), Decimal(0)
    hours = BUCKET_HOURS[bucket.resolution]
    return (Decimal(bucket.devices) * hours / bucket.samples,
            Decimal(bucket.allocated) * hours / FULL_DEVICE / bucket.samples)
