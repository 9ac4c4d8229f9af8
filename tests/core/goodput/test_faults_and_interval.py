"""The Llama 3 fault table, the Young/Daly intervals, the first-order ETTR and the adaptive MTBF estimate."""

from __future__ import annotations

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from zhisuan.core.goodput.faults import (
    COMPONENTS,
    LLAMA3_TABLE5,
    FaultModel,
    llama3_planned_per_day,
    llama3_rates_per_million_gpu_hours,
)
from zhisuan.core.goodput.interval import daly_interval, estimated_mtbf, first_order_ettr, young_interval
from zhisuan.core.goodput.restart import FAILURE_KINDS


def test_table5_as_printed() -> None:
    assert len(LLAMA3_TABLE5) == 17
    assert sum(c.count for c in LLAMA3_TABLE5) == 422  # the printed counts; the text says 419
    assert COMPONENTS["faulty_gpu"].count == 148 and COMPONENTS["faulty_gpu"].printed_share == 30.1
    for c in LLAMA3_TABLE5:
        assert c.kind in FAILURE_KINDS and c.node_fate in ("repair", "check", "healthy")
        if c.name != "faulty_gpu":  # every other printed share is count / 419, to the printed digit
            assert c.printed_share == pytest.approx(100 * c.count / 419, abs=0.06)
    hardware = sum(c.count for c in LLAMA3_TABLE5 if c.category in ("GPU", "Host", "Network"))
    assert 0.7 < hardware / 422 < 0.8  # "about 78% … confirmed or suspected hardware issues"


def test_llama3_rates_give_419_failures_in_54_days_on_16384_gpus() -> None:
    model = FaultModel()
    expected_failures = model.job_rate_per_s(16_384) * 54 * 86_400
    assert expected_failures == pytest.approx(419)
    assert model.job_mtbf_s(16_384) / 3600 == pytest.approx(54 * 24 / 419)
    assert sum(llama3_rates_per_million_gpu_hours().values()) == pytest.approx(19.73, abs=0.01)
    assert llama3_planned_per_day() == pytest.approx(47 / 54)
    # half the GPUs, half the rate: failures are per GPU
    assert model.job_mtbf_s(8_192) == pytest.approx(2 * model.job_mtbf_s(16_384))


def test_mix_follows_the_rates_and_skips_components_that_never_fail() -> None:
    model = FaultModel({"faulty_gpu": 3.0, "nic": 1.0, "ssd": 0.0})
    components, shares = model.mix()
    assert [c.name for c in components] == ["faulty_gpu", "nic"] and shares == (0.75, 0.25)
    assert FaultModel({}).job_mtbf_s(8) == math.inf
    assert model.scaled(2).job_rate_per_s(8) == pytest.approx(2 * model.job_rate_per_s(8))


@pytest.mark.parametrize(("rates", "match"), [({"faulty_gpu": -1.0}, "faulty_gpu"), ({"gpu": 1.0}, "unknown"),
                                              ({"nic": math.nan}, "nic")])
def test_bad_rates_are_refused_naming_the_component(rates: dict[str, float], match: str) -> None:
    with pytest.raises(ValueError, match=match):
        FaultModel(rates)


@pytest.mark.parametrize(
    ("delta", "mtbf", "young", "daly1"),
    [(60, 11_135, math.sqrt(2 * 60 * 11_135), math.sqrt(2 * 60 * 11_135) - 60), (1, 50, 10, 9), (8, 100, 40, 32)],
)
def test_young_and_daly_intervals(delta: float, mtbf: float, young: float, daly1: float) -> None:
    assert young_interval(delta, mtbf) == pytest.approx(young)
    assert daly_interval(delta, mtbf) == pytest.approx(daly1)
    assert daly1 < daly_interval(delta, mtbf, higher_order=True) < young + delta


@pytest.mark.parametrize(("delta", "mtbf"), [(100, 100), (200, 100), (0, 100), (10, 0), (-1, 100)])
def test_a_checkpoint_not_shorter_than_the_mtbf_is_refused(delta: float, mtbf: float) -> None:
    with pytest.raises(ValueError):
        daly_interval(delta, mtbf)


@given(st.floats(0.1, 1000), st.floats(1.5, 1e4))
def test_daly_minimises_the_first_order_waste(delta: float, ratio: float) -> None:
    """The first-order interval is where the first-order ETTR model peaks (with R = 0, L = 0)."""
    mtbf = delta * ratio * 10
    tau = daly_interval(delta, mtbf)
    best = first_order_ettr(tau, delta, 0, mtbf)
    for factor in (0.5, 0.8, 1.25, 2.0):
        assert first_order_ettr(tau * factor, delta, 0, mtbf) <= best + 1e-9


def test_first_order_ettr_values() -> None:
    assert first_order_ettr(3600, 60, 0, math.inf) == pytest.approx(3600 / 3660)
    # τ = 1 h, δ = 0 ⇒ each failure (M = 10 h) costs R + τ/2 = 0.5 h + 0.5 h: 10 % waste
    assert first_order_ettr(3600, 1e-9, 1800, 36_000) == pytest.approx(0.9)
    assert first_order_ettr(3600, 60, 1e9, 36_000) == 0.0


def test_adaptive_estimate_moves_from_the_prior_to_the_observed_rate() -> None:
    assert estimated_mtbf(10_000, 3, 0, 0) == 10_000
    assert estimated_mtbf(10_000, 3, 3, 30_000) == pytest.approx(60_000 / 6)
    many = estimated_mtbf(10_000, 3, 1000, 1000 * 2_000)
    assert many == pytest.approx(2_000, rel=0.02)
    assert estimated_mtbf(math.inf, 3, 0, 100) == math.inf and estimated_mtbf(math.inf, 3, 4, 100) == 25
