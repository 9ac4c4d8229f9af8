"""The utilisation roll-up (core.utilisation): windows, capping, merging, retention and chart points."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal
from zoneinfo import ZoneInfo

import pytest

from zhisuan.core.utilisation import (
    Bucket,
    Reading,
    apply_sample,
    bucket_start,
    device_allocation,
    expired_before,
    merge,
    points,
)

AT = datetime(2026, 12, 2, 9, 41, 37, 123456, tzinfo=UTC)


@pytest.mark.parametrize(("resolution", "expected"), [
    ("minute", datetime(2026, 12, 2, 9, 41, tzinfo=UTC)),
    ("hour", datetime(2026, 12, 2, 9, 0, tzinfo=UTC)),
    ("day", datetime(2026, 12, 2, tzinfo=UTC)),
])
def test_bucket_start_floors_to_the_window(resolution: str, expected: datetime) -> None:
    assert bucket_start(AT, resolution) == expected


def test_bucket_start_is_utc_whatever_the_zone_given() -> None:
    beijing = AT.astimezone(ZoneInfo("Asia/Shanghai"))  # 17:41 there
    assert bucket_start(beijing, "day") == datetime(2026, 12, 2, tzinfo=UTC)
    with pytest.raises(ValueError, match="resolution"):
        bucket_start(AT, "week")


@pytest.mark.parametrize(("held", "counted"), [(0, 0), (250, 250), (1000, 1000), (2000, 1000), (1500, 1000), (-5, 0)])
def test_a_device_counts_at_most_once(held: int, counted: int) -> None:
    assert device_allocation(held) == counted


def bucket(resolution: str, start: datetime, samples: int, devices: int, allocated: int, peak: int,
           site: int = 1, model: str = "h100-sxm") -> Bucket:
    return Bucket(resolution, start, site, model, samples, devices, allocated, peak)


# (stored buckets before, readings, buckets written): each sample adds to its minute, hour and day.
CASES = [
    ("first sample", [], [Reading(1, "h100-sxm", 8, 4000)],
     [bucket("minute", datetime(2026, 12, 2, 9, 41, tzinfo=UTC), 1, 8, 4000, 4000),
      bucket("hour", datetime(2026, 12, 2, 9, tzinfo=UTC), 1, 8, 4000, 4000),
      bucket("day", datetime(2026, 12, 2, tzinfo=UTC), 1, 8, 4000, 4000)]),
    ("adds to the hour and day so far", [
        bucket("hour", datetime(2026, 12, 2, 9, tzinfo=UTC), 40, 320, 100_000, 6000),
        bucket("day", datetime(2026, 12, 2, tzinfo=UTC), 580, 4640, 2_000_000, 8000),
        bucket("hour", datetime(2026, 12, 2, 9, tzinfo=UTC), 40, 320, 0, 0, site=2),  # another series
    ], [Reading(1, "h100-sxm", 8, 7000)],
     [bucket("minute", datetime(2026, 12, 2, 9, 41, tzinfo=UTC), 1, 8, 7000, 7000),
      bucket("hour", datetime(2026, 12, 2, 9, tzinfo=UTC), 41, 328, 107_000, 7000),
      bucket("day", datetime(2026, 12, 2, tzinfo=UTC), 581, 4648, 2_007_000, 8000)]),
    ("two series stay apart", [], [Reading(1, "h100-sxm", 8, 0), Reading(2, "910b", 16, 16000)],
     [bucket("minute", datetime(2026, 12, 2, 9, 41, tzinfo=UTC), 1, 8, 0, 0),
      bucket("hour", datetime(2026, 12, 2, 9, tzinfo=UTC), 1, 8, 0, 0),
      bucket("day", datetime(2026, 12, 2, tzinfo=UTC), 1, 8, 0, 0),
      bucket("minute", datetime(2026, 12, 2, 9, 41, tzinfo=UTC), 1, 16, 16000, 16000, site=2, model="910b"),
      bucket("hour", datetime(2026, 12, 2, 9, tzinfo=UTC), 1, 16, 16000, 16000, site=2, model="910b"),
      bucket("day", datetime(2026, 12, 2, tzinfo=UTC), 1, 16, 16000, 16000, site=2, model="910b")]),
    ("a second reading in the minute replaces the first", [
        bucket("minute", datetime(2026, 12, 2, 9, 41, tzinfo=UTC), 1, 8, 2000, 2000),
        bucket("hour", datetime(2026, 12, 2, 9, tzinfo=UTC), 41, 328, 50_000, 5000),
        bucket("day", datetime(2026, 12, 2, tzinfo=UTC), 581, 4648, 900_000, 8000),
    ], [Reading(1, "h100-sxm", 8, 3000)],
     [bucket("minute", datetime(2026, 12, 2, 9, 41, tzinfo=UTC), 1, 8, 3000, 3000),
      bucket("hour", datetime(2026, 12, 2, 9, tzinfo=UTC), 41, 328, 51_000, 5000),
      bucket("day", datetime(2026, 12, 2, tzinfo=UTC), 581, 4648, 901_000, 8000)]),
    ("the replaced reading's peak is kept", [
        bucket("minute", datetime(2026, 12, 2, 9, 41, tzinfo=UTC), 1, 8, 6000, 6000),
        bucket("hour", datetime(2026, 12, 2, 9, tzinfo=UTC), 1, 8, 6000, 6000),
        bucket("day", datetime(2026, 12, 2, tzinfo=UTC), 1, 8, 6000, 6000),
    ], [Reading(1, "h100-sxm", 9, 1000)],
     [bucket("minute", datetime(2026, 12, 2, 9, 41, tzinfo=UTC), 1, 9, 1000, 6000),
      bucket("hour", datetime(2026, 12, 2, 9, tzinfo=UTC), 1, 9, 1000, 6000),
      bucket("day", datetime(2026, 12, 2, tzinfo=UTC), 1, 9, 1000, 6000)]),
    ("an empty fleet writes nothing", [], [], []),
]


@pytest.mark.parametrize(("stored", "readings", "written"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_a_sample_rolls_up_into_its_windows(stored: list[Bucket], readings: list[Reading],
                                            written: list[Bucket]) -> None:
    assert apply_sample(stored, readings, AT) == written


def test_merge_refuses_another_window() -> None:
    hour = bucket("hour", datetime(2026, 12, 2, 9, tzinfo=UTC), 1, 8, 0, 0)
    with pytest.raises(ValueError, match="cannot merge"):
        merge(hour, bucket("hour", datetime(2026, 12, 2, 10, tzinfo=UTC), 1, 8, 0, 0))


def test_retention_keeps_two_days_of_minutes_ninety_days_of_hours_two_years_of_days() -> None:
    cutoffs = expired_before(AT)
    assert cutoffs == {"minute": datetime(2026, 11, 30, 9, 41, tzinfo=UTC),
                       "hour": datetime(2026, 9, 3, 9, tzinfo=UTC),
                       "day": datetime(2024, 12, 1, tzinfo=UTC)}
    assert AT - cutoffs["minute"] <= timedelta(hours=48, minutes=1)


def test_points_weigh_utilisation_by_device_time() -> None:
    nine = datetime(2026, 12, 2, 9, tzinfo=UTC)
    ten = nine + timedelta(hours=1)
    found = points([
        bucket("hour", nine, 60, 480, 240_000, 4000),  # 8 devices, half of them held all hour
        bucket("hour", nine, 30, 480, 480_000, 16000, site=2),  # 16 devices for half the hour, all held
        bucket("hour", ten, 60, 0, 0, 0),  # a site with no devices left
    ])
    assert [p.start for p in found] == [nine, ten]
    assert found[0].devices == Decimal("24.00") and found[0].allocated == Decimal("20.00")
    assert found[0].utilisation == Decimal("0.7500")  # 720,000 / (1000 · 960)
    assert found[1].utilisation is None and found[1].devices == Decimal("0.00")
