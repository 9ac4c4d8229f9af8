"""The time breakdown adds up and its ETTR is the paper's formula; the restart rules, table-driven."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from zhisuan.core.goodput.breakdown import TimeBreakdown
from zhisuan.core.goodput.restart import Failure, RestartPolicy, decide_restart

seconds = st.floats(min_value=0, max_value=1e7, allow_nan=False)


def test_ettr_is_productive_over_wall_minus_queueing() -> None:
    b = TimeBreakdown(queueing=100, productive=900, checkpoint=30, lost=50, restart=20)
    assert b.wall == 1100
    assert b.ettr == pytest.approx(0.9)
    assert TimeBreakdown(queueing=5).ettr is None


def test_a_negative_part_is_refused_naming_it() -> None:
    with pytest.raises(ValueError, match="lost"):
        TimeBreakdown(lost=-1)


@given(st.lists(st.tuples(seconds, seconds, seconds, seconds, seconds), min_size=1, max_size=8))
def test_sums_add_up_and_the_sum_ettr_is_time_weighted(parts: list[tuple[float, ...]]) -> None:
    total = TimeBreakdown()
    for p in parts:
        total = total + TimeBreakdown(*p)
    assert total.wall == pytest.approx(sum(sum(p) for p in parts))
    running = sum(p[1] + p[2] + p[3] + p[4] for p in parts)
    if running > 0:
        assert total.ettr == pytest.approx(sum(p[1] for p in parts) / running)
        assert 0 <= (total.ettr or 0) <= 1


A, B, C = frozenset({"a"}), frozenset({"b"}), frozenset({"c"})
POLICY = RestartPolicy(max_restarts=3, backoff_base_s=10, backoff_max_s=25, same_failure_limit=2)

# (earlier failures, latest, restart?, delay, user_error?, reason contains)
CASES = [
    ([], Failure("node_fault", A, "NODE_FAIL"), True, 0.0, False, "at once"),
    ([], Failure("device_fault", A, "XID 79"), True, 0.0, False, "XID 79"),
    ([], Failure("exit_nonzero", A, "exit 1"), True, 10.0, False, "in 10 s"),
    ([Failure("exit_nonzero", A, "exit 1")], Failure("exit_nonzero", A, "exit 1"), True, 20.0, False, "in 20 s"),
    ([Failure("exit_nonzero", A, "exit 1")], Failure("exit_nonzero", B, "exit 1"), False, 0.0, True, "user error"),
    ([Failure("exit_nonzero", A, "exit 1")], Failure("exit_nonzero", B, "exit 2"), True, 20.0, False, "in 20 s"),
    ([Failure("node_fault", A), Failure("exit_nonzero", B, "x")], Failure("exit_nonzero", C | A, "x"),
     False, 0.0, True, "user error"),
    ([Failure("exit_nonzero", A, "x"), Failure("exit_nonzero", A, "y")], Failure("exit_nonzero", A, "z"),
     True, 25.0, False, "in 25 s"),
    ([Failure("hang", A)] * 3, Failure("node_fault", B), False, 0.0, False, "gave up after 3 restarts"),
]


@pytest.mark.parametrize(("earlier", "latest", "restart", "delay", "user_error", "says"), CASES)
def test_restart_rules(earlier: list[Failure], latest: Failure, restart: bool, delay: float,
                       user_error: bool, says: str) -> None:
    d = decide_restart(POLICY, earlier, latest)
    assert (d.restart, d.delay_s, d.user_error) == (restart, delay, user_error)
    assert says in d.reason
    if d.restart:
        assert d.avoid_nodes == latest.nodes


@given(st.lists(st.sampled_from([Failure("exit_nonzero", A, "s"), Failure("exit_nonzero", B, "s"),
                                 Failure("node_fault", C), Failure("exit_nonzero", A, "t")]), max_size=12))
def test_never_more_restarts_than_the_maximum(history: list[Failure]) -> None:
    restarts = 0
    for i, f in enumerate(history):
        d = decide_restart(POLICY, history[:i], f)
        if not d.restart:
            break
        restarts += 1
    assert restarts <= POLICY.max_restarts


def test_bad_policy_and_failure_kinds_are_refused_naming_the_field() -> None:
    with pytest.raises(ValueError, match="max_restarts"):
        RestartPolicy(max_restarts=-1)
    with pytest.raises(ValueError, match="kind"):
        Failure("cosmic_ray", A)
