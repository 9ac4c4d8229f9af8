"""Queued is not hung: a request waiting in a busy replica's queue gets no byte for longer than the
first-byte timeout, yet the replica is fine. The gateway gives such a request another window as long
as the replica keeps sending bytes of other requests, or proves with its ``/slots`` that it works
(proxy.py); a replica that does neither in a window is hung and ejected as before
(``errors{kind="first_byte_timeout"}``).

FAKE engines (tests/gateway/fake_engines.py) queue like a one-slot llama-server, or hang."""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
import openai
import pytest

from tests.gateway.conftest import TOKEN, shipped
from tests.gateway.fake_engines import FakeQueueingEngine

BURST = 6
WINDOW_S = 1.0  # first-byte timeout; one request takes ~0.6 s at the FAKE, the last of a burst waits ~3 s


def ask(server: Any, stream: bool) -> str:
    """The answer's text, or the HTTP status of the refusal."""
    c = openai.OpenAI(base_url=server.base_url, api_key=TOKEN, max_retries=0, timeout=30)
    messages: Any = [{"role": "user", "content": "hi"}]
    try:
        if stream:
            chunks = c.chat.completions.create(model="m", messages=messages, max_tokens=5, stream=True)
            return "".join(x.choices[0].delta.content or "" for x in chunks if x.choices)
        r = c.chat.completions.create(model="m", messages=messages, max_tokens=5)
        return r.choices[0].message.content or ""
    except openai.APIStatusError as err:
        return str(err.status_code)


def burst(server: Any, stream: bool, n: int = BURST) -> list[str]:
    with ThreadPoolExecutor(n) as pool:
        return list(pool.map(lambda _: ask(server, stream), range(n)))


def replicas(*engines: tuple[str, FakeQueueingEngine]) -> dict[str, list[dict[str, Any]]]:
    return {"m": [{"id": name, "port": e.port} for name, e in engines]}


@pytest.mark.parametrize("stream", [True, False])
def test_a_burst_queued_at_a_busy_replica_is_answered_without_ejection(fake_engine: Any, gateway: Any,
                                                                       stream: bool) -> None:
    busy = fake_engine()
    server = gateway(replicas(("busy", busy)), first_byte_timeout_s=WINDOW_S, nonstream_first_byte_timeout_s=WINDOW_S)
    assert burst(server, stream) == ["tok " * 5] * BURST
    stats = server.gateway.metrics.stats[("m", "busy")]
    assert stats.errors == {}  # never timed out, never ejected
    assert stats.queued_windows >= 1  # the last ones waited past one window
    assert 'zhisuan_gateway_replica_healthy{model="m",replica="busy"} 1' in server.gateway.metrics.render().decode()
    events = shipped(server)
    assert len(events) == BURST and {e.status for e in events} == {"ok"}


def test_without_the_judgement_the_same_burst_ejects_the_busy_replica(fake_engine: Any, gateway: Any) -> None:
    """The rule before (``max_queued_s=0``): the queued requests time out and the replica is ejected."""
    busy = fake_engine()
    server = gateway(replicas(("busy", busy)), first_byte_timeout_s=WINDOW_S, max_queued_s=0)
    answers = burst(server, True)
    assert "504" in answers
    assert server.gateway.metrics.stats[("m", "busy")].errors.get("first_byte_timeout", 0) >= 1


def test_a_hung_replica_is_ejected_and_the_queued_one_is_not(fake_engine: Any, gateway: Any) -> None:
    busy, hung = fake_engine(), fake_engine(hang_after=0)
    server = gateway(replicas(("busy", busy), ("hung", hung)), first_byte_timeout_s=WINDOW_S)
    assert burst(server, True) == ["tok " * 5] * BURST
    stats = server.gateway.metrics.stats
    assert stats[("m", "busy")].errors == {}
    assert set(stats[("m", "hung")].errors) == {"first_byte_timeout"}
    assert not stats[("m", "hung")].requests  # it answered nothing
    assert {(e.replica, e.status) for e in shipped(server)} == {("busy", "ok")}
    metrics = server.gateway.metrics.render().decode()
    assert 'zhisuan_gateway_errors_total{model="m",replica="hung",kind="first_byte_timeout"}' in metrics


def test_a_replica_that_stops_progressing_with_a_queue_is_ejected(fake_engine: Any, gateway: Any) -> None:
    """Busy until it wedges: the window after its last byte shows no progress, and its queued requests
    time out then (not after ``max_queued_s``)."""
    wedged = fake_engine(hang_after=1)
    server = gateway(replicas(("wedged", wedged)), first_byte_timeout_s=WINDOW_S)
    began = time.monotonic()
    answers = burst(server, True, 3)
    assert sorted(answers) == ["504", "504", "tok " * 5]
    assert time.monotonic() - began < 20  # two or three windows, far below max_queued_s (600 s)
    assert set(server.gateway.metrics.stats[("m", "wedged")].errors) == {"first_byte_timeout"}


def occupy(engine: FakeQueueingEngine, seconds: float) -> threading.Thread:
    """Work this gateway does not see (another gateway's request): the engine's slot, ``seconds`` long."""
    tokens = round(seconds / engine.token_s)
    t = threading.Thread(target=httpx.post, args=(f"http://127.0.0.1:{engine.port}/v1/chat/completions",),
                         kwargs={"json": {"max_tokens": tokens}, "timeout": 30})
    t.start()
    deadline = time.monotonic() + 60  # a safety net: the slot is taken as soon as the request arrives
    while not engine.slot.locked():
        assert time.monotonic() < deadline, "the other gateway's request never reached the engine"
        time.sleep(0.01)
    return t


def test_a_replica_busy_with_work_this_gateway_does_not_see_is_probed_not_ejected(fake_engine: Any,
                                                                                  gateway: Any) -> None:
    """No byte reaches this gateway for 3 windows (another gateway's request holds the slot): the
    engine's ``/slots`` answers with a processing slot, so the request waits its turn."""
    shared = fake_engine()
    server = gateway(replicas(("shared", shared)), first_byte_timeout_s=WINDOW_S)
    other = occupy(shared, 3 * WINDOW_S)
    assert ask(server, True) == "tok " * 5
    other.join()
    stats = server.gateway.metrics.stats[("m", "shared")]
    assert stats.errors == {} and stats.queued_windows >= 2


def test_without_a_slots_endpoint_the_same_silence_is_taken_for_a_hang(fake_engine: Any, gateway: Any) -> None:
    """An engine that cannot prove it is busy (no ``/slots``) is judged by what this gateway sees."""
    shared = fake_engine(slots=False)
    server = gateway(replicas(("shared", shared)), first_byte_timeout_s=WINDOW_S)
    other = occupy(shared, 3 * WINDOW_S)
    assert ask(server, True) == "504"
    other.join()
    assert server.gateway.metrics.stats[("m", "shared")].errors == {"first_byte_timeout": 1}
