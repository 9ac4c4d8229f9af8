"""Autoscaling by queue time with the real engine: one node agent running a llama.cpp replica of
SmolLM2 (two slots), a deployment autoscaled 1..2 at ``queue_time_s`` 0.25 s; a burst of streaming
requests through ``zhisuan gateway`` with the openai SDK queues behind the two slots, the gateway
measures the wait (arrival → the engine's response head, which llama.cpp sends with the first
token), the control plane places a second replica (an event naming the queue wait, and a CPU hold in
the ledger under ``deployment:<id>/1``), and once the burst is over it drains one again after the
(short, for the test) scale-in cool-down, whose hold then ends.

Fast on purpose (it runs on 2 cores in CI): one agent, the API polled with httpx rather than the CLI,
every wait on a condition with a bound, never a sleep standing in for one."""

from __future__ import annotations

import threading
from typing import Any

import httpx
import openai

from tests.e2e import test_fleet_replicas
from tests.e2e.test_fleet_replicas import Lab, wait_until
from zhisuan.engines.models import SMOLLM2_NAME, smollm2_gguf

lab_fixture = test_fleet_replicas.lab  # the walkthrough's processes
COUNTED = ("pending", "starting", "healthy", "unhealthy")
CLIENTS = 6  # three times the replica's two slots: four requests wait at any moment
# With answers of 20 tokens taking ``a`` seconds, a request waits about ``a`` on average and at most
# ``2a`` for its first token: far above TARGET_S on a fast CPU (a ≈ 0.5 s), far below the gateway's
# 30 s first-byte timeout on a loaded one (a ≈ 5 s at load 15 on 2 cores), which would eject the
# replica. The idle deployment measures no wait at all.
MAX_TOKENS = 20
TARGET_S = 0.25


class Api:
    def __init__(self, url: str, key: str) -> None:
        self.http = httpx.Client(base_url=url + "/api/v1", headers={"Authorization": f"Bearer {key}"}, timeout=10)

    def call(self, method: str, path: str, body: Any = None, **params: Any) -> Any:
        response = self.http.request(method, path, json=body, params=params)
        assert response.status_code in (200, 201), f"{method} {path}: {response.status_code} {response.text}"
        return response.json()

    def get(self, path: str, **params: Any) -> Any:
        return self.call("GET", path, **params)

    def deployment(self) -> Any:
        return self.get(f"/deployments/{SMOLLM2_NAME}")

    def states(self) -> list[str]:
        return [r["state"] for r in self.deployment()["replica_states"] if r["state"] in COUNTED]

    def holds(self, deployment_id: int, index: int) -> list[Any]:
        ref = f"deployment:{deployment_id}/{index}"
        return [a for a in self.get("/allocations") if a["ref"] == ref]


def routed(gateway: str) -> set[str]:
    """Replicas the gateway routes to (discovered and healthy)."""
    return {line.split('replica="')[1].split('"')[0]
            for line in httpx.get(gateway + "/metrics", timeout=5).text.splitlines()
            if line.startswith("zhisuan_gateway_replica_healthy{") and line.endswith(" 1")}


def replicas_taking_requests(gateway: str) -> set[str]:
    """Replicas the gateway has sent a request: one in flight now, or one answered."""
    taking = set()
    for line in httpx.get(gateway + "/metrics", timeout=5).text.splitlines():
        if line.startswith(("zhisuan_gateway_queue_depth{", "zhisuan_gateway_requests_total{")) \
                and float(line.rsplit(" ", 1)[1]) > 0:
            taking.add(line.split('replica="')[1].split('"')[0])
    return taking


def said(lab: Lab, name: str) -> list[str]:
    """The warnings and state changes in a process's log (not llama.cpp's own chatter)."""
    return [line for line in lab.log(name).splitlines()
            if " WARNING " in line or " ERROR " in line or "zhisuan.agent.replicas" in line][-30:]


def burst(gateway: str, key: str, stop: threading.Event, outcomes: list[str]) -> None:
    """One closed-loop client: short streamed answers until ``stop``; each outcome recorded."""
    client = openai.OpenAI(base_url=gateway + "/v1", api_key=key, max_retries=0, timeout=120)
    while not stop.is_set():
        try:
            stream = client.chat.completions.create(
                model=SMOLLM2_NAME, max_tokens=MAX_TOKENS, temperature=0.9, stream=True,
                messages=[{"role": "user", "content": "Tell me a story about a lighthouse."}])
            text = "".join(chunk.choices[0].delta.content or "" for chunk in stream if chunk.choices)
            outcomes.append("ok" if text else "empty")
        except openai.OpenAIError as error:
            outcomes.append(f"{type(error).__name__}: {error}")


def test_a_queued_burst_scales_out_by_queue_time_and_back_in(lab_fixture: Lab) -> None:
    lab = lab_fixture
    platform = lab.platform
    api = Api(platform.url, platform.api_key)
    # The walkthrough's steps through the API: on a loaded 2-core runner each CLI process costs seconds.
    api.call("POST", "/providers", {"name": "lab-owner", "revenue_share": "0.7"})
    api.call("POST", "/sites", {"name": "lab", "engine": "local", "region": "cn-east-1", "provider": "lab-owner"})
    (lab.tmp / "node-a.key").write_text(api.call("POST", "/sites/lab/agent-keys", {})["key"])
    lab.start_agent("node-a")
    api.call("POST", "/models", {"name": SMOLLM2_NAME, "source": str(smollm2_gguf()), "engine": "llama.cpp"})
    wait_until("node-a", lambda: api.get("/nodes", site="lab"), 60)
    deployment_id = api.call("POST", "/deployments", {"model": SMOLLM2_NAME, "site": "lab", "cpu_cores": 1})["id"]
    shown = api.call("PATCH", f"/deployments/{deployment_id}", {"autoscale": {
        "min": 1, "max": 2, "target_kind": "queue_time_s", "target": TARGET_S,
        "scale_out_cooldown_s": 0, "scale_in_cooldown_s": 3}})
    assert shown["autoscale"]["target_kind"] == "queue_time_s", shown
    gateway = lab.start_gateway()  # no --upstream: it follows the control plane
    wait_until("one healthy replica", lambda: api.states() == ["healthy"], 120)
    assert len(api.holds(deployment_id, 0)) == 1 and not api.holds(deployment_id, 1)
    # Healthy in the control plane is not yet routed: the gateway learns it at its next poll (until
    # then the registered model answers 503 with Retry-After, as documented).
    wait_until("the gateway to route to it", lambda: len(routed(gateway)) == 1, 30)

    stop, outcomes = threading.Event(), []
    clients = [threading.Thread(target=burst, args=(gateway, platform.api_key, stop, outcomes), daemon=True)
               for _ in range(CLIENTS)]
    for thread in clients:
        thread.start()
    try:
        wait_until("a scale-out", lambda: len(api.states()) == 2, 60)
        wait_until("the second replica healthy", lambda: api.states() == ["healthy", "healthy"], 90)
        # Requests reach the new replica while the burst goes on (least outstanding picks it at once).
        wait_until("the new replica to take requests", lambda: len(replicas_taking_requests(gateway)) == 2, 30)
    finally:
        stop.set()
        for thread in clients:
            thread.join(120)
    # Nothing failed or came back empty while scaling out (if something did: what the agent and the
    # gateway said of it).
    assert outcomes and set(outcomes) == {"ok"}, (outcomes, said(lab, "node-a"), said(lab, "gateway"))
    out = [e for e in api.deployment()["events"] if e["kind"] == "scale_out"]
    assert [(e["replicas_from"], e["replicas_to"]) for e in out] == [(1, 2)], out
    assert f"s queue wait over target {TARGET_S:g}" in out[0]["reason"], out[0]
    held = api.holds(deployment_id, 1)
    assert len(held) == 1 and held[0]["end"] is None and held[0]["purpose"] == "service", held

    # The burst is over: no wait is measured, the in-flight requests fit one replica's slots.
    wait_until("back to one replica", lambda: len(api.states()) == 1, 60)
    drained = [r for r in api.deployment()["replica_states"] if r["state"] not in COUNTED]
    assert len(drained) == 1 and drained[0]["state"] in ("draining", "stopped"), drained
    wait_until("the drained replica stopped", lambda: any(
        r["state"] == "stopped" for r in api.deployment()["replica_states"]), 30)
    index = drained[0]["index"]
    wait_until("its ledger hold to end",
               lambda: (held := api.holds(deployment_id, index)) and all(a["end"] for a in held), 10)
    kinds = [e["kind"] for e in api.deployment()["events"]]
    assert kinds == ["autoscale", "scale_out", "scale_in"], kinds
