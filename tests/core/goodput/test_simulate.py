"""The goodput simulator: its breakdown adds up to the window, it agrees with the first-order model where
that model holds, every failure goes through ``decide_restart``, and spares and intervals do what they say."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from zhisuan.core.goodput.faults import FaultModel
from zhisuan.core.goodput.interval import daly_interval, first_order_ettr
from zhisuan.core.goodput.restart import RestartPolicy
from zhisuan.core.goodput.simulate import DAY_S, Policy, Scenario, check_feasible, simulate

SYNC = Policy("sync", blocking_s=60, load_s=120, detection_s=30, requeue_s=300, startup_s=180)


def ettrs(scenario: Scenario, policy: Policy, seeds: range) -> np.ndarray:
    return np.array([simulate(scenario, policy, seed).breakdown.ettr for seed in seeds])


@settings(max_examples=40, deadline=None)
@given(
    gpus=st.integers(8, 20_000),
    rate_scale=st.floats(0.01, 20),
    days=st.floats(0.5, 30),
    interval=st.sampled_from(["fixed", "young_daly", "adaptive"]),
    blocking=st.floats(0.5, 120),
    lag=st.floats(0, 300),
    spares=st.integers(0, 8),
    planned=st.floats(0, 5),
    max_restarts=st.integers(0, 4),
    seed=st.integers(0, 2**32 - 1),
)
def test_breakdown_adds_up_to_the_window(gpus: int, rate_scale: float, days: float, interval: str, blocking: float,
                                         lag: float, spares: int, planned: float, max_restarts: int,
                                         seed: int) -> None:
    faults = FaultModel(planned_per_day=planned).scaled(rate_scale)
    scenario = Scenario(gpus=gpus, horizon_s=days * DAY_S, faults=faults,
                        restart_policy=RestartPolicy(max_restarts=max_restarts))
    policy = Policy("p", interval=interval, fixed_interval_s=1800, blocking_s=blocking, lag_s=lag, spares=spares)
    if blocking >= scenario.mtbf_s:
        return
    result = simulate(scenario, policy, seed)
    b = result.breakdown
    assert b.wall == pytest.approx(scenario.horizon_s, rel=1e-9)
    assert b.queueing == 0 and 0 <= (b.ettr or 0) <= 1
    assert result.spare_swaps + result.requeues == result.failures + result.planned  # one node replaced each
    assert sum(result.by_component.values()) == result.failures


def test_same_seed_same_run_and_seeds_differ() -> None:
    scenario = Scenario()
    assert simulate(scenario, SYNC, 7) == simulate(scenario, SYNC, 7)
    assert simulate(scenario, SYNC, 7).breakdown != simulate(scenario, SYNC, 8).breakdown


def test_without_failures_only_checkpoints_cost_time() -> None:
    scenario = Scenario(faults=FaultModel({}, planned_per_day=0), horizon_s=10 * 3600)
    result = simulate(scenario, Policy("p", fixed_interval_s=940, blocking_s=60), 1)
    assert result.failures == 0 and result.breakdown.lost == 0 and result.breakdown.restart == 0
    assert result.breakdown.checkpoint == pytest.approx(36 * 60)  # 36 full cycles of 1000 s, each blocking 60 s
    assert result.breakdown.ettr == pytest.approx(1 - 36 * 60 / 36_000)


@pytest.mark.parametrize("policy", [
    Policy("sync-1h", blocking_s=60, load_s=120, detection_s=30, requeue_s=300, startup_s=180),
    Policy("sync-yd", interval="young_daly", blocking_s=60, load_s=120, detection_s=30, requeue_s=300),
    Policy("async", interval="young_daly", blocking_s=5, lag_s=20, load_s=30, detection_s=30, requeue_s=300),
])
def test_agrees_with_the_first_order_model_where_it_holds(policy: Policy) -> None:
    """At a low failure rate (M ≈ 31 h ≫ τ, R) the simulated mean ETTR is the first-order formula's."""
    scenario = Scenario(gpus=1_636, faults=FaultModel(planned_per_day=0), horizon_s=200 * DAY_S,
                        restart_policy=RestartPolicy(max_restarts=50))
    mtbf = scenario.mtbf_s
    assert 30 * 3600 < mtbf < 32 * 3600
    tau = policy.fixed_interval_s if policy.interval == "fixed" else daly_interval(policy.blocking_s, mtbf)
    restart = policy.detection_s + policy.requeue_s + policy.startup_s + policy.load_s  # no spares, no hangs…
    hang_extra = (policy.hang_detection_s - policy.detection_s) * scenario.faults.rates["nccl_watchdog"] / sum(
        scenario.faults.rates.values())
    backoff = 10 * (scenario.faults.rates["software_bug"] + scenario.faults.rates["dependency"]) / sum(
        scenario.faults.rates.values())
    expected = first_order_ettr(tau, policy.blocking_s, restart + hang_extra + backoff, mtbf, policy.lag_s)
    simulated = ettrs(scenario, policy, range(40))
    assert simulated.mean() == pytest.approx(expected, abs=0.003)


def test_every_failure_goes_through_decide_restart() -> None:
    """With max_restarts = 0 decide_restart refuses every failure, so each one waits for a person."""
    refuse = Scenario(restart_policy=RestartPolicy(max_restarts=0), human_fix_s=3600)
    allow = Scenario(restart_policy=RestartPolicy(max_restarts=1000), human_fix_s=3600)
    refused, allowed = simulate(refuse, SYNC, 3), simulate(allow, SYNC, 3)
    assert refused.human_interventions == refused.failures > 300
    assert allowed.human_interventions == 0
    assert refused.breakdown.restart > allowed.breakdown.restart + 300 * 3600


def test_a_program_failure_backs_off_as_decide_restart_says() -> None:
    """Only software bugs: the backoff base is added to each restart (hardware restarts at once)."""
    only_bugs = FaultModel({"software_bug": 20.0}, planned_per_day=0)
    fast = Scenario(faults=only_bugs, restart_policy=RestartPolicy(backoff_base_s=0, backoff_max_s=0))
    slow = Scenario(faults=only_bugs, restart_policy=RestartPolicy(backoff_base_s=500, backoff_max_s=500))
    a, b = simulate(fast, SYNC, 5), simulate(slow, SYNC, 5)
    assert b.breakdown.restart > a.breakdown.restart + 0.8 * 500 * a.failures


def test_hot_spares_replace_failed_nodes_until_the_pool_runs_dry() -> None:
    scenario = Scenario(repair_s=30 * DAY_S)  # nodes come back slowly: the pool drains
    none = simulate(scenario, SYNC, 11)
    few = simulate(scenario, Policy("few", blocking_s=60, requeue_s=300, spares=4), 11)
    many = simulate(scenario, Policy("many", blocking_s=60, requeue_s=300, spares=10_000), 11)
    assert none.spare_swaps == 0 and none.requeues > 400
    assert 4 <= few.spare_swaps < 60 and few.requeues > 300
    assert many.requeues == 0 and many.spare_swaps == many.failures + many.planned
    assert many.breakdown.restart < none.breakdown.restart


def test_spares_return_after_repair() -> None:
    """Fast repair: a pool of 8 covers every failure; slow repair: it does not."""
    policy = Policy("p", blocking_s=60, spares=8)
    fast = simulate(Scenario(repair_s=600), policy, 2)
    slow = simulate(Scenario(repair_s=60 * DAY_S), policy, 2)
    assert fast.requeues == 0 and slow.requeues > 300


def test_interval_rules() -> None:
    scenario = Scenario()
    yd = Policy("yd", interval="young_daly", blocking_s=60)
    assert simulate(scenario, yd, 1).mean_interval_s == pytest.approx(daly_interval(60, scenario.mtbf_s))
    # adaptive with a prior 3× too optimistic learns the real rate: its intervals shrink towards Daly's
    optimistic = Scenario(assumed_rate_scale=1 / 3)
    adaptive = simulate(optimistic, Policy("ad", interval="adaptive", blocking_s=60), 1)
    static = simulate(optimistic, yd, 1)
    assert adaptive.mean_interval_s < 0.75 * static.mean_interval_s
    assert adaptive.breakdown.ettr > static.breakdown.ettr


def test_platform_policy_beats_the_baselines_on_the_llama3_fleet() -> None:
    scenario = Scenario()
    fixed = ettrs(scenario, SYNC, range(6))
    yd = ettrs(scenario, Policy("yd", interval="young_daly", blocking_s=60, load_s=120, detection_s=30,
                                requeue_s=300, startup_s=180), range(6))
    platform = ettrs(scenario, Policy("platform", interval="adaptive", blocking_s=2, lag_s=10, load_s=30,
                                      detection_s=30, requeue_s=300, startup_s=180, spares=32), range(6))
    assert fixed.mean() < yd.mean() < platform.mean()


@pytest.mark.parametrize(("field", "kwargs"), [
    ("gpus", {"gpus": 0}), ("horizon_s", {"horizon_s": -1}), ("repair_s", {"repair_s": -5}),
    ("assumed_rate_scale", {"assumed_rate_scale": 0})])
def test_bad_scenarios_name_the_field(field: str, kwargs: dict) -> None:
    with pytest.raises(ValueError, match=field):
        Scenario(**kwargs)


@pytest.mark.parametrize(("field", "kwargs"), [
    ("blocking_s", {"blocking_s": 0}), ("startup_s", {"startup_s": -1}), ("spares", {"spares": -1}),
    ("interval", {"interval": "sometimes"}), ("detection_s", {"detection_s": math.nan})])
def test_bad_policies_name_the_field(field: str, kwargs: dict) -> None:
    with pytest.raises(ValueError, match=field):
        Policy("p", **kwargs)


def test_a_checkpoint_slower_than_the_mtbf_is_refused() -> None:
    scenario = Scenario()  # M ≈ 3.1 h
    with pytest.raises(ValueError, match="blocking_s.*MTBF"):
        check_feasible(scenario, Policy("p", blocking_s=4 * 3600))
    with pytest.raises(ValueError, match="MTBF"):
        simulate(scenario, Policy("p", blocking_s=4 * 3600), 1)
