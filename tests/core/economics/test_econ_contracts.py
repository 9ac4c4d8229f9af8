"""Contracts: worked example of an 8×A800 server lease broken in month 14, lifecycle, amendments.

Worked example (computed by hand):

    8×A800 server (one 8-card node), 75,000 CNY per server per month (整机包月),
    start 2024-01-01, 36 closed + 24 open months, 20% penalty, deposit 150,000, 30 days' notice.
    closed_end = 2024-01-01 + 36 months = 2027-01-01;  end = 2029-01-01.
    committed closed value = 36 × 75,000 = 2,700,000.00

    Notice given 2025-01-16 (contract month 13); effective 30 days later = 2025-02-15 00:00 UTC,
    which is in contract month 14 (Feb 2025; month 1 = Jan 2024, month 13 = Jan 2025).
    Remaining closed value from 2025-02-15:
        Feb 2025: 14 of 28 days = 14/28 × 75,000 =    37,500.00
        Mar 2025 … Dec 2026: 10 + 12 = 22 months × 75,000 = 1,650,000.00
        total                                           1,687,500.00
    penalty = 20% × 1,687,500 = 337,500.00
    deposit 150,000 applied → amount due 187,500.00, refund 0.
    Billed until termination: 13 × 75,000 + 37,500 = 1,012,500.00
    Check: billed + remaining = 1,012,500 + 1,687,500 = 2,700,000 = committed value.
"""

from decimal import Decimal

import pytest
from tests.core.economics.econ_helpers import utc

from zhisuan.core.economics.contracts import (
    Amendment,
    Capacity,
    CapacityKind,
    Contract,
    ContractState,
    ContractTerms,
    activate,
    amend,
    breach,
    cancel,
    contract_month,
    expire,
    terminate,
)
from zhisuan.core.economics.errors import ContractStateError, InvalidAmountError, InvalidTimeError
from zhisuan.core.economics.pricebook import PricingModel

D = Decimal
SERVER = Capacity(CapacityKind.NODES, "A800", node_ids=("bj-a800-07",), devices_per_node=8)


def a800_terms(**changes: object) -> ContractTerms:
    fields: dict[str, object] = dict(
        contract_id="C-A800",
        tenant_id="t-lab",
        provider_ids=("p-bj",),
        capacity=SERVER,
        pricing_model=PricingModel.SERVER_MONTH,
        unit_price=D(75_000),
        start=utc(2024, 1, 1),
        closed_months=36,
        open_months=24,
        notice_days=30,
        deposit=D(150_000),
        penalty_rate=D("0.20"),
    )
    fields.update(changes)
    return ContractTerms(**fields)  # type: ignore[arg-type]


def active_a800() -> Contract:
    return activate(Contract(a800_terms()), utc(2023, 12, 20))


def test_term_arithmetic_and_committed_value() -> None:
    contract = active_a800()
    assert contract.terms.closed_end == utc(2027, 1, 1)
    assert contract.terms.end == utc(2029, 1, 1)
    assert contract.terms.monthly_charge() == D(75_000)
    assert contract.committed_value() == D(2_700_000)
    assert contract_month(contract, utc(2025, 2, 15)) == 14
    assert contract_month(contract, utc(2024, 1, 1)) == 1


def test_early_termination_in_month_14_with_20_percent_penalty() -> None:
    contract = active_a800()
    assert contract.remaining_closed_value(utc(2025, 2, 15)) == D("1687500")
    ended = terminate(contract, notice_at=utc(2025, 1, 16))
    assert ended.state == ContractState.TERMINATED
    step = ended.transitions[-1]
    assert step.at == utc(2025, 2, 15)
    assert (step.penalty, step.deposit_applied, step.amount_due, step.deposit_refund) == (
        D("337500.00"),
        D(150_000),
        D("187500.00"),
        D(0),
    )
    assert ended.ended_at == utc(2025, 2, 15)
    billed = contract.value_between(utc(2024, 1, 1), utc(2025, 2, 15))
    assert billed == D(1_012_500)
    assert billed + contract.remaining_closed_value(utc(2025, 2, 15)) == contract.committed_value()
    assert [t.to_state for t in ended.transitions] == [ContractState.ACTIVE, ContractState.TERMINATED]


def test_breach_without_notice_costs_the_same_penalty() -> None:
    ended = breach(active_a800(), utc(2025, 2, 15), reason="stopped paying")
    assert ended.state == ContractState.BREACHED
    assert ended.transitions[-1].penalty == D("337500.00")
    assert ended.transitions[-1].reason == "stopped paying"


def test_open_period_exit_has_no_penalty_and_refunds_deposit() -> None:
    ended = terminate(active_a800(), notice_at=utc(2027, 5, 1), effective_at=utc(2027, 6, 1))
    step = ended.transitions[-1]
    assert (step.penalty, step.amount_due, step.deposit_refund) == (D(0), D(0), D(150_000))


def test_notice_period_and_term_are_enforced() -> None:
    with pytest.raises(InvalidTimeError) as err:
        terminate(active_a800(), notice_at=utc(2025, 1, 16), effective_at=utc(2025, 2, 1))
    assert err.value.field == "effective_at"
    with pytest.raises(InvalidTimeError):
        terminate(active_a800(), notice_at=utc(2028, 12, 20))  # effective after the end
    with pytest.raises(InvalidTimeError):
        expire(active_a800(), utc(2028, 12, 31))
    assert expire(active_a800(), utc(2029, 1, 1)).transitions[-1].deposit_refund == D(150_000)


def test_illegal_transitions_are_rejected() -> None:
    draft = Contract(a800_terms())
    with pytest.raises(ContractStateError):
        terminate(draft, notice_at=utc(2025, 1, 16))
    with pytest.raises(ContractStateError):
        activate(active_a800(), utc(2024, 1, 2))
    ended = breach(active_a800(), utc(2025, 2, 15))
    with pytest.raises(ContractStateError):
        expire(ended, utc(2030, 1, 1))
    with pytest.raises(ContractStateError):
        amend(ended, Amendment("A1", utc(2025, 3, 1), unit_price=D(60_000)))


def test_an_unsigned_draft_is_cancelled_without_money_and_never_holds_capacity() -> None:
    """A draft cancelled after its start (an exchange match that lapsed) held nothing at any instant;
    only a draft can be cancelled, and a cancelled contract cannot be activated."""
    cancelled = cancel(Contract(a800_terms()), utc(2024, 1, 3), "lapsed")
    assert cancelled.state == ContractState.CANCELLED
    step = cancelled.transitions[-1]
    assert (step.from_state, step.penalty, step.deposit_refund, step.amount_due) == (ContractState.DRAFT, 0, 0, 0)
    assert not any(cancelled.holds_capacity_at(utc(2024, 1, day)) for day in (1, 2, 3, 4))
    with pytest.raises(ContractStateError):
        cancel(active_a800(), utc(2024, 1, 3))
    with pytest.raises(ContractStateError):
        activate(cancelled, utc(2024, 1, 4))


def test_amendment_reprices_from_its_effective_date() -> None:
    # Price cut to 70,000 from 2024-07-01: 6 × 75,000 + 30 × 70,000 = 450,000 + 2,100,000 = 2,550,000.
    contract = amend(
        active_a800(), Amendment("A1", utc(2024, 7, 1), unit_price=D(70_000), note="renegotiated")
    )
    assert contract.terms_at(utc(2024, 6, 30)).unit_price == D(75_000)
    assert contract.terms_at(utc(2024, 7, 1)).unit_price == D(70_000)
    assert contract.committed_value() == D(2_550_000)
    # Month-14 termination now: 20% × (0.5 × 70,000 + 22 × 70,000) = 20% × 1,575,000 = 315,000.
    assert contract.penalty_at(utc(2025, 2, 15)) == D("315000.00")
    with pytest.raises(InvalidTimeError):
        amend(contract, Amendment("A0", utc(2024, 3, 1), unit_price=D(1)))  # out of order
    with pytest.raises(InvalidAmountError):
        Amendment("A2", utc(2024, 8, 1), unit_price=D(0))


def test_device_hour_and_pflops_contract_values() -> None:
    # 64 cards × 9 CNY/card-hour for June 2024 (720 h): 64 × 720 × 9 = 414,720.
    hourly = Contract(
        a800_terms(
            pricing_model=PricingModel.DEVICE_HOUR,
            unit_price=D(9),
            capacity=Capacity(CapacityKind.QUOTA, "Ascend910B", quota=64),
        )
    )
    assert hourly.value_between(utc(2024, 6, 1), utc(2024, 7, 1)) == D(414_720)
    # 20 PFLOPS at 180,000 CNY per PFLOPS-year = 300,000 per calendar month, any month length.
    pflops = Contract(
        a800_terms(
            pricing_model=PricingModel.PFLOPS_YEAR,
            unit_price=D(180_000),
            capacity=Capacity(CapacityKind.PFLOPS, "Ascend910B", pflops=D(20)),
        )
    )
    assert pflops.value_between(utc(2024, 6, 1), utc(2024, 7, 1)) == D(300_000)
    assert pflops.value_between(utc(2024, 2, 1), utc(2024, 3, 1)) == D(300_000)
    assert pflops.committed_value() == D(10_800_000)  # 36 × 300,000


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"unit_price": D(0)}, "unit_price"),
        ({"unit_price": D(-75_000)}, "unit_price"),
        ({"closed_months": 0, "open_months": 0}, "closed_months"),
        ({"closed_months": -1}, "closed_months"),
        ({"penalty_rate": D("1.5")}, "penalty_rate"),
        ({"deposit": D(-1)}, "deposit"),
        ({"provider_ids": ()}, "provider_ids"),
        ({"pricing_model": PricingModel.INPUT_TOKENS}, "pricing_model"),
        ({"pricing_model": PricingModel.PFLOPS_YEAR}, "capacity"),
    ],
)
def test_bad_terms_are_rejected_with_the_field(changes: dict[str, object], field: str) -> None:
    with pytest.raises(ValueError) as err:
        a800_terms(**changes)
    assert getattr(err.value, "field", None) == field


def test_naive_start_is_rejected() -> None:
    from datetime import datetime

    with pytest.raises(InvalidTimeError):
        a800_terms(start=datetime(2024, 1, 1))
