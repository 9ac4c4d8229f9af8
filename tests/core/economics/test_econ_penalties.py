"""Penalties on paper: the tenant's invoice line(s) and the providers' settlement under the rule in
``core.economics.penalties``."""

from decimal import Decimal

from hypothesis import given
from hypothesis import strategies as st
from tests.core.economics.econ_helpers import utc
from tests.core.economics.test_econ_contracts import a800_terms

from zhisuan.core.economics.contracts import Contract, activate, terminate
from zhisuan.core.economics.penalties import DuePenalty, split_by_weight, with_penalties
from zhisuan.core.economics.periods import billing_period
from zhisuan.core.economics.rating import settle

D = Decimal


@given(st.decimals(min_value=D("0.01"), max_value=D("10000000"), places=2),
       st.lists(st.integers(0, 64), min_size=1, max_size=5).filter(lambda w: sum(w) > 0))
def test_a_split_penalty_sums_to_the_penalty_to_the_fen(amount: Decimal, weights: list[int]) -> None:
    order = [f"p{n}" for n in range(len(weights))]
    parts = split_by_weight(amount, dict(zip(order, weights, strict=True)), order)
    assert sum(parts.values()) == amount
    for provider, weight in zip(order, weights, strict=True):
        exact = amount * weight / sum(weights)
        assert abs(parts[provider] - exact) < D("0.01")


def test_the_month_14_penalty_is_billed_in_its_period_and_settled_at_the_revenue_share() -> None:
    ended = terminate(activate(Contract(a800_terms(provider_ids=("p-bj", "p-sh"))), utc(2023, 12, 20)),
                      notice_at=utc(2025, 1, 16))
    step = ended.transitions[-1]
    assert step.penalty == D("337500.00") and step.at == utc(2025, 2, 15)
    period = billing_period(2025, 2)
    due = DuePenalty(ended, step.penalty, {"p-bj": 2, "p-sh": 1})  # two thirds of the capacity in Beijing
    (invoice,) = with_penalties((), [due], period, "CNY")
    assert invoice.tenant_id == "t-lab" and invoice.total == D("337500.00")
    assert [(line.line_no, line.kind, line.scope.provider_id, line.amount) for line in invoice.lines] == [
        (1, "penalty", "p-bj", D("225000.00")), (2, "penalty", "p-sh", D("112500.00"))]
    assert {str(line.price_source) for line in invoice.lines} == {"penalty:C-A800@a0"}
    summary = settle([invoice], period, {"p-bj": D("0.7"), "p-sh": D("0.6")})
    assert [(s.provider_id, s.revenue, s.payout) for s in summary.settlements] == [
        ("p-bj", D("225000.00"), D("157500.00")), ("p-sh", D("112500.00"), D("67500.00"))]
    assert summary.margin == D("112500.00")
