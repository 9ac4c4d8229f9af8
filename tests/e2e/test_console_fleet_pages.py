"""The console's fleet page with more nodes than one page holds (Debian chromium driven by Playwright,
against a real ``zhisuan up``): the nodes table walks every node a page at a time through the API's
cursor, filters by site and accelerator model on the server, and the cards and the occupancy chart
count every node (from the counts the server keeps), not the nodes of the page shown."""

from __future__ import annotations

from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest

from tests.e2e.conftest import Platform, start_platform, stop
from tests.e2e.test_console import chromium_path
from tests.e2e.test_console_roles import BROWSER_ARGS

# Site east-1: 150 nodes (8 H100 each), site west-1: 80 nodes (4 A100 each): 230 nodes, 3 pages of 100.
SITES = {"east-1": (150, "h100-sxm", 8), "west-1": (80, "a100-sxm4-80gb", 4)}


@pytest.fixture
def platform(tmp_path: Path) -> Iterator[Platform]:
    running = start_platform(tmp_path)
    yield running
    stop(running)


def seed(platform: Platform) -> None:
    api = httpx.Client(base_url=platform.url + "/api/v1", timeout=60,
                       headers={"Authorization": f"Bearer {platform.api_key}"})

    def call(path: str, body: dict[str, object]) -> None:
        response = api.post(path, json=body)
        assert response.is_success, f"{path}: {response.status_code} {response.text}"

    call("/providers", {"name": "dc", "revenue_share": "0.7"})
    declared = []
    for site, (count, model, devices) in SITES.items():
        call("/sites", {"name": site, "engine": "simulated", "region": "cn", "provider": "dc"})
        declared += [{"site": site, "name": f"n{i:03d}", "cpu_cores": 64, "memory_mib": 524288,
                      "accelerators": [{"model": model, "count": devices}]} for i in range(count)]
    with ThreadPoolExecutor(4) as pool:
        list(pool.map(lambda body: call("/nodes", body), declared))


ROWS = "[...document.querySelectorAll('#nodes tbody tr')].map((r) => r.cells[0].innerText)"


def shown_nodes(page) -> set[str]:  # type: ignore[no-untyped-def]
    return set(page.evaluate(f"() => {ROWS}"))


def wait_for_page(page, before: set[str]) -> set[str]:  # type: ignore[no-untyped-def]
    page.wait_for_function(f"([before]) => {{ const rows = {ROWS}.sort(); "
                           "return rows.length && rows.join() !== before; }",
                           arg=[",".join(sorted(before))])
    return shown_nodes(page)


def test_the_fleet_page_walks_every_node_by_pages_and_filters_on_the_server(platform: Platform) -> None:
    from playwright.sync_api import sync_playwright

    seed(platform)
    local = {n["name"] for n in httpx.get(f"{platform.url}/api/v1/nodes", headers={
        "Authorization": f"Bearer {platform.api_key}"}, timeout=60).json() if n["site"] == "local"}
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=chromium_path(), args=BROWSER_ARGS)
        page = browser.new_page()
        page.set_default_timeout(60_000)
        asked: list[str] = []
        page.on("request", lambda request: asked.append(request.url) if "/api/v1/nodes" in request.url else None)
        page.goto(platform.url + "/")
        page.fill("#username", platform.username)
        page.fill("#password", platform.password)
        page.click("button[type=submit]")
        page.wait_for_selector("#nodes table")
        cards = page.inner_text("#cards").upper()
        assert f"NODES\n{230 + len(local)}\n" in cards  # every node counted, not the 100 shown
        assert "ACCELERATORS\n" in cards and str(150 * 8 + 80 * 4) in cards.replace(",", "")
        # Every node, once, walking forward page by page; then back.
        seen: list[set[str]] = [shown_nodes(page)]
        assert len(seen[0]) == 100 and page.is_disabled("#nodes-previous")
        while page.is_enabled("#nodes-next"):
            page.click("#nodes-next")
            seen.append(wait_for_page(page, seen[-1]))
        assert [len(s) for s in seen] == [100, 100, 30 + len(local)]
        every = set().union(*seen)
        assert len(every) == 230 + len(local) and {f"west-1/n{i:03d}" for i in range(80)} <= every
        page.click("#nodes-previous")
        back = wait_for_page(page, seen[-1])
        assert back == seen[-2], (sorted(back - seen[-2]), sorted(seen[-2] - back))
        # Filters go to the server: west-1's 80 nodes fit one page; A100 nodes are west-1's.
        page.select_option("#nodes-site", "west-1")
        west = wait_for_page(page, seen[-2])
        assert west == {f"west-1/n{i:03d}" for i in range(80)} and page.is_disabled("#nodes-next")
        assert any("site=west-1" in url and "limit=100" in url for url in asked)
        page.select_option("#nodes-site", "")
        page.select_option("#nodes-model", "a100-sxm4-80gb")
        page.wait_for_function("() => [...document.querySelectorAll('#nodes tbody tr')].length === 80")
        assert shown_nodes(page) == west and any("model=a100-sxm4-80gb" in url for url in asked)
        assert not any("limit=" not in url for url in asked if url.endswith("/api/v1/nodes"))
        browser.close()
