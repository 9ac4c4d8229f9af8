"""The one-box start gives a working /v1: the official openai SDK against ``zhisuan up``'s gateway,
served by llama.cpp running SmolLM2-135M-Instruct (the real engine, on CPU)."""

from __future__ import annotations

import re

import openai
import pytest

from tests.e2e.conftest import Platform
from zhisuan.engines.models import SMOLLM2_NAME


def gateway_url(platform: Platform) -> str:
    match = re.search(r"OpenAI-compatible API: (http://\S+/v1)", "".join(platform.log))
    assert match, "".join(platform.log)
    return match.group(1)


def wait_for_model(client: openai.OpenAI) -> None:
    import time

    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if any(model.id == SMOLLM2_NAME for model in client.models.list()):
            try:
                client.chat.completions.create(model=SMOLLM2_NAME, max_tokens=1,
                                               messages=[{"role": "user", "content": "hi"}])
                return
            except openai.APIStatusError as error:
                if error.status_code != 503:
                    raise
        time.sleep(0.5)
    raise AssertionError("SmolLM2 replica did not become healthy within 60 s")


def test_openai_sdk_against_the_one_box_gateway(maas_platform: Platform) -> None:
    client = openai.OpenAI(base_url=gateway_url(maas_platform), api_key=maas_platform.api_key, max_retries=0)
    wait_for_model(client)
    reply = client.chat.completions.create(model=SMOLLM2_NAME, max_tokens=16, temperature=0,
                                           messages=[{"role": "user", "content": "What is the capital of France?"}])
    assert reply.choices[0].message.content
    assert reply.usage is not None and reply.usage.prompt_tokens > 0 and reply.usage.completion_tokens > 0

    chunks = list(client.chat.completions.create(
        model=SMOLLM2_NAME, max_tokens=16, temperature=0, stream=True, stream_options={"include_usage": True},
        messages=[{"role": "user", "content": "Say hello."}]))
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text and chunks[-1].usage is not None and chunks[-1].usage.completion_tokens > 0

    with pytest.raises(openai.AuthenticationError):
        openai.OpenAI(base_url=gateway_url(maas_platform), api_key="zs_nope_nope", max_retries=0).models.list()
    with pytest.raises(openai.NotFoundError):
        client.chat.completions.create(model="no-such-model", messages=[{"role": "user", "content": "hi"}])


def test_tenant_tokens_land_in_the_usage_ledger(maas_platform: Platform) -> None:
    """A tenant's calls through /v1 become token usage records (ingested idempotently by event id)."""
    import time

    maas_platform.cli("tenant", "create", "acme")
    maas_platform.cli("user", "create", "acme-dev", "--role", "tenant", "--tenant", "acme")
    acme_key = maas_platform.cli_json("key", "create", "--user", "acme-dev")["key"]
    client = openai.OpenAI(base_url=gateway_url(maas_platform), api_key=acme_key, max_retries=0)
    wait_for_model(client)
    reply = client.chat.completions.create(model=SMOLLM2_NAME, max_tokens=8,
                                           messages=[{"role": "user", "content": "Count to three."}])
    assert reply.usage is not None
    deadline = time.monotonic() + 90  # a safety net: the gateway meters asynchronously
    records: list[dict] = []  # type: ignore[type-arg]
    while time.monotonic() < deadline:
        records = [r for r in maas_platform.cli_json("usage", "list", "--tenant", "acme")
                   if r["model"] == SMOLLM2_NAME]
        output_tokens = sum(r["quantity"] for r in records if r["pricing_model"] == "output_tokens")
        if output_tokens >= reply.usage.completion_tokens:
            break
        time.sleep(0.5)
    by_kind: dict[str, int] = {}
    for record in records:
        by_kind[record["pricing_model"]] = by_kind.get(record["pricing_model"], 0) + record["quantity"]
    # wait_for_model's 1-token probe also counts: at least this reply's tokens, exactly one event per request
    assert by_kind.get("input_tokens", 0) >= reply.usage.prompt_tokens
    assert by_kind.get("output_tokens", 0) >= reply.usage.completion_tokens
    assert len({r["source_id"] for r in records}) == len(records) // 2
