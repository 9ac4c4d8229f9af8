"""A replica that sends nothing within the first-byte timeout: the request moves to another healthy
replica; with none left the client gets an OpenAI-shaped 504 ``upstream_timeout``."""

from __future__ import annotations

from typing import Any

import openai
import pytest

from tests.gateway.conftest import TOKEN, shipped


def client(server: Any) -> openai.OpenAI:
    return openai.OpenAI(base_url=server.base_url, api_key=TOKEN, max_retries=0, timeout=30)


def ask(server: Any, stream: bool) -> str:
    c = client(server)
    if stream:
        chunks = c.chat.completions.create(model="fake-model", messages=[{"role": "user", "content": "hi"}],
                                           max_tokens=2, stream=True)
        return "".join(x.choices[0].delta.content or "" for x in chunks if x.choices)
    r = c.chat.completions.create(model="fake-model", messages=[{"role": "user", "content": "hi"}], max_tokens=2)
    return r.choices[0].message.content or ""


@pytest.mark.parametrize("stream", [False, True])
def test_a_stalled_replica_is_timed_out_and_the_request_retried_elsewhere(fake_upstream: Any, gateway: Any,
                                                                         stream: bool) -> None:
    stalled, good = fake_upstream("--stall"), fake_upstream()
    server = gateway({"fake-model": [{"id": "stalled", "port": stalled}, {"id": "good", "port": good}]},
                     first_byte_timeout_s=0.3, nonstream_first_byte_timeout_s=0.3)
    # Round-robin tie-breaking starts on a different replica each time: two requests reach both.
    assert [ask(server, stream) for _ in range(4)] == ["tok tok "] * 4
    stats = server.gateway.metrics.stats
    timeouts = stats[("fake-model", "stalled")].errors
    assert set(timeouts) == {"first_byte_timeout"} and timeouts["first_byte_timeout"] >= 1
    assert not stats[("fake-model", "stalled")].requests  # it answered nothing
    events = shipped(server)
    assert len(events) == 4 and {(e.replica, e.status) for e in events} == {("good", "ok")}
    metrics = server.gateway.metrics.render().decode()
    assert 'kind="first_byte_timeout"' in metrics


@pytest.mark.parametrize("stream", [False, True])
def test_only_stalled_replicas_give_an_openai_shaped_504(fake_upstream: Any, gateway: Any, stream: bool) -> None:
    a, b = fake_upstream("--stall"), fake_upstream("--stall")
    server = gateway({"fake-model": [{"id": "a", "port": a}, {"id": "b", "port": b}]},
                     first_byte_timeout_s=0.2, nonstream_first_byte_timeout_s=0.2)
    with pytest.raises(openai.InternalServerError) as err:
        ask(server, stream)
    assert err.value.status_code == 504
    assert err.value.code == "upstream_timeout"
    assert isinstance(err.value.body, dict) and err.value.body["type"] == "server_error"
    stats = server.gateway.metrics.stats
    assert stats[("fake-model", "a")].errors == stats[("fake-model", "b")].errors == {"first_byte_timeout": 1}
    assert shipped(server) == []  # nothing was generated that the gateway could meter


def test_the_stream_timeout_does_not_cut_a_slow_non_streaming_answer(fake_upstream: Any, gateway: Any) -> None:
    """A non-streaming answer arrives whole after generation: it has its own (longer) timeout."""
    slow = fake_upstream("--delay-ms", "500")
    server = gateway({"fake-model": [{"id": "slow", "port": slow}]}, first_byte_timeout_s=0.1,
                     nonstream_first_byte_timeout_s=30)
    assert ask(server, False) == "tok tok "
    assert server.gateway.metrics.stats[("fake-model", "slow")].errors == {}
