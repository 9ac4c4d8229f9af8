"""The agent honours a shed (503 + Retry-After) with a jittered wait, then carries on (issue 15 item 5).

The control plane's side (admission sheds past capacity) is tests/api/test_overload.py; here a fake
control plane injects the fault: it sheds the first answers, then accepts."""

from __future__ import annotations

import httpx
import pytest
from hypothesis import given
from hypothesis import strategies as st

from zhisuan.agent import runner
from zhisuan.agent.runner import AgentError, shed_backoff_s


@given(st.integers(min_value=1, max_value=60))
def test_the_wait_is_retry_after_stretched_by_up_to_double(retry_after: int) -> None:
    wait = shed_backoff_s(str(retry_after))
    assert retry_after <= wait <= 2 * retry_after


@pytest.mark.parametrize(("header", "low", "high"), [
    ("0", 0.5, 1.0),  # never hammer: at least half a second
    ("3600", 60.0, 120.0),  # never sleep for an hour: at most a minute (+ jitter)
    ("soon", 2.0, 4.0),  # an HTTP date or garbage: a default
])
def test_the_wait_is_bounded(header: str, low: float, high: float) -> None:
    assert low <= shed_backoff_s(header) <= high


def test_shed_agents_do_not_come_back_in_step() -> None:
    waits = {round(shed_backoff_s("2"), 3) for _ in range(50)}
    assert len(waits) > 40


def shedding_server(sheds: int) -> tuple[httpx.Client, list[int]]:
    answered: list[int] = []

    def answer(request: httpx.Request) -> httpx.Response:
        status = 503 if len(answered) < sheds else 200
        answered.append(status)
        if status == 503:
            return httpx.Response(503, headers={"Retry-After": "2"}, json={"error": {"message": "at capacity"}})
        return httpx.Response(200, json={"node_id": 1, "status": "ready", "heartbeat_interval_s": 10.0})

    return httpx.Client(base_url="http://control-plane", transport=httpx.MockTransport(answer)), answered


def test_a_shed_beat_is_retried_after_the_jittered_wait(monkeypatch: pytest.MonkeyPatch) -> None:
    slept: list[float] = []
    monkeypatch.setattr(runner.time, "sleep", slept.append)
    client, answered = shedding_server(sheds=2)
    ack = runner._post(client, "/agent/heartbeat", {"node": "n1", "devices": []})
    assert ack["status"] == "ready" and answered == [503, 503, 200]
    assert len(slept) == 2 and all(2 <= wait <= 4 for wait in slept)


def test_a_server_that_keeps_shedding_is_an_error_after_a_few_tries(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(runner.time, "sleep", lambda _s: None)
    client, answered = shedding_server(sheds=100)
    with pytest.raises(AgentError) as error:
        runner._post(client, "/agent/heartbeat", {"node": "n1", "devices": []})
    assert error.value.status == 503 and len(answered) == 5
