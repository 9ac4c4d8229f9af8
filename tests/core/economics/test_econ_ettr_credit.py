"""ETTR service level: attribution of lost time, the measured ETTR, the tier and the credit, and the credit
lines on the invoice and in the settlement (rules in ``core.economics.ettr_credit``)."""

from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st
from tests.core.economics.econ_helpers import utc
from tests.core.economics.test_econ_contracts import a800_terms

from zhisuan.core.economics.errors import InvalidAmountError
from zhisuan.core.economics.ettr_credit import (
    AttemptTime,
    Cause,
    CreditTier,
    DueCredit,
    EttrSla,
    SlaTime,
    cause_of_failure,
    decide_credit,
    period_time,
    sla_time,
    with_credits,
)
from zhisuan.core.economics.metering import UsageScope
from zhisuan.core.economics.periods import billing_period
from zhisuan.core.economics.pricebook import PricingModel, Tier
from zhisuan.core.economics.rating import Invoice, InvoiceLine, PriceSource, settle
from zhisuan.core.goodput.breakdown import TimeBreakdown

D = Decimal
SLA = EttrSla(D("0.95"), (CreditTier(D("0.95"), D(10)), CreditTier(D("0.90"), D(25)), CreditTier(D("0.80"), D(50))),
              D(30))
PERIOD = billing_period(2024, 3)


@pytest.mark.parametrize(("kind", "cause"), [
    ("node_fault", Cause.PLATFORM), ("device_fault", Cause.PLATFORM), ("agent_lost", Cause.PLATFORM),
    ("exit_nonzero", Cause.TENANT), ("hang", Cause.TENANT), ("preempted", Cause.TENANT)])
def test_only_hardware_and_platform_failures_count_against_the_platform(kind: str, cause: Cause) -> None:
    assert cause_of_failure(kind) == cause


T = TimeBreakdown(queueing=100, productive=800, checkpoint=40, lost=60, restart=20)


@pytest.mark.parametrize(("caused_by", "ended_by", "counted", "loss"), [
    # first attempt, not ended by a fault: its queueing is the tenant's, start-up and checkpoints are not losses
    (Cause.SUBMITTED, None, 800 + 40 + 20 + 60, 0),
    # ended by a platform fault: the lost work is the platform's
    (Cause.SUBMITTED, Cause.PLATFORM, 800 + 40 + 20 + 60, 60),
    # ended by the program: its lost work is neither counted nor a loss
    (Cause.SUBMITTED, Cause.TENANT, 800 + 40 + 20, 0),
    # restarted after a platform fault: the re-queue's wait and the restart are the platform's
    (Cause.PLATFORM, None, 800 + 40 + 20 + 60 + 100, 20 + 100),
    (Cause.PLATFORM, Cause.PLATFORM, 800 + 40 + 20 + 60 + 100, 20 + 100 + 60),
    # restarted after the program's failure: its wait and restart are the tenant's
    (Cause.TENANT, Cause.PLATFORM, 800 + 40 + 60, 60),
    (Cause.TENANT, Cause.TENANT, 800 + 40, 0),
])
def test_each_part_of_an_attempt_counts_by_who_caused_it(caused_by: Cause, ended_by: Cause | None, counted: float,
                                                         loss: float) -> None:
    assert sla_time(AttemptTime(T, caused_by, ended_by)) == SlaTime(counted, loss)


@pytest.mark.parametrize(("counted", "loss", "ettr"), [
    (0, 0, None), (1000, 0, D("1.0000")), (1000, 50, D("0.9500")), (3, 1, D("0.6667")),
    (100000, 5001, D("0.9500")),  # 0.94999 rounds half up to 0.9500: the shown value is the compared one
    (100000, 5006, D("0.9499"))])
def test_the_measured_ettr_is_rounded_half_up_to_four_places(counted: float, loss: float,
                                                             ettr: Decimal | None) -> None:
    assert SlaTime(counted, loss).ettr == ettr


@pytest.mark.parametrize(("measured", "charge", "tier", "percent", "amount"), [
    (None, D("1000.00"), None, D(0), D(0)),  # nothing ran under the contract: no credit
    (D("1.0000"), D("1000.00"), None, D(0), D(0)),
    (D("0.9500"), D("1000.00"), None, D(0), D(0)),  # at the target: met
    (D("0.9499"), D("1000.00"), 1, D(10), D("100.00")),
    (D("0.9000"), D("1000.00"), 1, D(10), D("100.00")),  # 0.90 is not below 0.90
    (D("0.8999"), D("1000.00"), 2, D(25), D("250.00")),
    (D("0.5000"), D("1000.00"), 3, D(30), D("300.00")),  # tier 3 says 50%, the cap says 30%
    (D("0.9"), D("0.05"), 1, D(10), D("0.01")),  # 0.005 rounds half up to a fen
    (D("0.9"), D("0.04"), 1, D(10), D("0.00")),  # 0.004 rounds to nothing
    (D("0.9"), D("0"), 1, D(10), D("0.00")),
])
def test_the_credit_is_the_lowest_tier_missed_capped_to_the_fen(measured: Decimal | None, charge: Decimal,
                                                               tier: int | None, percent: Decimal,
                                                               amount: Decimal) -> None:
    decision = decide_credit(SLA, measured, charge)
    assert (decision.tier, decision.percent, decision.amount) == (tier, percent, amount)


@pytest.mark.parametrize(("target", "tiers", "cap", "field"), [
    ("0", [("0", "10")], "30", "target"),
    ("1.01", [("1.01", "10")], "30", "target"),
    ("0.95", [], "30", "tiers"),
    ("0.95", [("0.90", "10")], "30", "tiers.0.below"),
    ("0.95", [("0.95", "10"), ("0.96", "20")], "30", "tiers.1.below"),
    ("0.95", [("0.95", "10"), ("0.95", "20")], "30", "tiers.1.below"),
    ("0.95", [("0.95", "10"), ("0", "20")], "30", "tiers.1.below"),
    ("0.95", [("0.95", "101")], "30", "tiers.0.percent"),
    ("0.95", [("0.95", "-1")], "30", "tiers.0.percent"),
    ("0.95", [("0.95", "20"), ("0.9", "10")], "30", "tiers.1.percent"),
    ("0.95", [("0.95", "10")], "100.5", "cap_percent"),
    ("0.95", [("0.95", "10")], "-1", "cap_percent"),
])
def test_a_rule_that_makes_no_sense_is_refused_naming_the_field(target: str, tiers: list[tuple[str, str]], cap: str,
                                                                field: str) -> None:
    with pytest.raises(InvalidAmountError) as error:
        EttrSla(D(target), tuple(CreditTier(D(b), D(p)) for b, p in tiers), D(cap))
    assert error.value.field == field


def usage_line(provider: str, amount: Decimal, line_no: int) -> InvoiceLine:
    scope = UsageScope("t-lab", provider, "A800", PricingModel.SERVER_MONTH, Tier.RESERVED, None, None, 60, "C-A800")
    return InvoiceLine(line_no, scope, PERIOD, 1, D(1), "server-month", amount, D(0), amount, amount, amount, "CNY",
                       PriceSource("contract", "C-A800", 0), ("k",))


def test_the_credit_is_a_negative_line_per_provider_and_settlement_pays_out_less() -> None:
    terms = a800_terms(provider_ids=("p-bj", "p-sh"))
    charges = {"p-bj": D("50000.00"), "p-sh": D("25000.00")}
    invoice = Invoice("INV-t-lab-2024-03", "t-lab", PERIOD, "CNY",
                      (usage_line("p-bj", charges["p-bj"], 1), usage_line("p-sh", charges["p-sh"], 2)))
    decision = decide_credit(SLA, D("0.9321"), sum(charges.values(), D(0)))
    (credited,) = with_credits([invoice], [DueCredit(terms, SLA, decision, charges)], PERIOD, "CNY")
    assert [(line.line_no, line.kind, line.scope.provider_id, line.amount) for line in credited.lines[2:]] == [
        (3, "ettr_credit", "p-bj", D("-5000.00")), (4, "ettr_credit", "p-sh", D("-2500.00"))]
    assert credited.total == D("67500.00")
    assert "measured ETTR 0.9321 below target 0.95; tier 1 (ETTR < 0.95) credits 10%" in credited.lines[2].description
    summary = settle([credited], PERIOD, {"p-bj": D("0.7"), "p-sh": D("0.8")})
    assert [(s.provider_id, s.revenue, s.payout) for s in summary.settlements] == [
        ("p-bj", D("45000.00"), D("31500.00")), ("p-sh", D("22500.00"), D("18000.00"))]
    assert summary.payouts + summary.margin == summary.revenue == credited.total


def test_a_met_service_level_adds_no_line() -> None:
    invoice = Invoice("INV-t-lab-2024-03", "t-lab", PERIOD, "CNY", (usage_line("p-bj", D("100.00"), 1),))
    decision = decide_credit(SLA, D("0.97"), D("100.00"))
    assert with_credits([invoice], [DueCredit(a800_terms(), SLA, decision, {"p-bj": D("100.00")})], PERIOD,
                        "CNY") == (invoice,)


parts = st.floats(min_value=0, max_value=1e7, allow_nan=False)
attempts = st.lists(st.builds(
    AttemptTime, st.builds(TimeBreakdown, parts, parts, parts, parts, parts),
    st.sampled_from(list(Cause)), st.sampled_from([None, Cause.PLATFORM, Cause.TENANT])), max_size=6)
money = st.decimals(min_value=D("0.00"), max_value=D("10000000"), places=2)
percent = st.decimals(min_value=D(0), max_value=D(100), places=2)


@st.composite
def slas(draw: st.DrawFn) -> EttrSla:
    belows = sorted(draw(st.sets(st.decimals(min_value=D("0.0001"), max_value=D(1), places=4), min_size=1,
                                 max_size=4)), reverse=True)
    percents = sorted(draw(st.lists(percent, min_size=len(belows), max_size=len(belows))))
    return EttrSla(belows[0], tuple(CreditTier(b, p) for b, p in zip(belows, percents, strict=True)), draw(percent))


@given(slas(), attempts, st.lists(money, min_size=1, max_size=3), st.lists(money, max_size=3),
       st.sampled_from([D("0"), D("0.3"), D("0.75"), D("1")]))
def test_the_credit_never_exceeds_the_cap_is_never_negative_and_the_books_still_balance(
        sla: EttrSla, runs: list[AttemptTime], charges: list[Decimal], other: list[Decimal], share: Decimal) -> None:
    time = period_time(runs)
    assert 0 <= time.platform_loss <= time.counted * (1 + 1e-12)
    measured = time.ettr
    assert measured is None or D(0) <= measured <= D(1)
    by_provider = {f"p{n}": c for n, c in enumerate(charges)}
    charge = sum(charges, D(0))
    decision = decide_credit(sla, measured, charge)
    cap = (charge * sla.cap_percent / 100).quantize(D("0.01"), rounding="ROUND_HALF_UP")
    assert D(0) <= decision.amount <= cap <= charge
    lines = tuple(usage_line(p, c, n) for n, (p, c) in enumerate(by_provider.items(), start=1)) + tuple(
        usage_line("p-other", c, 10 + n) for n, c in enumerate(other))
    invoice = Invoice("INV", "t-lab", PERIOD, "CNY", lines)
    terms = a800_terms(provider_ids=tuple(by_provider))
    (credited,) = with_credits([invoice], [DueCredit(terms, sla, decision, by_provider)], PERIOD, "CNY")
    credits = [line for line in credited.lines if line.kind == "ettr_credit"]
    assert -sum((line.amount for line in credits), D(0)) == decision.amount
    assert credited.total == invoice.total - decision.amount == sum((line.amount for line in credited.lines), D(0))
    for line in credits:  # no provider is credited more than its part of the charge
        assert D(0) < -line.amount <= by_provider[line.scope.provider_id]
    summary = settle([credited], PERIOD, {p: share for p in [*by_provider, "p-other"]})
    assert summary.payouts + summary.margin == summary.revenue == credited.total


def test_a_period_of_attempts_sums_their_times() -> None:
    runs = [AttemptTime(T, Cause.SUBMITTED, Cause.PLATFORM), AttemptTime(T, Cause.PLATFORM, None)]
    assert period_time(runs) == SlaTime(920 + 1020, 60 + 120)
    assert period_time(runs).ettr == D("0.9072")  # 1 − 180/1940
    assert utc(2024, 3, 1) == PERIOD.start
