"""The web console in a real browser (Debian chromium driven by Playwright)."""

from __future__ import annotations

import os
import shutil
from importlib import resources
from pathlib import Path

import pytest

from tests.e2e.conftest import Platform

H100_FIXTURES = str(resources.files("zhisuan.agent").joinpath("demo_fixtures/h100x8"))


def chromium_path() -> str:
    path = os.environ.get("ZHISUAN_TEST_CHROMIUM") or shutil.which("chromium")
    if not path:
        if os.environ.get("CI") == "true":
            pytest.fail("CI must run the console tests: chromium is missing")
        pytest.skip("chromium is not installed (scripts/test installs Debian's package)")
    return path


def test_operator_signs_in_and_sees_the_fleet(platform: Platform, tmp_path: Path) -> None:
    from playwright.sync_api import sync_playwright

    platform.cli("provider", "create", "dc-east", "--revenue-share", "0.7")
    platform.cli("site", "create", "east-1", "--engine", "slurm", "--region", "cn-east-1", "--provider", "dc-east")
    agent_key = platform.cli_json("site", "agent-key", "east-1")["key"]
    platform.cli("agent", "--server", platform.url, "--name", "gpu-01", "--once", ZHISUAN_AGENT_TOKEN=agent_key,
                 ZHISUAN_FAKE_SMI_DIR=H100_FIXTURES)
    # A model service placed on that node (no runtime runs there in this test: it stays pending).
    platform.cli("model", "register", "qwen-7b", "--source", "/models/qwen-7b", "--engine", "vllm")
    platform.cli("deployment", "create", "qwen-7b", "--devices", "2")
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=chromium_path(),
            args=["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                  "--disable-sync", "--no-first-run"],
        )
        page = browser.new_page()
        page.set_default_timeout(60_000)  # the suite runs two workers on two cores: be patient
        # The Content-Security-Policy allows only the console's own script and styles: anything it
        # blocks (an inline script or style left behind) is reported on the browser console.
        blocked: list[str] = []
        page.on("console", lambda message: blocked.append(message.text)
                if "Content Security Policy" in message.text else None)
        response = page.goto(platform.url + "/")
        assert response is not None and "script-src 'self'" in response.headers["content-security-policy"]
        assert response.headers["x-frame-options"] == "DENY"
        page.fill("#username", platform.username)
        page.fill("#password", "wrong password")
        page.click("button[type=submit]")
        page.wait_for_selector("#error:has-text('wrong username or password')")
        page.fill("#password", platform.password)
        page.click("button[type=submit]")
        try:
            page.wait_for_selector("#nodes table")
        except Exception as error:
            raise AssertionError(f"fleet view did not load; error line: {page.inner_text('#error')!r}; "
                                 f"who: {page.inner_text('#who')!r}") from error
        nodes = page.inner_text("#nodes")
        assert "east-1/gpu-01" in nodes and "h100-sxm" in nodes
        assert "east-1" in page.inner_text("#sites")
        assert page.inner_text("#who").startswith("admin (operator)")
        cards = page.inner_text("#cards")
        assert "ACCELERATORS\n8\n" in cards.upper() and "H100-EQUIVALENTS\n8.0" in cards.upper()
        page.click("#nav a[data-route='services']")
        page.wait_for_selector("#services table")
        services = page.inner_text("#services")
        assert "qwen-7b" in services and "vllm" in services and "east-1/gpu-01" in services and "pending" in services
        assert not blocked, blocked
        # Styles come from /console/console.css (a blocked stylesheet would leave the header unstyled).
        assert page.eval_on_selector("header", "h => getComputedStyle(h).display") == "flex"
        page.screenshot(path=os.environ.get("ZHISUAN_TEST_SCREENSHOT", str(tmp_path / "console.png")), full_page=True)
        browser.close()
