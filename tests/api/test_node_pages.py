"""``GET /api/v1/nodes`` in pages (keyset cursor in ``X-Next-Cursor``), filtered on the server, and
``zhisuan node list`` following the cursors (issue 15, item 3)."""

from __future__ import annotations

import json
from typing import Any

import pytest
from typer.testing import CliRunner

from tests.api.conftest import Api
from zhisuan.cli import client as cli_client
from zhisuan.cli.main import app


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
                                   "health_detail": "", "available": True} for i in range(2)]
