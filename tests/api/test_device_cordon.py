"""Per-device cordons (``core.health.scope``, ``inventory.cordon``), on SQLite and PostgreSQL: a
device-scoped fault takes out that device while its node keeps placing work on the others; a
node-scoped one cordons the node as before; a device returns after a clean period or an operator's
check, and a node with a cordoned device is never answered from memory."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest

from tests.api.conftest import Api, Clock, cli_against, h100_node
from zhisuan.cli.main import app as cli_app
from zhisuan.inventory.beats import BeatBuffer

DBE = "XID 48 (DBE (Double Bit Error) ECC Error)"


def beat(world: Api, faults: dict[int, str], node: str = "gpu-a", count: int = 8) -> None:
    world.ok("POST", "/agent/heartbeat", "agent1", {"node": node, "devices": [
        {"index": i, "healthy": i not in faults, "health_detail": faults.get(i, "")} for i in range(count)]})


def node_of(world: Api, name: str = "gpu-a") -> dict[str, Any]:
    return world.ok("GET", f"/nodes/s1/{name}", "operator")  # type: ignore[no-any-return]


def preview(world: Api, devices: int) -> dict[str, Any]:
    return world.ok("POST", "/placement/preview", "operator",  # type: ignore[no-any-return]
                    {"devices": devices, "models": ["h100-sxm"]})


@pytest.fixture
def buffered(world: Api) -> Iterator[BeatBuffer]:
    """A serving process's beat buffer (quick path and known beats on), its flusher driven by hand."""
    ctx = world.client.app.state.ctx  # type: ignore[attr-defined]
    ctx.beats = BeatBuffer("test-devcordon", timedelta(seconds=300))
    yield ctx.beats
    ctx.beats = None


def test_a_device_fault_takes_out_that_device_and_the_node_keeps_the_others(world: Api) -> None:
    world.ok("POST", "/agent/register", "agent1", h100_node("gpu-a"))
    beat(world, {3: DBE})
    node = node_of(world)
    assert node["cordon_reason"] is None and node["status"] == "ready"
    device = node["devices"][3]
    assert device["cordon_reason"] == f"device 3: {DBE}" and device["cordoned_at"] is not None
    assert not device["available"]
    assert [d["index"] for d in node["devices"] if d["available"]] == [0, 1, 2, 4, 5, 6, 7]
    assert all(d["cordon_reason"] is None for d in node["devices"] if d["index"] != 3)
    seven = preview(world, 7)
    assert seven["placed"] and seven["node"] == "gpu-a" and 3 not in seven["device_indices"]
    assert not preview(world, 8)["placed"]  # the eighth device is the cordoned one
    listed = world.ok("GET", "/nodes", "operator")[0]  # the page (PostgreSQL: built as JSON) says the same
    assert listed["devices"][3]["cordon_reason"] == f"device 3: {DBE}" and listed["cordon_reason"] is None


def test_a_node_scoped_fault_cordons_the_node_as_before(world: Api) -> None:
    world.ok("POST", "/agent/register", "agent1", h100_node("gpu-a"))
    beat(world, {5: "XID 79 (GPU has fallen off the bus.)"})
    node = node_of(world)
    assert node["cordon_reason"] == "device 5: XID 79 (GPU has fallen off the bus.)"
    assert not any(d["available"] for d in node["devices"])
    assert not preview(world, 1)["placed"]


def test_more_than_half_the_devices_faulty_cordons_the_node(world: Api) -> None:
    world.ok("POST", "/agent/register", "agent1", h100_node("gpu-a"))
    beat(world, {i: DBE for i in range(4)})
    assert node_of(world)["cordon_reason"] is None and preview(world, 4)["placed"]  # half: device by device
    beat(world, {i: DBE for i in range(5)})
    assert node_of(world)["cordon_reason"] == "5 of 8 devices faulty" and not preview(world, 1)["placed"]


def test_device_uncordon_is_refused_while_faulty_and_accepted_once_clean(world: Api, clock: Clock) -> None:
    world.ok("POST", "/agent/register", "agent1", h100_node("gpu-a"))
    beat(world, {3: DBE})
    refused = world.call("POST", "/nodes/s1/gpu-a/uncordon", "operator", {"device": 3})
    assert refused.status_code == 409, refused.text
    assert refused.json()["error"]["field"] == "device" and "still reports faults: device 3: XID 48" in refused.text
    assert world.call("POST", "/nodes/s1/gpu-a/uncordon", "operator", {"device": 9}).status_code == 404
    assert world.call("POST", "/nodes/s1/gpu-a/uncordon", "acme", {"device": 3}).status_code == 403
    clock.advance(seconds=10)
    beat(world, {})  # clean, but well within the clean period: still out
    assert node_of(world)["devices"][3]["cordon_reason"] is not None
    node = world.ok("POST", "/nodes/s1/gpu-a/uncordon", "operator", {"device": 3})
    assert node["devices"][3]["cordon_reason"] is None and all(d["available"] for d in node["devices"])
    assert preview(world, 8)["placed"]
    audit = [e for e in world.ok("GET", "/audit", "operator", limit=1000) if e["action"] == "device.uncordon"]
    assert [(e["object_ref"], e["detail"]) for e in audit] == [("s1/gpu-a", {"device": 3})]


def test_a_device_returns_by_itself_after_the_clean_period(world: Api, clock: Clock) -> None:
    world.ok("POST", "/agent/register", "agent1", h100_node("gpu-a"))
    beat(world, {3: "ECC: 2 volatile uncorrectable errors"})
    clock.advance(seconds=10)
    beat(world, {})
    clock.advance(seconds=200)
    beat(world, {3: "ECC: 2 volatile uncorrectable errors"})  # flapping: the clean period starts again
    clock.advance(seconds=10)
    beat(world, {})
    clock.advance(seconds=299)
    beat(world, {})
    assert node_of(world)["devices"][3]["cordon_reason"] is not None
    clock.advance(seconds=1)
    beat(world, {})
    node = node_of(world)
    assert node["devices"][3]["cordon_reason"] is None and node["devices"][3]["available"]


def test_a_node_with_a_cordoned_device_is_never_answered_from_memory(world: Api, clock: Clock,
                                                                     buffered: BeatBuffer) -> None:
    """The device's clean period advances only on full beats: identical clean beats must not be
    answered by the quick path or the known-beat shortcut, or the device would never return."""
    world.ok("POST", "/agent/register", "agent1", h100_node("gpu-a"))
    beat(world, {})
    beat(world, {})
    assert len(buffered.known) == 1  # steady: its next identical beat is answered from memory
    beat(world, {3: DBE})
    assert len(buffered.known) == 0  # forgotten at once: the old clean bytes are checked again
    for _ in range(31):  # 310 s of identical clean beats
        clock.advance(seconds=10)
        beat(world, {})
        assert len(buffered.known) == 0 or node_of(world)["devices"][3]["cordon_reason"] is None
    node = node_of(world)
    assert node["devices"][3]["cordon_reason"] is None and all(d["available"] for d in node["devices"])
    beat(world, {})
    beat(world, {})
    assert len(buffered.known) == 1  # steady again: the shortcut is back


def test_node_show_and_uncordon_device_from_the_cli(world: Api, monkeypatch: pytest.MonkeyPatch) -> None:
    world.ok("POST", "/agent/register", "agent1", h100_node("gpu-a"))
    beat(world, {3: DBE})
    runner = cli_against(world, monkeypatch)
    shown = runner.invoke(cli_app, ["node", "show", "s1/gpu-a"])
    assert shown.exit_code == 0, shown.output
    assert "cordon_reason" in shown.output and "device 3: XID 48" in shown.output
    refused = runner.invoke(cli_app, ["node", "uncordon", "s1/gpu-a", "--device", "3"])
    assert refused.exit_code != 0 and "still reports faults" in str(refused.exception) + refused.output
    beat(world, {})
    done = runner.invoke(cli_app, ["node", "uncordon", "s1/gpu-a", "--device", "3", "--json"])
    assert done.exit_code == 0, done.output
    assert json.loads(done.output)["devices"][3]["cordon_reason"] is None
