"""The node agent's loop against the real API (in-process), with recorded device output."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient

from tests.api.conftest import Api
from zhisuan.agent.detection import FixtureRunner, demo_fixture_dir, detect_accelerators
from zhisuan.agent.runner import AgentError, run_agent


def agent_against(api: Api, monkeypatch: pytest.MonkeyPatch) -> None:
    """Route the agent's httpx.Client to the in-process app instead of the network; its job workers
    (none here) under a throw-away directory."""
    jobs = Path(tempfile.mkdtemp(prefix="zs-agent-jobs-"))
    os.chmod(jobs, 0o711)
    monkeypatch.setenv("ZHISUAN_JOBS_DIR", str(jobs))
    class InProcessClient(TestClient):
        # The app is already running under the fixture's TestClient: don't run its lifespan again.
        def __enter__(self) -> InProcessClient:
            return self

        def __exit__(self, *exc: object) -> None:
            return None

    def client(**kwargs: Any) -> httpx.Client:
        return InProcessClient(api.client.app, base_url=kwargs["base_url"], headers=kwargs["headers"])

    monkeypatch.setattr("zhisuan.agent.runner.httpx.Client", client)


def h100_devices() -> list:  # type: ignore[type-arg]
    return detect_accelerators(FixtureRunner(demo_fixture_dir("h100x8")))


def test_agent_registers_then_heartbeats(world: Api, monkeypatch: pytest.MonkeyPatch) -> None:
    agent_against(world, monkeypatch)
    sleeps: list[float] = []
    ack = run_agent("http://testserver", world.keys["agent1"], name="gpu-7", detect=h100_devices,
                    sleep=sleeps.append, max_beats=2)
    # between two beats (10 s apart) the agent syncs its job workers every 2 s
    assert ack["status"] == "ready" and sum(sleeps) == 20.0 and max(sleeps) == 2.0
    node = world.ok("GET", "/nodes/s1/gpu-7", "operator")
    assert len(node["devices"]) == 8 and node["devices"][0]["model"] == "h100-sxm"


def test_agent_reregisters_after_its_node_was_deleted(world: Api, monkeypatch: pytest.MonkeyPatch) -> None:
    agent_against(world, monkeypatch)
    deleted = []

    def sleep(_seconds: float) -> None:
        if not deleted:
            world.ok("DELETE", "/nodes/s1/gpu-7", "operator")
            deleted.append(True)

    run_agent("http://testserver", world.keys["agent1"], name="gpu-7", detect=h100_devices, sleep=sleep,
              max_beats=1)
    assert world.ok("GET", "/nodes/s1/gpu-7", "operator")["status"] == "ready"


def test_agent_stops_on_a_revoked_key(world: Api, monkeypatch: pytest.MonkeyPatch) -> None:
    agent_against(world, monkeypatch)
    agent_key_id = world.keys["agent1"].split("_")[1]
    world.ok("DELETE", f"/keys/{agent_key_id}", "operator")
    with pytest.raises(AgentError, match="revoked") as error:
        run_agent("http://testserver", world.keys["agent1"], name="gpu-7", detect=h100_devices, once=True)
    assert error.value.status == 401
