"""A provider's settled revenue of a month split over its sites, exact to the fen. Pure.

The settlement sums the provider's invoice lines (``rating.settle``). Lines rated for devices held
at one site carry that site in their scope (the ledger records each hold's site; rating keeps it
in the line), so they belong to that site whole. The rest — token usage, quota entitlements,
penalties and ETTR credits, priced per provider — no site earned alone: that unbound amount U is
shared out in proportion to each site's weight w_s (its allocated device-hours of the month; its
device-hours when nothing was allocated; equal parts when it had none either), to the fen, the
leftover fen going to the largest fractional parts (``penalties.split_by_weight``):

    revenue_s = Σ amounts of the lines bound to s  +  share_s(U, w)
    Σ_s revenue_s = Σ bound + U = the provider's settlement revenue      (exactly)

A negative U (credits larger than the unbound revenue) is split the same way on |U| and negated.
With no site to share among, nothing is split: the caller reports U as not site-bound.
"""

from __future__ import annotations

from collections.abc import Mapping
from decimal import Decimal

from zhisuan.core.economics.money import ZERO
from zhisuan.core.economics.penalties import split_by_weight

# Weights are device-hours to the hundredth: × 100 makes them the whole numbers split_by_weight takes.
WEIGHT_SCALE = 100


def weights_of(allocated_hours: Mapping[str, Decimal], device_hours: Mapping[str, Decimal]) -> dict[str, int]:
    """Each site's weight: allocated device-hours, else device-hours, else 1 (the module's rule)."""
    sites = sorted(set(allocated_hours) | set(device_hours))
    for hours in (allocated_hours, device_hours):
        scaled = {s: int(hours.get(s, ZERO) * WEIGHT_SCALE) for s in sites}
        if sum(scaled.values()) > 0:
            return scaled
    return dict.fromkeys(sites, 1)


def site_revenue(revenue: Decimal, bound: Mapping[str, Decimal], weights: Mapping[str, int]) -> dict[str, Decimal]:
    """Per site: its bound lines plus its share of ``revenue − Σ bound``; the values sum to ``revenue``
    whenever there is a site (``weights`` ∪ ``bound``). Amounts are to the fen."""
    sites = sorted(set(weights) | set(bound))
    if not sites:
        return {}
    unbound = revenue - sum(bound.values(), ZERO)
    usable = {s: max(0, weights.get(s, 0)) for s in sites}
    if sum(usable.values()) <= 0:
        usable = dict.fromkeys(sites, 1)
    parts = split_by_weight(abs(unbound), usable, sites)
    sign = -1 if unbound < 0 else 1
    return {s: bound.get(s, ZERO) + sign * parts[s] for s in sites}
