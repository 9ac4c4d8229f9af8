"""The official openai SDK against the gateway in front of a fake engine: shapes, streaming, errors."""

from __future__ import annotations

from typing import Any

import httpx
import openai
import pytest

from tests.gateway.conftest import TOKEN, free_port, grant, one_replica, shipped


def client(server: Any, key: str = TOKEN) -> openai.OpenAI:
    return openai.OpenAI(base_url=server.base_url, api_key=key, max_retries=0, timeout=10)


def test_chat_completion_non_streaming(fake_upstream: Any, gateway: Any) -> None:
    server = gateway(one_replica(fake_upstream()))
    r = client(server).chat.completions.create(model="fake-model", messages=[{"role": "user", "content": "hi"}],
                                               max_tokens=4)
    assert r.choices[0].message.content == "tok tok tok tok "
    assert r.usage is not None and (r.usage.prompt_tokens, r.usage.completion_tokens) == (7, 4)
    events = shipped(server)
    assert len(events) == 1
    e = events[0]
    assert (e.key_id, e.model, e.replica, e.prompt_tokens, e.completion_tokens, e.status, e.stream) == (
        "alice", "fake-model", "r1", 7, 4, "ok", False)


def test_streaming_asks_engine_for_usage_and_hides_it(fake_upstream: Any, gateway: Any) -> None:
    server = gateway(one_replica(fake_upstream()))
    chunks = list(client(server).chat.completions.create(
        model="fake-model", messages=[{"role": "user", "content": "hi"}], max_tokens=3, stream=True))
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == "tok tok tok "
    assert all(c.usage is None for c in chunks) and all(c.choices for c in chunks)
    (e,) = shipped(server)
    assert (e.prompt_tokens, e.completion_tokens, e.stream, e.status, e.estimated) == (7, 3, True, "ok", False)


def test_streaming_with_include_usage_gets_final_usage_chunk(fake_upstream: Any, gateway: Any) -> None:
    server = gateway(one_replica(fake_upstream()))
    chunks = list(client(server).chat.completions.create(
        model="fake-model", messages=[{"role": "user", "content": "hi"}], max_tokens=2, stream=True,
        stream_options={"include_usage": True}))
    assert chunks[-1].usage is not None and chunks[-1].usage.completion_tokens == 2
    assert len(shipped(server)) == 1


def test_completions_embeddings_and_models(fake_upstream: Any, gateway: Any) -> None:
    server = gateway(one_replica(fake_upstream()))
    c = client(server)
    r = c.completions.create(model="fake-model", prompt="once", max_tokens=2)
    assert r.choices[0].text == "tok tok "
    s = "".join(x.choices[0].text for x in c.completions.create(model="fake-model", prompt="o", max_tokens=2,
                                                                  stream=True) if x.choices)
    assert s == "tok tok "
    emb = c.embeddings.create(model="fake-model", input="hello", encoding_format="float")
    assert emb.data[0].embedding == [0.1, 0.2, 0.3]
    assert [m.id for m in c.models.list()] == ["fake-model"]
    assert c.models.retrieve("fake-model").id == "fake-model"
    events = shipped(server)
    assert sorted(e.endpoint for e in events) == ["completions", "completions", "embeddings"]


def test_errors_have_openai_shapes(fake_upstream: Any, gateway: Any) -> None:
    port = fake_upstream()
    server = gateway({"fake-model": [{"id": "r1", "port": port}], "secret-model": [{"id": "r2", "port": port}]},
                     keys=[grant(models=frozenset({"fake-model"}))])
    with pytest.raises(openai.AuthenticationError) as auth:
        client(server, "sk-wrong").chat.completions.create(model="fake-model", messages=[])
    assert auth.value.code == "invalid_api_key"
    with pytest.raises(openai.NotFoundError) as nf:
        client(server).chat.completions.create(model="nope", messages=[{"role": "user", "content": "x"}])
    assert nf.value.code == "model_not_found"
    with pytest.raises(openai.NotFoundError):  # not in the key's model scope
        client(server).chat.completions.create(model="secret-model", messages=[{"role": "user", "content": "x"}])
    assert [m.id for m in client(server).models.list()] == ["fake-model"]
    r = httpx.post(server.base_url + "/chat/completions", content=b"{not json",
                   headers={"authorization": f"Bearer {TOKEN}"})
    assert r.status_code == 400 and r.json()["error"]["type"] == "invalid_request_error"
    assert shipped(server) == []


def test_no_healthy_replica_is_a_clear_503(gateway: Any) -> None:
    server = gateway(one_replica(free_port()))  # nothing listens there
    with pytest.raises(openai.InternalServerError) as exc:
        client(server).chat.completions.create(model="fake-model", messages=[{"role": "user", "content": "x"}])
    assert exc.value.status_code == 503
    assert exc.value.code == "no_healthy_replica"


def test_retries_on_replica_failing_before_first_byte(fake_upstream: Any, gateway: Any) -> None:
    good = fake_upstream()
    dropper = fake_upstream("--close-before-response")
    server = gateway({"fake-model": [{"id": "dead", "port": free_port()}, {"id": "dropper", "port": dropper},
                                     {"id": "good", "port": good}]})
    c = client(server)
    for _ in range(6):
        r = c.chat.completions.create(model="fake-model", messages=[{"role": "user", "content": "x"}], max_tokens=1)
        assert r.choices[0].message.content == "tok "
        assert list(c.chat.completions.create(model="fake-model", messages=[{"role": "user", "content": "x"}],
                                              max_tokens=1, stream=True))
    events = shipped(server)
    assert len(events) == 12 and {e.replica for e in events} == {"good"}


def test_metrics_per_model_and_replica(fake_upstream: Any, gateway: Any) -> None:
    server = gateway(one_replica(fake_upstream()))
    client(server).chat.completions.create(model="fake-model", messages=[{"role": "user", "content": "x"}])
    text = httpx.get(server.base_url.replace("/v1", "/metrics")).text
    assert 'zhisuan_gateway_requests_total{model="fake-model",replica="r1",status="200"} 1' in text
    assert 'zhisuan_gateway_tokens_total{model="fake-model",replica="r1",type="completion"} 5' in text
    assert 'zhisuan_gateway_ttft_seconds_count{model="fake-model",replica="r1"} 1' in text
    assert 'zhisuan_gateway_queue_depth{model="fake-model",replica="r1"} 0' in text
