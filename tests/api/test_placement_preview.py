"""Placement on the live inventory goes through the core engine: decisions and reasons."""

from __future__ import annotations

from tests.api.conftest import Api, h100_node


def ascend_node(name: str) -> dict:  # type: ignore[type-arg]
    return {"name": name, "cpu_cores": 192, "memory_mib": 1_500_000,
            "devices": [{"index": i, "model": "Ascend910B3", "healthy": True} for i in range(8)]}


def test_fits_on_the_model_asked_for(world: Api) -> None:
    world.ok("POST", "/agent/register", "agent1", h100_node("gpu-a", 8))
    world.ok("POST", "/agent/register", "agent2", ascend_node("npu-a"))
    answer = world.ok("POST", "/placement/preview", "operator", {"devices": 4, "models": ["ascend-910b3"]})
    assert answer["placed"] and answer["site"] == "s2" and answer["node"] == "npu-a"
    assert len(answer["device_indices"]) == 4
    by_stack = world.ok("POST", "/placement/preview", "operator", {"devices": 8, "stack": "CUDA"})
    assert by_stack["placed"] and by_stack["node"] == "gpu-a"


def test_rejection_says_why_per_node(world: Api) -> None:
    world.ok("POST", "/agent/register", "agent1", h100_node("gpu-a", 8, healthy=lambda i: i < 6))
    world.ok("POST", "/agent/register", "agent2", ascend_node("npu-a"))
    answer = world.ok("POST", "/placement/preview", "operator", {"devices": 8, "models": ["h100-sxm"]})
    assert not answer["placed"]
    assert answer["message"].startswith("1 node:")
    reasons = {r["reason"] for r in answer["reasons"]}
    assert len(reasons) == 2 and sum(r["nodes"] for r in answer["reasons"]) == 2
    assert any("model" in reason for reason in reasons)


def test_drained_node_takes_no_work(world: Api) -> None:
    world.ok("POST", "/agent/register", "agent1", h100_node("gpu-a", 8))
    assert world.ok("POST", "/placement/preview", "p1", {"devices": 1})["placed"]
    world.ok("PATCH", "/nodes/s1/gpu-a", "p1", {"drained": True})
    answer = world.ok("POST", "/placement/preview", "p1", {"devices": 1})
    assert not answer["placed"] and answer["reasons"][0]["nodes"] == 1


def test_tenant_sees_the_site_not_the_node(world: Api) -> None:
    world.ok("POST", "/agent/register", "agent1", h100_node("gpu-a", 8))
    answer = world.ok("POST", "/placement/preview", "acme", {"devices": 2, "milli_per_device": 1000})
    assert answer["placed"] and answer["site"] == "s1" and answer["node"] is None


def test_bad_queries_name_the_field(world: Api) -> None:
    cases = [
        ({"devices": 1, "models": ["h100-sxm", "flux-capacitor"]}, "models.1"),
        ({"devices": 2, "milli_per_device": 500}, "milli_per_device"),
        ({"devices": -1}, "devices"),
        ({"devices": 1, "policy": "magic"}, "policy"),
    ]
    for body, field in cases:
        response = world.call("POST", "/placement/preview", "operator", body)
        assert response.status_code == 422, (body, response.text)
        assert response.json()["error"]["field"] == field


def test_exclusive_lease_and_held_shares_shape_placement(world: Api) -> None:
    """The allocation ledger feeds the snapshot: a leased node serves only its tenant, held shares are taken."""
    from tests.api.econ_setup import START, a800_node

    a800_node(world)
    lease = {"tenant": "acme", "capacity": {"kind": "nodes", "nodes": ["s1/a800-1"]},
             "pricing_model": "server_month", "unit_price": "75000", "start": START, "closed_months": 36,
             "penalty_rate": "0.20"}
    contract = world.ok("POST", "/contracts", "operator", lease)
    world.ok("POST", f"/contracts/{contract['id']}/activate", "operator", {})
    beta = world.ok("POST", "/placement/preview", "beta", {"devices": 1, "models": ["a800"]})
    assert not beta["placed"] and "leased" in beta["message"], beta
    assert world.ok("POST", "/placement/preview", "acme", {"devices": 8, "models": ["a800"]})["placed"]

    world.ok("POST", "/allocations", "operator", {"tenant": "acme", "node": "s1/a800-1", "devices": [0, 1, 2],
                                                  "purpose": "job", "ref": "job:1", "start": START})
    eight = world.ok("POST", "/placement/preview", "acme", {"devices": 8, "models": ["a800"]})
    assert not eight["placed"]
    five = world.ok("POST", "/placement/preview", "operator", {"devices": 5, "models": ["a800"], "tenant": "acme"})
    assert five["placed"] and set(five["device_indices"]) == {3, 4, 5, 6, 7}


def test_a_demand_no_node_can_serve_is_an_answer_not_an_error(world: Api) -> None:
    # Found by the OpenAPI property test: zero devices filtered every node out, and the live fleet's
    # empty row classes raised (reshape of an empty array) — a 500 instead of "nothing fits".
    answer = world.ok("POST", "/placement/preview", "operator", {"devices": 0})
    assert answer["placed"] is False
