"""Property tests of the ledger rule: no sequence of holds and releases over-allocates, and a
multi-resource hold is all-or-nothing."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from zhisuan.core.ledger import Hold, Ledger, OverAllocation, peak_load, shortfalls

T0 = datetime(2026, 1, 1, tzinfo=UTC)
RESOURCES = ("device:1", "device:2", "device:3", "cpu:1")
CAPACITY = {"device:1": 1000, "device:2": 1000, "device:3": 1000, "cpu:1": 4000}


def at(hours: int) -> datetime:
    return T0 + timedelta(hours=hours)


@st.composite
def wanted_holds(draw: st.DrawFn) -> list[Hold]:
    resources = draw(st.lists(st.sampled_from(RESOURCES), min_size=1, max_size=3, unique=True))
    start = draw(st.integers(0, 40))
    length = draw(st.none() | st.integers(0, 30))
    amount = draw(st.integers(0, 1500))
    return [Hold(r, amount, at(start), None if length is None else at(start + length)) for r in resources]


operations = st.lists(st.one_of(
    st.tuples(st.just("hold"), wanted_holds()),
    st.tuples(st.just("release"), st.tuples(st.integers(0, 50), st.integers(0, 80)))), max_size=30)


def over_capacity(ledger: Ledger) -> list[tuple[str, datetime]]:
    instants = {h.start for h in ledger.holds}
    return [(r, t) for r in RESOURCES for t in instants if ledger.load_at(r, t) > CAPACITY[r]]


@settings(max_examples=300, deadline=None)
@given(operations)
def test_no_sequence_of_holds_and_releases_over_allocates(steps: list[tuple[str, object]]) -> None:
    ledger = Ledger(CAPACITY)
    for kind, arg in steps:
        if kind == "hold":
            assert isinstance(arg, list)
            before = ledger
            try:
                ledger = ledger.hold(arg)
            except OverAllocation as refused:
                assert ledger is before  # all-or-nothing: nothing of a refused hold is kept
                assert refused.shortfalls and all(s.wanted > s.free for s in refused.shortfalls)
            else:
                assert len(ledger.holds) == len(before.holds) + len(arg)
        elif ledger.holds:
            assert isinstance(arg, tuple)
            ledger = ledger.release(arg[0] % len(ledger.holds), at(arg[1]))
        assert over_capacity(ledger) == []


@settings(max_examples=200, deadline=None)
@given(st.lists(wanted_holds(), max_size=8), wanted_holds())
def test_a_hold_fits_exactly_when_the_brute_force_peak_allows_it(existing: list[list[Hold]],
                                                                   wanted: list[Hold]) -> None:
    holds = [h for group in existing for h in group]
    missing = shortfalls(holds, wanted, CAPACITY)
    for position, hold in enumerate(wanted):
        others = [*holds, *wanted[:position]]
        horizon = hold.end or at(200)
        hours = range(int((hold.start - T0).total_seconds() // 3600), int((horizon - T0).total_seconds() // 3600))
        brute = max((sum(o.amount for o in others if o.resource == hold.resource and o.live_at(at(h)))
                     for h in hours), default=0)
        fits = hold.amount + brute <= CAPACITY[hold.resource] or hold.empty
        assert fits == all(s.position != position for s in missing), (hold, brute)


def test_a_multi_device_hold_with_one_busy_device_holds_nothing() -> None:
    ledger = Ledger(CAPACITY).hold([Hold("device:2", 600, at(0))])
    with pytest.raises(OverAllocation) as refused:
        ledger.hold([Hold("device:1", 1000, at(1)), Hold("device:2", 500, at(1), at(5))])
    assert [(s.resource, s.free) for s in refused.value.shortfalls] == [("device:2", 400)]
    assert ledger.holds == (Hold("device:2", 600, at(0)),)
    # shares that do not overlap in time both fit; a released hold frees its device from then on
    ledger = ledger.release(0, at(3)).hold([Hold("device:2", 1000, at(3))])
    assert peak_load(ledger.holds, "device:2", at(0), None) == 1000
