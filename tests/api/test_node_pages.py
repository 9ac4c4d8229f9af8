"""``GET /api/v1/nodes`` in pages (keyset cursor in ``X-Next-Cursor``), filtered on the server, and
``zhisuan node list`` following the cursors (issue 15, item 3)."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import pytest
from pydantic import TypeAdapter
from sqlalchemy import select, update
from sqlalchemy.orm import joinedload
from typer.testing import CliRunner

from tests.api.conftest import Api, h100_node
from zhisuan.cli import client as cli_client
from zhisuan.cli.main import app
from zhisuan.identity.access import Principal
from zhisuan.identity.keys import principal_of, split_key
from zhisuan.identity.models import ApiKey
from zhisuan.inventory.listing import node_page, node_page_json
from zhisuan.inventory.models import Node
from zhisuan.inventory.schemas import NodeOut
from zhisuan.store.base import transaction


def declare(world: Api, count: int) -> list[str]:
    names = [f"n{i}" for i in range(count)]
    for name in names:
        world.ok("POST", "/nodes", "operator", {"site": "s1", "name": name, "cpu_cores": 8, "memory_mib": 1024,
                                                "accelerators": [{"model": "h100-sxm", "count": 2}]})
    return names


def pages(world: Api, **params: Any) -> list[list[str]]:
    seen: list[list[str]] = []
    cursor = params.pop("cursor", None)
    while True:
        answer = world.call("GET", "/nodes", "operator", **params, **({"cursor": cursor} if cursor else {}))
        assert answer.status_code == 200, answer.text
        seen.append([node["name"] for node in answer.json()])
        cursor = answer.headers.get("x-next-cursor")
        if cursor is None:
            assert "link" not in answer.headers
            return seen
        assert answer.headers["link"].endswith('rel="next"') and f"cursor={cursor}" in answer.headers["link"]


def test_pages_cover_every_node_once_in_order(world: Api) -> None:
    names = declare(world, 5)
    assert pages(world, limit=2) == [names[0:2], names[2:4], names[4:5]]
    assert pages(world) == [names]  # the default page holds a small fleet whole, as before pagination
    assert pages(world, limit=5) == [names]


def test_filters_apply_before_the_page_is_cut(world: Api) -> None:
    names = declare(world, 6)
    for name in names[::2]:
        world.ok("PATCH", f"/nodes/s1/{name}", "operator", {"drained": True})
    assert pages(world, limit=2, drained="true") == [["n0", "n2"], ["n4"]]
    assert pages(world, limit=2, drained="false", site="s1") == [["n1", "n3"], ["n5"]]
    assert pages(world, status="unreachable") == [[]]


@pytest.mark.parametrize(("params", "field"), [({"limit": 0}, "limit"), ({"limit": 1001}, "limit"),
                                               ({"cursor": "abc"}, "cursor")])
def test_bad_page_parameters_are_refused_naming_the_parameter(world: Api, params: dict[str, Any],
                                                               field: str) -> None:
    answer = world.call("GET", "/nodes", "operator", **params)
    assert answer.status_code == 422
    assert answer.json()["error"]["field"] == field


def test_cli_node_list_follows_the_cursors(world: Api, monkeypatch: pytest.MonkeyPatch) -> None:
    names = declare(world, 5)
    requests: list[str] = []

    def routed(method: str, url: str, **kwargs: Any) -> Any:
        kwargs.pop("timeout", None)
        requests.append(url)
        return world.client.request(method, url.removeprefix("http://zhisuan.test"), **kwargs)

    monkeypatch.setattr(cli_client.httpx, "request", routed)
    monkeypatch.setenv("ZHISUAN_SERVER", "http://zhisuan.test")
    monkeypatch.setenv("ZHISUAN_API_KEY", world.keys["operator"])
    result = CliRunner().invoke(app, ["node", "list", "--page-size", "2", "--json"])
    assert result.exit_code == 0, result.output
    assert [node["name"] for node in json.loads(result.output)] == names
    assert len(requests) == 3
    requests.clear()
    result = CliRunner().invoke(app, ["node", "list", "--page-size", "2", "--limit", "3", "--json"])
    assert result.exit_code == 0, result.output
    assert [node["name"] for node in json.loads(result.output)] == names[:3]
    assert len(requests) == 2  # a page of 2, then a page of the 1 still wanted; the rest is never read


def test_cli_node_list_prints_each_page_and_filters_on_the_server(world: Api, monkeypatch: pytest.MonkeyPatch
                                                                   ) -> None:
    names = declare(world, 5)
    world.ok("POST", "/nodes", "operator", {"site": "s1", "name": "a100", "cpu_cores": 8, "memory_mib": 1024,
                                            "accelerators": [{"model": "a100-sxm4-80gb", "count": 2}]})
    requests: list[str] = []

    def routed(method: str, url: str, **kwargs: Any) -> Any:
        kwargs.pop("timeout", None)
        requests.append(str(kwargs.get("params")))
        return world.client.request(method, url.removeprefix("http://zhisuan.test"), **kwargs)

    monkeypatch.setattr(cli_client.httpx, "request", routed)
    monkeypatch.setenv("ZHISUAN_SERVER", "http://zhisuan.test")
    monkeypatch.setenv("ZHISUAN_API_KEY", world.keys["operator"])
    result = CliRunner().invoke(app, ["node", "list", "--page-size", "2"])
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert lines[0].split()[:3] == ["ID", "SITE", "NAME"] and len(lines) == 1 + 6 and len(requests) == 3
    assert [line.split()[2] for line in lines[1:]] == [*names, "a100"]
    assert len({line.index(" s1 ") for line in lines[1:]}) == 1  # one alignment across the pages
    result = CliRunner().invoke(app, ["node", "list", "--model", "a100-sxm4-80gb"])
    assert result.exit_code == 0, result.output
    assert [line.split()[2] for line in result.output.splitlines()[1:]] == ["a100"]
    assert "'model': 'a100-sxm4-80gb'" in requests[-1]
    result = CliRunner().invoke(app, ["node", "list", "--status", "unreachable"])
    assert result.output.splitlines()[1:] == ["(none)"]


def test_a_cursor_stays_valid_while_nodes_are_added_and_removed(world: Api) -> None:
    """Keyset pages: nodes added during the walk appear at its end, a removed one is simply absent,
    and no node is seen twice or skipped."""
    names = declare(world, 5)
    first = world.call("GET", "/nodes", "operator", limit=2)
    assert [node["name"] for node in first.json()] == names[:2]
    world.ok("DELETE", "/nodes/s1/n3", "operator")
    world.ok("POST", "/nodes", "operator", {"site": "s1", "name": "late", "cpu_cores": 8, "memory_mib": 1024,
                                            "accelerators": [{"model": "h100-sxm", "count": 1}]})
    rest = pages(world, limit=2, cursor=first.headers["x-next-cursor"])
    assert rest == [["n2", "n4"], ["late"]]
    page = world.ok("GET", "/nodes", "operator", limit=1, cursor=first.headers["x-next-cursor"])
    assert page[0]["devices"] == [{"index": i, "uuid": "", "model": "h100-sxm", "reported_name": "h100-sxm",
                                   "memory_mib": page[0]["devices"][i]["memory_mib"], "health": "healthy",
                                   "health_detail": "", "available": True, "cordon_reason": None,
                                   "cordoned_at": None} for i in range(2)]


def body_of(name: str, devices: int, labels: dict[str, str], detail: str = "") -> dict[str, Any]:
    body = h100_node(name, devices, healthy=lambda i: not detail or i != 0)
    body["labels"] = labels
    body["devices"] = [{**device, "health_detail": detail if i == 0 else ""}
                       for i, device in enumerate(body["devices"])]
    return body


def test_postgresql_builds_the_same_body_as_the_rows(world: Api) -> None:
    """On PostgreSQL the page's JSON comes from PostgreSQL (``listing.node_page_json``): parsed, it is
    exactly what the rows give through ``NodeOut`` — every field, strings and timestamps as Pydantic
    writes them (with and without microseconds, NULLs), a node without devices, any visible subset."""
    state = world.client.app.state  # type: ignore[attr-defined]
    sessions = state.ctx.sessions
    with transaction(sessions) as session:
        if session.get_bind().dialect.name != "postgresql":
            pytest.skip("the JSON is built by PostgreSQL only; SQLite serves the rows")
    keys = [world.ok("POST", f"/sites/s{1 + n % 2}/agent-keys", "operator", {})["key"] for n in range(4)]
    bodies = [body_of("gpu-a", 2, {"rack": "r1", "note": 'a "quoted" ünïcode\\value'}),
              body_of("gpu-b", 3, {}, detail='XID 79: "fell off the bus"\n'),
              body_of("gpu-c", 0, {"z": ""}), body_of("gpu-d", 1, {"rack": "r2"})]
    for key, body in zip(keys, bodies, strict=True):
        world.keys["k"] = key
        world.ok("POST", "/agent/register", "k", body)
    declare(world, 1)  # declared by hand: no agent version, no heartbeat yet
    with transaction(sessions) as session:
        session.execute(update(Node).where(Node.name == "gpu-a").values(
            registered_at=datetime(2026, 12, 2, 1, 2, 3, tzinfo=UTC),
            last_heartbeat_at=datetime(2026, 12, 2, 1, 2, 3, 5, tzinfo=UTC)))
    answers = TypeAdapter(list[NodeOut])
    seen: list[list[dict[str, Any]]] = []
    for reader, params in [("operator", {}), ("operator", {"limit": 2}), ("p1", {}), ("operator", {"status": "ready"}),
                           ("operator", {"after_id": 10**9})]:
        limit = params.pop("limit", 1000)
        principal = principal_of_key(sessions, world.keys[reader])
        with transaction(sessions) as session:
            built, following = node_page_json(session, principal, site_id=None, status=params.get("status"),
                                              drained=None, after_id=params.get("after_id"), limit=limit)
            rows = node_page(session, principal, site_id=None, status=params.get("status"), drained=None,
                             after_id=params.get("after_id"), limit=limit + 1)
        expected = answers.dump_python(answers.validate_python(rows[:limit]), mode="json")
        assert json.loads(built) == expected, (reader, params)
        assert following == (rows[limit - 1]["id"] if len(rows) > limit else None)
        assert len(expected) == min(limit, len(rows))
        seen.append(expected)
    everything = seen[0]
    assert len(everything) == 5 and any(node["cordon_reason"] for node in everything)  # gpu-b: cordoned
    assert [len(page) for page in seen[1:]] == [2, 3, 5, 0]  # p1 sees site s1: gpu-a, gpu-c, n0


def principal_of_key(sessions: Any, token: str) -> Principal:
    with transaction(sessions) as session:
        row = session.execute(select(ApiKey).options(joinedload(ApiKey.user))
                              .where(ApiKey.key_id == split_key(token)[0])).scalar_one()
        return principal_of(row)
