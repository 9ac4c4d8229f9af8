"""Autoscaling with real engines: two node agents on one machine, a SmolLM2 deployment of one
llama.cpp replica with autoscaling 1..2 at 0.5 busy slots per slot; a burst of concurrent requests
through ``zhisuan gateway`` fills its slots (the agent reports them busy), the control plane's
autoscaler places a second replica on the other node, and once the burst is over it drains one
again after the (short, for the test) scale-in cool-down. Every change is an event on the deployment."""

from __future__ import annotations

import os
import threading
from typing import Any

import httpx

from tests.e2e import test_fleet_replicas
from tests.e2e.test_fleet_replicas import Lab, wait_until
from zhisuan.engines.models import SMOLLM2_NAME

lab_fixture = test_fleet_replicas.lab  # the walkthrough's processes


def counted(platform: Any) -> list[dict[str, Any]]:
    row = platform.cli_json("deployment", "show", SMOLLM2_NAME)
    return [r for r in row["replica_states"] if r["state"] in ("pending", "starting", "healthy", "unhealthy")]


def test_a_burst_through_the_gateway_scales_out_and_back_in(lab_fixture: Lab) -> None:
    lab = lab_fixture
    platform = lab.platform
    lab.start_site_with_both_agents()
    cores = max(1.0, (os.cpu_count() or 1) * 0.6)  # one replica per node
    platform.cli("deployment", "create", SMOLLM2_NAME, "--site", "lab", "--cpu", f"{cores:.1f}")
    shown = platform.cli_json("deployment", "autoscale", SMOLLM2_NAME, "--min", "1", "--max", "2", "--target", "0.5",
                              "--out-cooldown", "0", "--in-cooldown", "6")
    assert shown["autoscale"]["max"] == 2
    wait_until("one healthy replica", lambda: [r["state"] for r in counted(platform)] == ["healthy"], 180)
    gateway = lab.start_gateway()

    stop, answers = threading.Event(), []

    def client() -> None:
        with httpx.Client(timeout=120) as http:
            while not stop.is_set():
                r = http.post(gateway + "/v1/chat/completions", headers={"Authorization": f"Bearer {platform.api_key}"},
                              json={"model": SMOLLM2_NAME, "max_tokens": 128, "temperature": 0.9,
                                    "messages": [{"role": "user", "content": "Tell me a long story."}]})
                answers.append(r.status_code)

    burst = [threading.Thread(target=client, daemon=True) for _ in range(4)]
    for thread in burst:
        thread.start()
    try:
        wait_until("a second replica", lambda: len(counted(platform)) == 2, 90)
        wait_until("both healthy", lambda: [r["state"] for r in counted(platform)] == ["healthy", "healthy"], 180)
    finally:
        stop.set()
        for thread in burst:
            thread.join(150)
    assert answers and set(answers) == {200}, answers  # nothing failed while scaling out

    wait_until("back to one replica", lambda: len(counted(platform)) == 1, 90)
    wait_until("the drained one stopped", lambda: sum(
        r["state"] == "stopped" for r in platform.cli_json("deployment", "show", SMOLLM2_NAME)["replica_states"]) == 1,
        60)
    kinds = [e["kind"] for e in platform.cli_json("deployment", "show", SMOLLM2_NAME)["events"]]
    assert kinds == ["autoscale", "scale_out", "scale_in"], kinds
