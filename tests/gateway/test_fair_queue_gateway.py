"""The gateway's own fair queue, end to end: a replica listed with ``slots`` gets at most that many
requests of this gateway at once; the rest wait in the gateway and a freed slot goes round-robin over
tenants, so a quiet tenant is not stuck behind a noisy tenant's burst (proxy.py, admission.py).

FAKE engines (tests/gateway/fake_engines.py): one slot, a request at a time, like llama-server
started with ``--parallel 1``."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
import pytest

from tests.gateway.conftest import free_port, grant, shipped
from tests.gateway.fake_engines import FakeQueueingEngine

NOISY, QUIET = "sk-test-noisy", "sk-test-quiet"
KEYS = [grant(key_id="noisy", tenant_id="tenant-noisy"), grant(key_id="quiet", tenant_id="tenant-quiet")]


def one_slot(engine: FakeQueueingEngine, slots: int | None = 1) -> dict[str, list[dict[str, Any]]]:
    return {"m": [{"id": "fake-1slot", "port": engine.port, "slots": slots}]}


def call(server: Any, token: str, stream: bool, timeout: float = 30.0) -> httpx.Response:
    body = {"model": "m", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 4, "stream": stream}
    return httpx.post(f"{server.base_url}/chat/completions", json=body, timeout=timeout,
                      headers={"authorization": f"Bearer {token}"})


def queue_length(server: Any) -> int:
    return sum(r.queue.length for r in server.router.routes.values())


async def noisy_out_if_quiet_queued(server: Any) -> int | None:
    """Read on the gateway's loop (at one instant): when the quiet tenant's request waits in the queue,
    how many of the ten noisy ones had left their slot; else None."""
    (route,) = server.router.routes.values()
    if route.queue.count("tenant-quiet") == 0:
        return None
    noisy_in = sum(r.outstanding for r in server.router.by_id.values()) + queue_length(server) - 1
    return 10 - noisy_in


def noisy_out_when_quiet_queues(server: Any) -> int:
    deadline = time.monotonic() + 10
    while (out := server.loop_thread.run(noisy_out_if_quiet_queued(server))) is None:
        assert time.monotonic() < deadline, "the quiet request never queued"
        time.sleep(0.005)
    return int(out)


def wait_until(check: Callable[[], bool], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.01)


@pytest.mark.parametrize("stream", [True, False])
def test_a_quiet_tenant_waits_for_the_noisy_request_in_the_slot_not_for_its_queue(fake_engine: Any, gateway: Any,
                                                                                stream: bool) -> None:
    engine = fake_engine(token_s=0.1)  # ~0.4 s a request, one at a time
    server = gateway(one_slot(engine), keys=KEYS)
    finished: list[str] = []
    lock = threading.Lock()

    def request(token: str, name: str) -> int:
        response = call(server, token, stream)
        with lock:
            finished.append(name)
        return response.status_code

    with ThreadPoolExecutor(11) as pool:
        noisy = [pool.submit(request, NOISY, f"noisy-{i}") for i in range(10)]
        replica = server.router.by_id["fake-1slot"]
        # All ten arrived: one in the slot, the rest waiting in the gateway (or done already).
        wait_until(lambda: len(finished) + replica.outstanding + queue_length(server) == 10)
        assert replica.outstanding == 1 and queue_length(server) >= 5
        quiet = pool.submit(request, QUIET, "quiet")
        before = noisy_out_when_quiet_queues(server)
        statuses = [f.result() for f in noisy] + [quiet.result()]
    assert statuses == [200] * 11
    # The noisy request in the slot (the noisy tenant's turn), then quiet: none of the queued noisy ones.
    assert finished.index("quiet") <= before + 1, finished
    events = shipped(server)
    assert len(events) == 11 and {e.status for e in events} == {"ok"}
    text = server.gateway.metrics.render().decode()
    assert 'zhisuan_gateway_queue_length{model="m"} 0' in text
    waited = int(text.split('zhisuan_gateway_queue_wait_seconds_count{model="m"} ')[1].split()[0])
    assert 6 <= waited <= 10  # the quiet one and the noisy ones that came while the slot was taken


def test_a_full_queue_answers_503_with_retry_after_and_429_to_the_tenant_that_alone_fills_it(
        fake_engine: Any, gateway: Any) -> None:
    engine = fake_engine(token_s=0.1)
    server = gateway(one_slot(engine), keys=KEYS, queue_max_length=2)
    with ThreadPoolExecutor(3) as pool:
        held = [pool.submit(call, server, NOISY, False) for _ in range(3)]  # one in the slot, two waiting
        wait_until(lambda: queue_length(server) == 2)
        own = call(server, NOISY, False)
        other = call(server, QUIET, True)
        assert [f.result().status_code for f in held] == [200, 200, 200]
    assert own.status_code == 429 and own.headers["retry-after"] == "2"
    assert own.json()["error"]["code"] == "rate_limit_exceeded"
    assert other.status_code == 503 and other.headers["retry-after"] == "2"
    assert other.json()["error"] == {"message": "The queue of model 'm' is full; try again later.",
                                     "type": "service_unavailable", "param": None, "code": "queue_full"}
    text = server.gateway.metrics.render().decode()
    assert 'zhisuan_gateway_rejected_total{model="m",reason="queue_full"} 1' in text
    assert 'zhisuan_gateway_rejected_total{model="m",reason="queue_full_own"} 1' in text
    assert len(shipped(server)) == 3  # the refused were never forwarded: no usage event


def test_the_longest_wait_answers_503(fake_engine: Any, gateway: Any) -> None:
    engine = fake_engine(token_s=0.3)  # ~1.2 s in the slot
    server = gateway(one_slot(engine), keys=KEYS, queue_max_wait_s=0.3)
    with ThreadPoolExecutor(1) as pool:
        holder = pool.submit(call, server, NOISY, True)
        wait_until(lambda: server.router.by_id["fake-1slot"].outstanding == 1)
        late = call(server, QUIET, True)
        assert holder.result().status_code == 200
    assert late.status_code == 503 and late.json()["error"]["code"] == "queue_timeout"
    assert late.headers["retry-after"] == "2"


def test_a_client_that_disconnects_while_queued_leaves_the_queue_at_once(fake_engine: Any, gateway: Any) -> None:
    engine = fake_engine(token_s=0.2)  # ~0.8 s in the slot
    server = gateway(one_slot(engine), keys=KEYS)
    with ThreadPoolExecutor(2) as pool:
        holder = pool.submit(call, server, NOISY, True)
        wait_until(lambda: server.router.by_id["fake-1slot"].outstanding == 1)
        leaver = pool.submit(call, server, QUIET, True, 0.3)  # the client gives up after 0.3 s
        wait_until(lambda: queue_length(server) == 1)
        with pytest.raises(httpx.ReadTimeout):
            leaver.result()
        wait_until(lambda: queue_length(server) == 0, timeout=0.5)  # gone long before the slot frees
        assert holder.result().status_code == 200
    assert engine.answered == 1  # the one who left was never forwarded
    text = server.gateway.metrics.render().decode()
    assert 'zhisuan_gateway_rejected_total{model="m",reason="client_gone_while_queued"} 1' in text


def test_gateway_queued_requests_count_in_the_load_report(fake_engine: Any, gateway: Any) -> None:
    """The autoscaler's in-flight and queue-time measures see requests waiting in the gateway."""
    engine = fake_engine(token_s=0.1)
    server = gateway(one_slot(engine), keys=KEYS)
    with ThreadPoolExecutor(3) as pool:
        held = [pool.submit(call, server, NOISY, False) for _ in range(3)]
        wait_until(lambda: queue_length(server) == 2)
        time.sleep(0.1)
        (load,) = server.router.take_load()
        assert [f.result().status_code for f in held] == [200] * 3
    assert load["in_flight"] == 3 and load["queued"] == 3  # 1 at the engine awaiting its head + 2 in the gateway
    assert load["queue_wait_s"] >= 0.05


def test_a_dead_replica_gives_its_slot_back_and_the_retry_queues_for_the_live_one(fake_engine: Any,
                                                                                 gateway: Any) -> None:
    """Retries on connection failure still work under the cap: the refused request gives the dead
    replica's slot back, and waits in the queue for the live replica's one slot if it is taken."""
    live = fake_engine(token_s=0.05)
    dead_port = free_port()  # nothing listens: connections are refused
    models = {"m": [{"id": "live", "port": live.port, "slots": 1}, {"id": "dead", "port": dead_port, "slots": 1}]}
    server = gateway(models, keys=KEYS)
    with ThreadPoolExecutor(4) as pool:
        statuses = list(pool.map(lambda i: call(server, NOISY if i % 2 else QUIET, i % 2 == 0).status_code, range(4)))
    assert statuses == [200] * 4
    assert live.answered == 4
    assert server.gateway.metrics.stats[("m", "dead")].errors.get("connect", 0) >= 1
    assert {r.id: r.outstanding for r in server.router.all_replicas()} == {"live": 0, "dead": 0}
