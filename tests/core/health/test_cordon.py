"""The cordon rule: faults cordon with their reason; only a clean period or an operator's check returns a node."""

from datetime import UTC, datetime, timedelta

from zhisuan.core.health.cordon import CordonState, NodeHealth, after_report, uncordon_check

T0 = datetime(2026, 12, 2, tzinfo=UTC)
CLEAR = timedelta(seconds=60)
FAULT = NodeHealth(True, ("device 1: XID 79",))
CLEAN = NodeHealth(True, ())


def test_fault_cordons_with_reason_and_clean_period_returns() -> None:
    state = after_report(CordonState(None), FAULT, T0, CLEAR)
    assert (state.reason, state.since) == ("device 1: XID 79", T0)
    state = after_report(state, CLEAN, T0 + timedelta(seconds=10), CLEAR)
    assert state.reason is not None and state.clean_since == T0 + timedelta(seconds=10)
    assert after_report(state, CLEAN, T0 + timedelta(seconds=69), CLEAR).reason is not None
    assert after_report(state, CLEAN, T0 + timedelta(seconds=70), CLEAR).reason is None


def test_a_flapping_report_restarts_the_clean_period() -> None:
    state = after_report(CordonState(None), FAULT, T0, CLEAR)
    state = after_report(state, CLEAN, T0 + timedelta(seconds=1), CLEAR)
    state = after_report(state, FAULT, T0 + timedelta(seconds=50), CLEAR)
    state = after_report(state, CLEAN, T0 + timedelta(seconds=65), CLEAR)
    assert state.reason is not None and state.since == T0 and state.clean_since == T0 + timedelta(seconds=65)


def test_unreachable_cordons_and_manual_never_clears_by_itself() -> None:
    assert after_report(CordonState(None), NodeHealth(False, ()), T0, CLEAR).reason == "agent lost: no heartbeat"
    manual = CordonState("operator: maintenance", T0, None, True)
    later = after_report(manual, CLEAN, T0 + timedelta(days=1), CLEAR)
    assert after_report(later, CLEAN, T0 + timedelta(days=2), CLEAR).reason == "operator: maintenance"


def test_uncordon_check() -> None:
    assert uncordon_check(CLEAN) == ""
    assert "still reports faults: device 1: XID 79" in uncordon_check(FAULT)
    assert "unreachable" in uncordon_check(NodeHealth(False, ()))
