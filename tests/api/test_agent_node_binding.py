"""An agent key speaks for the one node it registered, not for every node of its site."""

from __future__ import annotations

from tests.api.conftest import Api, h100_node


def test_a_key_bound_to_one_node_cannot_heartbeat_another(world: Api) -> None:
    world.keys["agent1b"] = world.ok("POST", "/sites/s1/agent-keys", "operator", {})["key"]
    world.ok("POST", "/agent/register", "agent1", h100_node("gpu-a", 2))
    world.ok("POST", "/agent/register", "agent1b", h100_node("gpu-b", 2))

    stolen = world.call("POST", "/agent/heartbeat", "agent1", {"node": "gpu-b", "devices": [
        {"index": 0, "healthy": False, "health_detail": "forged"}]})
    unknown = world.call("POST", "/agent/heartbeat", "agent1", {"node": "gpu-nowhere", "devices": []})
    assert stolen.status_code == unknown.status_code == 404
    assert stolen.json()["error"] == {**unknown.json()["error"],
                                      "message": unknown.json()["error"]["message"].replace("gpu-nowhere", "gpu-b")}
    assert world.ok("GET", "/nodes/s1/gpu-b", "operator")["devices"][0]["health"] == "healthy"
    world.ok("POST", "/agent/heartbeat", "agent1b", {"node": "gpu-b", "devices": []})  # its own key still works


def test_a_key_bound_to_one_node_cannot_register_another(world: Api) -> None:
    world.ok("POST", "/agent/register", "agent1", h100_node("gpu-a", 2))
    world.ok("POST", "/agent/register", "agent1", h100_node("gpu-a", 1))  # re-registering itself is fine

    for name in ("gpu-b", "gpu-new"):  # an existing node or a new one: the same answer either way
        response = world.call("POST", "/agent/register", "agent1", h100_node(name, 8))
        assert response.status_code == 403, response.text
        assert "another node" in response.json()["error"]["message"]
    assert [n["name"] for n in world.ok("GET", "/nodes", "operator")] == ["gpu-a"]


def test_the_binding_survives_the_node_being_deleted(world: Api) -> None:
    world.ok("POST", "/agent/register", "agent1", h100_node("gpu-a", 2))
    world.ok("DELETE", "/nodes/s1/gpu-a", "operator")
    assert world.call("POST", "/agent/heartbeat", "agent1", {"node": "gpu-a", "devices": []}).status_code == 404
    world.ok("POST", "/agent/register", "agent1", h100_node("gpu-a", 2))  # the agent's way back after a 404
    assert world.call("POST", "/agent/register", "agent1", h100_node("gpu-b", 2)).status_code == 403


def test_a_rejected_registration_does_not_bind_the_key(world: Api) -> None:
    bad = h100_node("gpu-a", 1)
    bad["devices"][0]["model"] = "warp-drive"
    assert world.call("POST", "/agent/register", "agent1", bad).status_code == 422
    world.ok("POST", "/agent/register", "agent1", h100_node("gpu-b", 1))


def test_a_key_from_before_the_binding_binds_to_the_first_node_it_speaks_for(world: Api) -> None:
    """Keys issued before migration 0009 are unbound: the first of its nodes to speak keeps it."""
    from sqlalchemy import update

    from zhisuan.identity.models import ApiKey
    from zhisuan.store.base import transaction

    world.keys["agent1b"] = world.ok("POST", "/sites/s1/agent-keys", "operator", {})["key"]
    world.ok("POST", "/agent/register", "agent1", h100_node("gpu-a", 1))
    world.ok("POST", "/agent/register", "agent1b", h100_node("gpu-b", 1))
    with transaction(world.client.app.state.ctx.sessions) as session:  # type: ignore[attr-defined]
        session.execute(update(ApiKey).values(node_name=None))
    world.ok("POST", "/agent/heartbeat", "agent1", {"node": "gpu-b", "devices": []})
    assert world.call("POST", "/agent/heartbeat", "agent1", {"node": "gpu-a", "devices": []}).status_code == 404
