"""A node re-registering with fewer devices ends the holds of the devices that disappeared:
explicitly, audited, visible to operator and tenant, and never leasable twice."""

from __future__ import annotations

from tests.api.conftest import Api, Clock, h100_node


def test_devices_that_disappear_end_their_holds_visibly(world: Api, clock: Clock) -> None:
    world.ok("POST", "/agent/register", "agent1", h100_node("gpu-a", 8))
    held = world.ok("POST", "/allocations", "operator", {"tenant": "acme", "node": "s1/gpu-a", "devices": [6, 7]})
    kept = world.ok("POST", "/allocations", "operator", {"tenant": "beta", "node": "s1/gpu-a", "devices": [0]})
    clock.advance(hours=2)
    world.ok("POST", "/agent/register", "agent1", h100_node("gpu-a", 7))  # device 7 is gone
    rows = {r["id"]: r for r in world.ok("GET", "/allocations", "acme")}
    gone, still = rows[held[1]["id"]], rows[held[0]["id"]]
    assert gone["end"] == "2026-11-01T10:00:00Z" and "s1/gpu-a#7" in gone["end_reason"]
    assert still["end"] is None and still["end_reason"] is None
    assert world.ok("GET", f"/allocations/{kept[0]['id']}", "beta")["end"] is None
    entries = [e for e in world.ok("GET", "/audit", "acme") if e["action"] == "allocation.device_gone"]
    assert [e["object_ref"] for e in entries] == [str(gone["id"])]
    # metering stops where the hold ended: two device-hours, not more
    clock.advance(hours=3)
    world.ok("POST", "/metering/run", "operator", {})
    usage = [u for u in world.ok("GET", "/usage", "acme") if u["source_id"] == str(gone["id"])]
    assert sum(u["quantity"] for u in usage) == 2 * 3600 * 1000
    # the device coming back is new capacity, held once
    world.ok("POST", "/agent/register", "agent1", h100_node("gpu-a", 8))
    world.ok("POST", "/allocations", "operator", {"tenant": "beta", "node": "s1/gpu-a", "devices": [7]})
    response = world.call("POST", "/allocations", "operator", {"tenant": "acme", "node": "s1/gpu-a", "devices": [7]})
    assert response.status_code == 409 and "s1/gpu-a#7" in response.json()["error"]["message"]
