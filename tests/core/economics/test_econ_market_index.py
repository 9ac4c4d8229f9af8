"""Price index and breach-risk report.

Worked example (A800, SERVER_MONTH, as of 2025-02-15):
  contracts: C-old 75,000 × 8 cards, C-mid 62,000 × 16 cards; listings 55,000 × 24 and 52,000 × 16.
  weights sorted by price: 52,000 (16), 55,000 (24), 62,000 (16), 75,000 (8); total 64, half 32;
  cumulative 16, 40 ≥ 32 → weighted median index = 55,000.00.
  C-old: 75,000 > 55,000 × 1.20 = 66,000 → flagged (premium 36.36%).
    remaining closed value = 1,687,500 (see test_econ_contracts); replacement at index =
    1,687,500 × 55/75 = 1,237,500; penalty 337,500; tenant saving = 1,687,500 − 1,237,500 − 337,500
    = 112,500.00; provider exposure = 1,687,500 − 337,500 = 1,350,000.00.
  C-mid: 62,000 ≤ 66,000 → not flagged.
"""

from decimal import Decimal

import pytest
from tests.core.economics.econ_helpers import utc

from zhisuan.core.economics.contracts import Capacity, CapacityKind, Contract, ContractTerms, activate
from zhisuan.core.economics.errors import CurrencyMismatchError, InvalidAmountError
from zhisuan.core.economics.market_index import (
    PricePoint,
    breach_risk_report,
    contract_price_points,
    price_index,
)
from zhisuan.core.economics.pricebook import PricingModel

D = Decimal
P = PricingModel


def contract(cid: str, price: int, nodes: int) -> Contract:
    capacity = Capacity(CapacityKind.NODES, "A800", tuple(f"{cid}-n{i}" for i in range(nodes)))
    return activate(
        Contract(
            ContractTerms(
                cid,
                f"t-{cid}",
                ("p-bj",),
                capacity,
                P.SERVER_MONTH,
                D(price),
                utc(2024, 1, 1),
                36,
                24,
                deposit=D(0),
            )
        ),
        utc(2024, 1, 1),
    )


CONTRACTS = [contract("C-old", 75_000, 1), contract("C-mid", 62_000, 2)]
LISTINGS = [
    PricePoint("A800", P.SERVER_MONTH, D(55_000), D(24), "listing:o-1"),
    PricePoint("A800", P.SERVER_MONTH, D(52_000), D(16), "listing:o-2"),
]


def test_weighted_median_index() -> None:
    points = contract_price_points(CONTRACTS, utc(2025, 2, 15)) + LISTINGS
    entry = price_index(points)[("A800", P.SERVER_MONTH)]
    assert (entry.price, entry.low, entry.high, entry.points, entry.weight) == (
        D("55000.00"),
        D(52_000),
        D(75_000),
        4,
        D(64),
    )


def test_breach_risk_report() -> None:
    at = utc(2025, 2, 15)
    index = price_index(contract_price_points(CONTRACTS, at) + LISTINGS)
    (risk,) = breach_risk_report(CONTRACTS, index, at)
    assert risk.contract_id == "C-old"
    assert risk.premium.quantize(D("0.0001")) == D("0.3636")
    assert (risk.remaining_value, risk.replacement_value, risk.penalty) == (
        D("1687500.00"),
        D("1237500.00"),
        D("337500.00"),
    )
    assert (risk.tenant_saving, risk.provider_exposure) == (D("112500.00"), D("1350000.00"))
    # After the closed period ends nothing is at risk (exit is free anyway).
    assert breach_risk_report(CONTRACTS, index, utc(2027, 2, 1)) == ()


def test_index_input_errors() -> None:
    with pytest.raises(InvalidAmountError):
        PricePoint("A800", P.SERVER_MONTH, D(0), D(1), "listing:x")
    with pytest.raises(CurrencyMismatchError):
        price_index([PricePoint("A800", P.SERVER_MONTH, D(1), D(1), "listing:x", currency="USD")])
