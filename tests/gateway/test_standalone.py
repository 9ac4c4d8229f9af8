"""``zhisuan gateway`` processes beside a real ``zhisuan up``: limits held jointly through one database and
one Redis, and usage shipped over HTTP to the control plane exactly once — on SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest

from tests.e2e.conftest import Platform, start_platform, stop
from tests.gateway.conftest import free_port, wait_http
from tests.gateway.test_limits import needs_redis
from zhisuan.gateway.http_sink import REJECTED_FILE, HttpUsageSink, SinkUnavailable
from zhisuan.gateway.protocols import UsageEvent
from zhisuan.gateway.usage import STATE_FILE, SpoolShipper, UsageSpool


@pytest.fixture
def control_plane(database_url: str, tmp_path: Path) -> Iterator[Platform]:
    running = start_platform(tmp_path, "--database", database_url)
    yield running
    stop(running)


def api(cp: Platform, method: str, path: str, body: Any = None, **params: Any) -> Any:
    response = httpx.request(method, f"{cp.url}/api/v1{path}", json=body, params=params or None, timeout=30,
                             headers={"Authorization": f"Bearer {cp.api_key}"})
    assert response.status_code < 300, response.text
    return response.json()


def tenant_with_key(cp: Platform, **limits: Any) -> dict[str, Any]:
    """Tenant acme, its user ann, and an inference key of ann with ``limits``; returns the issued key."""
    api(cp, "POST", "/tenants", {"name": "acme"})
    api(cp, "POST", "/users", {"username": "ann", "role": "tenant", "tenant": "acme"})
    return api(cp, "POST", "/keys", {"user": "ann", "scopes": ["inference"], **limits})  # type: ignore[no-any-return]


def usage_records(cp: Platform) -> list[dict[str, Any]]:
    return api(cp, "GET", "/usage", tenant="acme")  # type: ignore[no-any-return]


def wait_for(predicate: Callable[[], bool], what: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.1)


@dataclass
class Gateway:
    process: subprocess.Popen[str]
    base_url: str

    def stop(self) -> str:
        self.process.terminate()
        return self.process.communicate(timeout=30)[0]


@pytest.fixture
def gateways(control_plane: Platform, database_url: str, tmp_path: Path) -> Iterator[Callable[..., Gateway]]:
    """Starts ``zhisuan gateway`` subprocesses on the control plane's database, sharing one Redis under a
    fresh prefix (so runs never see each other's counters)."""
    prefix = f"zs:test:{uuid.uuid4().hex}:"
    started: list[Gateway] = []

    def start(*upstreams: str) -> Gateway:
        port = free_port()
        args = ["--database", database_url, "--server", control_plane.url, "--redis", "redis://127.0.0.1:6379/0",
                "--limits-prefix", prefix, "--port", str(port), "--spool-dir", str(tmp_path / f"spool-{port}")]
        for upstream in upstreams:
            args += ["--upstream", upstream]
        env = {**os.environ, "ZHISUAN_GATEWAY_TOKEN": control_plane.api_key}
        process = subprocess.Popen([sys.executable, "-m", "zhisuan", "gateway", *args], env=env, text=True,
                                   stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        gateway = Gateway(process, f"http://127.0.0.1:{port}/v1")
        started.append(gateway)
        wait_http(f"http://127.0.0.1:{port}/health", timeout=60)
        return gateway

    yield start
    for gateway in started:
        if gateway.process.poll() is None:
            gateway.stop()


def ask(gateway: Gateway, key: str) -> Any:
    client = openai.OpenAI(base_url=gateway.base_url, api_key=key, max_retries=0, timeout=10)
    return client.chat.completions.create(model="fake-model", messages=[{"role": "user", "content": "x"}],
                                          max_tokens=5)


@needs_redis
def test_two_gateway_processes_hold_one_rpm_limit_and_ship_usage_once(
        control_plane: Platform, gateways: Callable[..., Gateway], fake_upstream: Any) -> None:
    key = tenant_with_key(control_plane, rpm=3)
    upstream = f"fake-model=http://127.0.0.1:{fake_upstream()}"
    a, b = gateways(upstream), gateways(upstream)
    for gateway in (a, b, a):  # the 3 requests a minute the key may make, across both processes
        assert ask(gateway, key["key"]).usage.total_tokens == 12
    for gateway in (b, a):
        with pytest.raises(openai.RateLimitError) as exc:
            ask(gateway, key["key"])
        assert exc.value.code == "rate_limit_exceeded"
        assert int(exc.value.response.headers["retry-after"]) >= 1
        assert exc.value.response.headers["x-ratelimit-scope"] == "key"

    # 3 requests of 5 input + 7 output tokens, shipped by the two processes. A gateway rolls up one key's
    # requests to one model within a second into one event, so there are 4 to 6 records: count tokens.
    def shipped() -> int:
        return sum(r["quantity"] for r in usage_records(control_plane))

    wait_for(lambda: shipped() >= 36, "the gateways to ship usage")
    for gateway in (a, b):  # a stop ships what is left: nothing, each event was shipped once
        output = gateway.stop()
        assert "Traceback" not in output, output
    records = usage_records(control_plane)
    quantities = [r["quantity"] for r in records]
    assert 4 <= len(records) <= 6, records
    assert sum(q for q in quantities if q % 5 == 0) == 15 and sum(q for q in quantities if q % 7 == 0) == 21, records
    assert {r.get("api_key_id") for r in records} == {key["key_id"]}
    assert {r["provider"] for r in records} == {"local"}


def test_gateway_refuses_a_token_the_control_plane_refuses(control_plane: Platform, database_url: str,
                                                           tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "zhisuan", "gateway", "--database", database_url, "--server", control_plane.url,
         "--token", "zs_nope_nope", "--port", str(free_port()), "--spool-dir", str(tmp_path / "spool")],
        capture_output=True, text=True, timeout=60)
    assert result.returncode == 1
    assert "refuses --token" in result.stderr, result.stderr


@pytest.mark.parametrize(("flag", "message"), [("fake-model", "is not MODEL[@TENANT]=http://"),
                                               ("m=https://example.com:443", "must look like http://HOST:PORT"),
                                               ("m=http://127.0.0.1", "must look like http://HOST:PORT")])
def test_gateway_explains_a_bad_upstream(flag: str, message: str, tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "zhisuan", "gateway", "--database", "sqlite:///x.db", "--server", "http://127.0.0.1:9",
         "--token", "t", "--upstream", flag, "--spool-dir", str(tmp_path / "spool")],
        capture_output=True, text=True, timeout=60)
    assert result.returncode == 1
    assert message in result.stderr, result.stderr


# -- the HTTP usage sink against the real control plane -------------------------------------------------


def event(n: int, key_id: str, tenant: str = "tenant-1") -> UsageEvent:
    now = time.time()
    return UsageEvent(event_id=f"gw1-{uuid.uuid4().hex[:8]}-{n}", key_id=key_id, tenant_id=tenant, model="fake-model",
                      replica="r1", prompt_tokens=10 + n, completion_tokens=20 + n, stream=False, status="ok",
                      started_at=now - 0.1, ended_at=now)


def acme_grant_tenant(cp: Platform) -> str:
    return f"tenant-{api(cp, 'GET', '/tenants/acme')['id']}"


def test_http_sink_counts_a_resent_batch_once(control_plane: Platform, tmp_path: Path) -> None:
    key = tenant_with_key(control_plane)
    tenant = acme_grant_tenant(control_plane)
    events = [event(n, key["key_id"], tenant) for n in range(3)]
    sink = HttpUsageSink(control_plane.url, control_plane.api_key, dead_letter_dir=tmp_path)

    async def go() -> None:
        await sink.ingest(events)
        await sink.ingest(events)  # the response was lost, say: the shipper sends the batch again
        await sink.ingest(events[1:])
        await sink.aclose()

    asyncio.run(go())
    records = usage_records(control_plane)
    assert len(records) == 6 and sink.requests == 3 and sink.rejected == 0
    assert sorted(r["quantity"] for r in records) == [10, 11, 12, 20, 21, 22]
    assert {r.get("api_key_id") for r in records} == {key["key_id"]}


def test_spool_resent_after_a_crash_counts_once(control_plane: Platform, tmp_path: Path) -> None:
    """The shipper crashed after the control plane recorded a batch but before it saved its position:
    on restart it ships the batch again, which is counted once."""
    key = tenant_with_key(control_plane)
    tenant = acme_grant_tenant(control_plane)
    spool_dir = tmp_path / "spool"

    async def go() -> int:
        spool = UsageSpool(spool_dir)
        spool.open()
        for n in range(4):
            await spool.append(event(n, key["key_id"], tenant))
        spool.close()
        sink = HttpUsageSink(control_plane.url, control_plane.api_key, dead_letter_dir=spool_dir)
        shipped = await SpoolShipper(spool_dir, sink).ship_all()
        (spool_dir / STATE_FILE).unlink()  # the position was never saved
        shipped += await SpoolShipper(spool_dir, sink).ship_all()
        await sink.aclose()
        return shipped

    assert asyncio.run(go()) == 8  # sent twice ...
    assert len(usage_records(control_plane)) == 8  # ... counted once: 4 events × (input, output)


def test_refused_events_are_set_aside_without_blocking_the_rest(control_plane: Platform, tmp_path: Path) -> None:
    key = tenant_with_key(control_plane)
    tenant = acme_grant_tenant(control_plane)
    good, ghost, keyless = event(0, key["key_id"], tenant), event(1, key["key_id"], "tenant-99999"), \
        event(2, "nosuchkey", tenant)
    sink = HttpUsageSink(control_plane.url, control_plane.api_key, dead_letter_dir=tmp_path)

    async def go() -> None:
        await sink.ingest([good, ghost, keyless])
        await sink.aclose()

    asyncio.run(go())
    records = usage_records(control_plane)
    assert sorted(r["source_id"] for r in records) == sorted(2 * [f"gw:{good.event_id}", f"gw:{keyless.event_id}"])
    assert {r["source_id"]: r.get("api_key_id") for r in records} == {
        f"gw:{good.event_id}": key["key_id"], f"gw:{keyless.event_id}": None}  # billed without its unknown key
    (line,) = (tmp_path / REJECTED_FILE).read_text().splitlines()
    rejected = json.loads(line)
    assert rejected["event"]["event_id"] == f"gw:{ghost.event_id}"
    assert rejected["status"] == 422 and rejected["error"]["field"].endswith(".tenant")
    assert sink.rejected == 1


def test_control_plane_unavailable_keeps_usage_spooled(control_plane: Platform, tmp_path: Path) -> None:
    key = tenant_with_key(control_plane)
    batch = [event(0, key["key_id"], acme_grant_tenant(control_plane))]

    async def go(server: str, token: str) -> None:
        sink = HttpUsageSink(server, token, dead_letter_dir=tmp_path)
        try:
            with pytest.raises(SinkUnavailable):
                await sink.ingest(batch)
        finally:
            await sink.aclose()

    asyncio.run(go(control_plane.url, "zs_wrong_token"))  # 401: the operator must fix the token
    asyncio.run(go(f"http://127.0.0.1:{free_port()}", control_plane.api_key))  # nobody listens
    asyncio.run(go(control_plane.url + "/not-zhisuan", control_plane.api_key))  # 404
    assert usage_records(control_plane) == []
    assert not (tmp_path / REJECTED_FILE).exists()
