"""Discovery (gateway/discovery.py): a gateway follows the replicas the control plane lists — adds,
drains and drops them, keeps its last set while the control plane is away — and a registered model
with no replica the caller may call answers 503 with Retry-After, in OpenAI's error shape. The
control plane is a function returning snapshots here; tests/e2e/test_fleet_replicas.py runs the
real one with two agents."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest

from tests.gateway.recording_upstream import RecordingUpstream
from tests.gateway.test_visibility import KEYS
from zhisuan.gateway.discovery import ReplicaDiscovery
from zhisuan.gateway.server import GatewayServer

ALICE, BOB = KEYS[0]["token"], KEYS[1]["token"]


class ControlPlane:
    """What GET /serving/endpoints would answer; ``down`` makes every poll fail."""

    def __init__(self) -> None:
        self.models: list[str] = []
        self.replicas: list[dict[str, Any]] = []
        self.down = False
        self.polls = 0

    def list(self, rid: str, up: RecordingUpstream, model: str = "m", tenant_id: int | None = None,
             draining: bool = False, slots: int = 4) -> None:
        self.replicas = [r for r in self.replicas if r["id"] != rid]
        self.replicas.append({"id": rid, "model": model, "tenant_id": tenant_id, "host": "127.0.0.1",
                              "port": up.port, "secret": up.secret, "draining": draining, "slots": slots})

    async def fetch(self, version: str | None) -> dict[str, Any] | None:
        self.polls += 1
        if self.down:
            raise httpx.ConnectError("control plane down")
        snapshot = {"models": list(self.models), "replicas": [dict(r) for r in self.replicas]}
        snapshot["version"] = str(hash(repr(snapshot)))
        return None if snapshot["version"] == version else snapshot


@pytest.fixture
def upstreams() -> Iterator[Callable[..., RecordingUpstream]]:
    made: list[RecordingUpstream] = []

    def make(name: str) -> RecordingUpstream:
        made.append(RecordingUpstream(name, secret=f"key-of-{name}-0123456789"))
        return made[-1]

    yield make
    for u in made:
        u.close()


def chat(server: GatewayServer, model: str = "m", token: str = ALICE) -> httpx.Response:
    return httpx.post(server.base_url + "/chat/completions", headers={"Authorization": f"Bearer {token}"},
                      json={"model": model, "messages": [{"role": "user", "content": "hi"}]}, timeout=10)


def follow(server: GatewayServer, plane: ControlPlane) -> Callable[[], bool]:
    discovery = ReplicaDiscovery(server.router, plane.fetch)

    def poll() -> bool:
        return bool(server.loop_thread.run(discovery.poll_once()))  # type: ignore[attr-defined]

    return poll


def test_a_gateway_follows_the_listed_replicas_and_keeps_them_when_the_control_plane_is_away(
        gateway: Any, upstreams: Any) -> None:
    plane, a, b = ControlPlane(), upstreams("a"), upstreams("b")
    server = gateway({}, KEYS)
    poll = follow(server, plane)
    plane.models = ["m"]
    plane.list("m@1-0", a)
    plane.list("m@1-1", b)
    assert poll()
    replies = {chat(server).json()["model"] for _ in range(6)}
    assert replies == {"a", "b"}  # both routed to, each with its own engine key (else the fake says 401)
    assert a.auth_headers[-1] == f"Bearer {a.secret}"

    plane.list("m@1-1", b, draining=True)  # going away: no new requests
    poll()
    served = len(b.bodies)
    assert {chat(server).json()["model"] for _ in range(4)} == {"a"} and len(b.bodies) == served

    plane.replicas = [r for r in plane.replicas if r["id"] != "m@1-1"]
    poll()
    assert "m@1-1" not in server.router.by_id  # idle: removed

    plane.down = True  # the control plane is unreachable: keep routing to the last known set
    assert not poll()
    assert [chat(server).status_code for _ in range(3)] == [200, 200, 200]

    plane.down = False
    plane.replicas = []
    assert poll()
    gone = chat(server)
    assert gone.status_code == 503 and gone.headers["retry-after"] == "5"
    assert gone.json() == {"error": {"message": "The model 'm' has no running replica right now; try again later.",
                                     "type": "service_unavailable", "param": "model", "code": "model_not_running"}}
    unknown = chat(server, "never-was")
    assert unknown.status_code == 404 and unknown.json()["error"]["code"] == "model_not_found"


def test_a_listed_replica_that_refuses_connections_is_skipped(gateway: Any, upstreams: Any) -> None:
    plane, a, dead = ControlPlane(), upstreams("a"), upstreams("dead")
    dead.close()  # listed, but its agent died a moment ago
    server = gateway({}, KEYS)
    poll = follow(server, plane)
    plane.list("m@1-0", a)
    plane.list("m@1-1", dead)
    poll()
    assert [chat(server).json()["model"] for _ in range(4)] == ["a"] * 4


def test_another_tenants_private_replica_changes_nothing_for_a_caller(gateway: Any, upstreams: Any) -> None:
    plane, bobs = ControlPlane(), upstreams("bobs")
    server = gateway({}, KEYS)
    poll = follow(server, plane)
    plane.models = ["m"]
    poll()
    nothing_runs = chat(server)
    plane.list("m@2-0", bobs, tenant_id=2)
    poll()
    assert chat(server, token=BOB).status_code == 200
    only_bobs_runs = chat(server)
    assert nothing_runs.status_code == only_bobs_runs.status_code == 503
    assert nothing_runs.content == only_bobs_runs.content


def test_discovery_leaves_replicas_it_did_not_add_alone(gateway: Any, upstreams: Any) -> None:
    plane, own = ControlPlane(), upstreams("own")
    server = gateway({"m": [{"id": "m@1-0", "host": "127.0.0.1", "port": own.port, "secret": own.secret}]}, KEYS)
    poll = follow(server, plane)
    plane.list("m@1-0", own)  # the same id, registered by this machine's runtime
    poll()
    plane.replicas = []
    poll()
    assert "m@1-0" in server.router.by_id and chat(server).status_code == 200
