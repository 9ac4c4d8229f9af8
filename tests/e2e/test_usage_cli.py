"""MaaS usage from the CLI against a real ``zhisuan up``: token events over HTTP → ``zhisuan usage summary``.

Dates are relative to today (the server runs on the real clock): the events fall in the month
before last, a closed billing period, so the invoice of that period can be compared.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import Any

import httpx
import openai

from tests.e2e.conftest import Platform
from tests.e2e.test_onebox_maas import gateway_url, wait_for_model
from zhisuan.core.economics.periods import add_months
from zhisuan.engines.models import SMOLLM2_NAME


def post_events(platform: Platform, events: list[dict[str, Any]]) -> httpx.Response:
    return httpx.post(f"{platform.url}/api/v1/usage/token-events", json={"events": events}, timeout=30,
                      headers={"Authorization": f"Bearer {platform.api_key}"})


def test_usage_summary_per_key_model_day_from_the_cli(platform: Platform) -> None:
    today = datetime.now(UTC)
    start = add_months(datetime(today.year, today.month, 1, tzinfo=UTC), -2)
    period = f"{start.year:04d}-{start.month:02d}"
    platform.cli("provider", "create", "dc-east", "--revenue-share", "0.7")
    platform.cli("tenant", "create", "acme")
    platform.cli("user", "create", "alice", "--role", "tenant", "--tenant", "acme")
    k1 = platform.cli_json("key", "create", "--name", "app-1", "--user", "alice")
    k2 = platform.cli_json("key", "create", "--name", "app-2", "--user", "alice")
    platform.cli("pricebook", "create", "std", "--effective-from", start.strftime("%Y-%m-%dT%H:%M:%SZ"),
                 "--rate", "qwen-7b:input_tokens=2", "--rate", "qwen-7b:output_tokens=6",
                 "--rate", "smol:input_tokens=0.5", "--rate", "smol:output_tokens=1")

    def ev(event_id: str, key: dict[str, Any], model: str, day: int, inp: int, out: int) -> dict[str, Any]:
        return {"event_id": event_id, "tenant": "acme", "provider": "dc-east", "model": model,
                "at": start.replace(day=day, hour=12).isoformat(), "input_tokens": inp, "output_tokens": out,
                "api_key_id": key["key_id"]}

    events = [ev("gw-1", k1, "qwen-7b", 10, 1_000_000, 250_000), ev("gw-2", k1, "qwen-7b", 10, 500_000, 0),
              ev("gw-3", k2, "smol", 10, 1_010_000, 0), ev("gw-4", k2, "smol", 11, 1_010_000, 2_000_000)]
    assert post_events(platform, events).json()["status"] == "accepted"
    assert post_events(platform, events).json()["status"] == "replayed"  # a re-sent batch counts once
    stranger = {"key_id": platform.api_key.split("_")[1]}  # the operator's key: no tenant
    bad = post_events(platform, [ev("gw-5", stranger, "qwen-7b", 12, 1, 1)])
    assert bad.status_code == 422 and bad.json()["error"]["field"] == "events.0.api_key_id"

    summary = platform.cli_json("usage", "summary", "--by", "key,model,day", "--period", period)
    got = {(r["key"], r["model"], r["day"]): (r["requests"], r["input_tokens"], r["output_tokens"], r["amount"])
           for r in summary["rows"]}
    day = start.strftime("%Y-%m-")
    assert got == {
        (k1["key_id"], "qwen-7b", f"{day}10"): (2, 1_500_000, 250_000, "4.50"),  # 1.5M × 2 + 0.25M × 6
        (k2["key_id"], "smol", f"{day}10"): (1, 1_010_000, 0, "0.51"),  # 0.505 → 0.51 (half up)
        (k2["key_id"], "smol", f"{day}11"): (1, 1_010_000, 2_000_000, "2.51"),  # 0.51 + 2.00
    }
    # per invoice line: qwen 3.00 + 1.50, smol in 2.02M × 0.5 = 1.01, smol out 2.00 → 7.51
    assert summary["totals"]["amount"] == "7.51" and summary["totals"]["requests"] == 4

    as_tenant = platform.cli_json("usage", "summary", "--by", "model", "--period", period, "--key", k2["key_id"],
                                  ZHISUAN_API_KEY=k1["key"])
    assert [(r["model"], r["requests"], r["amount"]) for r in as_tenant["rows"]] == [("smol", 2, "3.01")]
    table = platform.cli("usage", "summary", "--by", "model", "--period", period).stdout
    assert "REQUESTS" in table and "TOTAL" in table and "7.51" in table
    refused = platform.cli("usage", "summary", "--by", "tenant", ZHISUAN_API_KEY=k1["key"], check=False)
    assert refused.returncode == 1 and "[HTTP 403]" in refused.stderr

    [invoice] = platform.cli_json("invoice", "run", period)
    assert invoice["total"] == summary["totals"]["amount"]


def test_gateway_requests_show_up_per_key(maas_platform: Platform) -> None:
    """Real requests through /v1 with two keys of one tenant: one request each in the summary, per key."""
    maas_platform.cli("tenant", "create", "acme")
    maas_platform.cli("user", "create", "acme-dev", "--role", "tenant", "--tenant", "acme")
    keys = [maas_platform.cli_json("key", "create", "--user", "acme-dev", "--name", f"app-{n}") for n in (1, 2)]
    wait_for_model(openai.OpenAI(base_url=gateway_url(maas_platform), api_key=maas_platform.api_key, max_retries=0))
    tokens = {}
    for key in keys:
        client = openai.OpenAI(base_url=gateway_url(maas_platform), api_key=key["key"], max_retries=0)
        reply = client.chat.completions.create(model=SMOLLM2_NAME, max_tokens=4,
                                               messages=[{"role": "user", "content": "Hi."}])
        assert reply.usage is not None
        tokens[key["key_id"]] = (1, reply.usage.prompt_tokens, reply.usage.completion_tokens)
    deadline = time.monotonic() + 90  # a safety net: the gateway meters asynchronously
    got: dict[str, tuple[int, int, int]] = {}
    while time.monotonic() < deadline and got != tokens:
        summary = maas_platform.cli_json("usage", "summary", "--by", "key")
        got = {r["key"]: (r["requests"], r["input_tokens"], r["output_tokens"]) for r in summary["rows"]}
        time.sleep(0.5)
    assert got == tokens  # the operator's own probe is not billed; each key made exactly one request
