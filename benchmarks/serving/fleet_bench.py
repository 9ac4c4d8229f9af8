"""Two gateways, three llama.cpp replicas on two node agents, one closed-loop client (issue 13, item 6).

Starts ``zhisuan up --no-maas``, two agents with fake devices (as in the README's "Model services on
several machines"), a SmolLM2 deployment of 3 replicas, and two ``zhisuan gateway`` processes that
discover them. ``--clients`` threads each send one chat completion (``--max-tokens``) at a time,
alternating the gateways, and record (start, latency, status). Phases:

- ``direct``: the same client straight to one replica (its engine key from /serving/endpoints);
- ``steady``: through the gateways, 3 replicas;
- ``scaling``: the deployment is scaled 1 → 3 → 1 (``PATCH /deployments``) during the window;
- ``kill``: ``kill -9`` of the agent holding two replicas at the start of the window.

Prints one row per phase: requests/s, p50, p99, error rate. Usage:
    .venv/bin/python benchmarks/serving/fleet_bench.py --seconds 20 --clients 4
"""

from __future__ import annotations

import argparse
import os
import re
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx

REPO = Path(__file__).resolve().parents[2]
FIXTURES = REPO / "src" / "zhisuan" / "agent" / "demo_fixtures"
MODEL = "smollm2-135m-instruct"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait(what: str, check: Callable[[], Any], timeout_s: float = 300) -> Any:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            found = check()
        except httpx.HTTPError:
            found = None
        if found:
            return found
        time.sleep(0.5)
    raise SystemExit(f"timed out waiting for {what}")


class Fleet:
    def __init__(self, tmp: Path) -> None:
        self.tmp, self.procs, self.agents = tmp, [], {}  # type: ignore[var-annotated]
        port = free_port()
        self.url = f"http://127.0.0.1:{port}"
        env = {**os.environ, "XDG_CONFIG_HOME": str(tmp / "config")}
        up = subprocess.Popen([sys.executable, "-m", "zhisuan", "up", "--port", str(port), "--data-dir",
                               str(tmp / "data"), "--no-maas"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                              text=True, cwd=REPO, env=env)
        self.procs.append(up)
        assert up.stdout is not None
        text = ""
        while "credentials are in" not in text:
            line = up.stdout.readline()
            if not line:
                raise SystemExit("zhisuan up ended")
            text += line
        creds = Path(re.search(r"credentials are in (\S+) \(mode 0600\)", text).group(1)).read_text()  # type: ignore[union-attr]
        self.key = re.search(r"API key:\s+(zs_\S+)", creds).group(1)  # type: ignore[union-attr]
        self.http = httpx.Client(base_url=self.url + "/api/v1", headers={"Authorization": f"Bearer {self.key}"},
                                 timeout=30)
        wait("the control plane", lambda: httpx.get(self.url + "/health", timeout=2).status_code == 200)

    def ok(self, method: str, path: str, body: Any = None) -> Any:
        r = self.http.request(method, path, json=body)
        r.raise_for_status()
        return r.json() if r.content else None

    def start_agent(self, node: str, fixture: str) -> None:
        key = self.tmp / f"{node}.key"
        if not key.exists():
            key.write_text(self.ok("POST", "/sites/lab/agent-keys", {})["key"])
        self.agents[node] = subprocess.Popen(
            [sys.executable, "-m", "zhisuan", "agent", "--server", self.url, "--token-file", str(key), "--name", node,
             "--jobs-dir", str(self.tmp / f"jobs-{node}"), "--replicas-dir", str(self.tmp / f"replicas-{node}"),
             "--advertise-address", "127.0.0.1"], cwd=REPO, env={**os.environ, "ZHISUAN_FAKE_SMI_DIR": fixture},
            stdout=open(self.tmp / f"{node}.log", "ab"), stderr=subprocess.STDOUT)  # noqa: SIM115

    def start_gateway(self) -> str:
        port = free_port()
        self.procs.append(subprocess.Popen(
            [sys.executable, "-m", "zhisuan", "gateway", "--database", f"sqlite:///{self.tmp / 'data' / 'zhisuan.db'}",
             "--server", self.url, "--port", str(port), "--spool-dir", str(self.tmp / f"spool-{port}")],
            cwd=REPO, env={**os.environ, "ZHISUAN_GATEWAY_TOKEN": self.key},
            stdout=open(self.tmp / f"gateway-{port}.log", "ab"), stderr=subprocess.STDOUT))  # noqa: SIM115
        url = f"http://127.0.0.1:{port}"
        wait("a gateway", lambda: httpx.get(url + "/health", timeout=2).status_code == 200)
        return url

    def healthy(self, deployment: int) -> list[dict[str, Any]]:
        return [r for r in self.ok("GET", f"/deployments/{deployment}")["replica_states"] if r["state"] == "healthy"]

    def close(self) -> None:
        for p in [*self.agents.values(), *reversed(self.procs)]:
            if p.poll() is None:
                p.terminate()
                try:
                    p.wait(30)
                except subprocess.TimeoutExpired:
                    p.kill()


def closed_loop(targets: list[tuple[str, str]], clients: int, seconds: float, max_tokens: int,
                during: Callable[[], None] | None = None) -> list[tuple[float, float, int]]:
    """(start offset, latency s, status) of every request; ``during`` runs in the window."""
    results: list[tuple[float, float, int]] = []
    t0, stop = time.monotonic(), threading.Event()

    def client(n: int) -> None:
        with httpx.Client(timeout=60) as http:
            i = n
            while not stop.is_set():
                base, key = targets[i % len(targets)]
                i += 1
                start = time.monotonic()
                try:
                    status = http.post(base + "/v1/chat/completions", headers={"Authorization": f"Bearer {key}"},
                                       json={"model": MODEL, "max_tokens": max_tokens, "temperature": 0,
                                             "messages": [{"role": "user", "content": "Say hello."}]}).status_code
                except httpx.HTTPError:
                    status = 0
                results.append((start - t0, time.monotonic() - start, status))

    threads = [threading.Thread(target=client, args=(n,), daemon=True) for n in range(clients)]
    for t in threads:
        t.start()
    if during is not None:
        during()
    time.sleep(max(0.0, seconds - (time.monotonic() - t0)))
    stop.set()
    for t in threads:
        t.join(90)
    return results


def row(name: str, results: list[tuple[float, float, int]], seconds: float) -> str:
    ok = sorted(lat for _, lat, status in results if status == 200)
    errors = sum(1 for *_, status in results if status != 200)

    def p(q: float) -> float:
        return ok[min(len(ok) - 1, int(q * len(ok)))] * 1000 if ok else float("nan")

    return (f"| {name} | {len(ok) / seconds:.1f} | {p(0.5):.0f} | {p(0.99):.0f} | "
            f"{errors}/{len(results)} ({100 * errors / max(1, len(results)):.1f} %) |")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seconds", type=float, default=20)
    ap.add_argument("--clients", type=int, default=4)
    ap.add_argument("--max-tokens", type=int, default=8)
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="zs-fleet-bench-"))
    os.chmod(tmp, 0o711)  # job directories of tenants' users live below: they must be able to enter
    fleet = Fleet(tmp)
    try:
        fleet.ok("POST", "/providers", {"name": "lab-owner", "revenue_share": "0.7"})
        fleet.ok("POST", "/sites", {"name": "lab", "engine": "local", "region": "cn-east-1", "provider": "lab-owner"})
        fleet.start_agent("node-a", str(FIXTURES / "h100x8"))
        fleet.start_agent("node-b", str(FIXTURES / "ascend910bx8"))
        wait("two nodes", lambda: len(fleet.ok("GET", "/nodes?site=lab")) == 2)
        from zhisuan.engines.models import smollm2_gguf

        fleet.ok("POST", "/models", {"name": MODEL, "source": str(smollm2_gguf()), "engine": "llama.cpp"})
        cores = max(0.5, (os.cpu_count() or 2) * 0.45)  # two replicas fit a node, three need both
        dep = fleet.ok("POST", "/deployments", {"model": MODEL, "replicas": 3, "site": "lab", "cpu_cores": cores})["id"]
        wait("three healthy replicas", lambda: len(fleet.healthy(dep)) == 3, 600)
        gateways = [fleet.start_gateway(), fleet.start_gateway()]
        wait("the gateways to route", lambda: all(httpx.post(
            g + "/v1/chat/completions", headers={"Authorization": f"Bearer {fleet.key}"}, timeout=60,
            json={"model": MODEL, "max_tokens": 1, "messages": [{"role": "user", "content": "hi"}]}).status_code == 200
            for g in gateways))
        one = fleet.ok("GET", "/serving/endpoints")["replicas"][0]
        via = [(g, fleet.key) for g in gateways]
        rows = ["| phase | requests/s | p50 ms | p99 ms | errors |", "|---|---:|---:|---:|---:|"]
        direct = closed_loop([(f"http://{one['host']}:{one['port']}", one["secret"])], args.clients, args.seconds,
                             args.max_tokens)
        rows.append(row("one replica, direct (no gateway)", direct, args.seconds))
        rows.append(row("2 gateways → 3 replicas, steady", closed_loop(via, args.clients, args.seconds,
                                                                         args.max_tokens), args.seconds))
        fleet.ok("PATCH", f"/deployments/{dep}", {"replicas": 1})
        wait("one replica", lambda: len(fleet.healthy(dep)) == 1 and len(
            fleet.ok("GET", "/serving/endpoints")["replicas"]) == 1, 120)

        def scale_out_and_in() -> None:
            fleet.ok("PATCH", f"/deployments/{dep}", {"replicas": 3})
            wait("three replicas again", lambda: len(fleet.healthy(dep)) == 3, 600)
            fleet.ok("PATCH", f"/deployments/{dep}", {"replicas": 1})

        started = time.monotonic()
        scaling = closed_loop(via, args.clients, args.seconds, args.max_tokens, scale_out_and_in)
        took = time.monotonic() - started
        rows.append(row(f"scaling 1 → 3 → 1 ({took:.0f} s window)", scaling, took))
        fleet.ok("PATCH", f"/deployments/{dep}", {"replicas": 3})
        wait("three replicas for the kill", lambda: len(fleet.healthy(dep)) == 3, 600)
        by_node: dict[str, int] = {}
        for r in fleet.healthy(dep):
            by_node[r["node"].split("/")[-1]] = by_node.get(r["node"].split("/")[-1], 0) + 1
        victim = max(by_node, key=lambda n: by_node[n])
        kill = closed_loop(via, args.clients, args.seconds, args.max_tokens,
                           lambda: fleet.agents[victim].send_signal(signal.SIGKILL))
        rows.append(row(f"kill -9 of {victim}'s agent ({by_node[victim]} replicas) at t=0", kill, args.seconds))
        print(f"clients={args.clients} max_tokens={args.max_tokens} seconds={args.seconds} "
              f"cpu_count={os.cpu_count()} load={os.getloadavg()[0]:.1f}")
        print("\n".join(rows))
        all_direct = [lat for _, lat, s in direct if s == 200]
        print(f"direct p50 {statistics.median(all_direct) * 1000:.0f} ms" if all_direct else "direct: no answers")
    finally:
        fleet.close()


if __name__ == "__main__":
    main()
