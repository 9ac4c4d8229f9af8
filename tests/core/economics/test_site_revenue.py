"""A provider's settled revenue split over its sites (core.economics.site_revenue): bound lines stay
with their site, the unbound rest is shared by weight to the fen, and the sites sum to the provider."""

from __future__ import annotations

from decimal import Decimal as D

import pytest
from hypothesis import given
from hypothesis import strategies as st

from zhisuan.core.economics.site_revenue import site_revenue, weights_of

# (provider revenue, bound per site, weights) → revenue per site
CASES = [
    ("all bound: each site keeps its lines", "300.00", {"a": "100.00", "b": "200.00"}, {"a": 1, "b": 3},
     {"a": "100.00", "b": "200.00"}),
    ("unbound tokens by allocated hours 1:3", "100.00", {}, {"a": 100, "b": 300}, {"a": "25.00", "b": "75.00"}),
    ("the leftover fen to the largest remainder", "0.10", {}, {"a": 1, "b": 1, "c": 1},
     {"a": "0.04", "b": "0.03", "c": "0.03"}),
    ("bound plus a share", "130.00", {"a": "100.00"}, {"a": 1, "b": 2}, {"a": "110.00", "b": "20.00"}),
    ("an ETTR credit larger than the unbound revenue", "90.00", {"a": "60.00", "b": "40.00"}, {"a": 1, "b": 1},
     {"a": "55.00", "b": "35.00"}),
    ("no weight anywhere: equal parts", "1.00", {}, {"a": 0, "b": 0}, {"a": "0.50", "b": "0.50"}),
    ("a site with lines but no history", "50.00", {"z": "50.00"}, {}, {"z": "50.00"}),
]


@pytest.mark.parametrize(("revenue", "bound", "weights", "expected"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_site_revenue(revenue: str, bound: dict[str, str], weights: dict[str, int], expected: dict[str, str]) -> None:
    found = site_revenue(D(revenue), {s: D(v) for s, v in bound.items()}, weights)
    assert {s: str(v) for s, v in found.items()} == expected


def test_no_site_splits_nothing() -> None:
    assert site_revenue(D("12.00"), {}, {}) == {}


@pytest.mark.parametrize(("allocated", "devices", "expected"), [
    ({"a": D("9.00"), "b": D("0")}, {"a": D("24"), "b": D("6")}, {"a": 900, "b": 0}),
    ({"a": D("0"), "b": D("0")}, {"a": D("24"), "b": D("6.5")}, {"a": 2400, "b": 650}),
    ({}, {"a": D("0")}, {"a": 1}),
])
def test_weights_fall_back_from_allocated_to_device_hours_to_equal(
        allocated: dict[str, D], devices: dict[str, D], expected: dict[str, int]) -> None:
    assert weights_of(allocated, devices) == expected


fen = st.integers(min_value=-10**9, max_value=10**9).map(lambda n: D(n) / 100)
names = st.sampled_from("abcdef")


@given(revenue=fen, bound=st.dictionaries(names, fen, max_size=4), weights=st.dictionaries(names, st.integers(0, 10**6),
                                                                                           max_size=6))
def test_sites_sum_to_the_provider_exactly(revenue: D, bound: dict[str, D], weights: dict[str, int]) -> None:
    found = site_revenue(revenue, bound, weights)
    sites = set(bound) | set(weights)
    assert set(found) == sites
    if sites:
        assert sum(found.values(), D(0)) == revenue
    unbound = revenue - sum(bound.values(), D(0))
    total = sum(weights.get(s, 0) for s in sites)
    for site, amount in found.items():
        assert amount == amount.quantize(D("0.01"))
        share = amount - bound.get(site, D(0))
        if total > 0:  # within a fen of the exact proportion
            assert abs(share - unbound * weights.get(site, 0) / total) < D("0.01")
