"""Jobs in the web console, in a real browser (Debian chromium driven by Playwright) against a real
``zhisuan up`` whose local site has one node with 8 H100s (recorded SMI output: no GPU here) and runs
the jobs as real processes."""

from __future__ import annotations

import json
import os
import shlex
import shutil
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.conftest import Platform, start_platform, stop
from tests.e2e.test_console import H100_FIXTURES, chromium_path

TENANT_PASSWORD = "acme-console-password"


@pytest.fixture
def jobs_dir() -> Iterator[Path]:
    """As root, jobs run as per-tenant users under the jobs directory, which they must be able to enter:
    pytest's temporary directories are 0700."""
    path = Path(tempfile.mkdtemp(prefix="zhisuan-console-jobs-"))
    os.chmod(path, 0o711)
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def job_platform(tmp_path: Path, jobs_dir: Path) -> Iterator[Platform]:
    """``zhisuan up`` with 8 fake H100s on its local node."""
    running = start_platform(tmp_path, env={"ZHISUAN_FAKE_SMI_DIR": H100_FIXTURES, "ZHISUAN_JOBS_DIR": str(jobs_dir)})
    yield running
    stop_jobs(running)
    stop(running)


def stop_jobs(platform: Platform) -> None:
    """Cancel what a failed test left running and let the agent stop it: job processes outlive the
    control plane by design (a restarted one adopts them)."""
    active = platform.cli_json("job", "list", "--state", "active")
    for job in active:
        platform.cli("job", "cancel", str(job["id"]), check=False)
    deadline = time.monotonic() + 60
    while active and time.monotonic() < deadline:
        active = platform.cli_json("job", "list", "--state", "active")
        time.sleep(0.5)


def submit(platform: Platform, key: str, *args: str) -> dict[str, Any]:
    # --json goes before "--": everything after it is the job's command.
    result = platform.cli("job", "submit", "--json", *args, ZHISUAN_API_KEY=key)
    return json.loads(result.stdout)  # type: ignore[no-any-return]


def guarantee(platform: Platform, tenant: str, h100s: int) -> None:
    """An active quota contract on the local site (its provider is "local"), in force since an hour ago."""
    start = (datetime.now(UTC) - timedelta(hours=1)).strftime("%Y-%m-%dT%H:%M:%SZ")
    contract = platform.cli_json("contract", "create", "--tenant", tenant, "--model", "h100-sxm", "--quota", str(h100s),
                                 "--provider", "local", "--pricing-model", "device_hour", "--unit-price", "15",
                                 "--start", start, "--closed-months", "1")
    platform.cli("contract", "activate", str(contract["id"]))


@contextmanager
def console_page(problems: list[str]) -> Iterator[Any]:
    """A chromium page; what the Content-Security-Policy blocks and uncaught script errors go to ``problems``."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=chromium_path(),
            args=["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                  "--disable-sync", "--no-first-run"],
        )
        page = browser.new_page(viewport={"width": 1366, "height": 900})
        page.set_default_timeout(60_000)  # the suite runs two workers on two cores: be patient
        page.on("console", lambda message: problems.append(message.text)
                if "Content Security Policy" in message.text else None)
        page.on("pageerror", lambda error: problems.append(f"script error: {error}"))
        try:
            yield page
        finally:
            browser.close()


def sign_in(page: Any, url: str, username: str, password: str) -> None:
    page.goto(url + "/#/jobs")  # an operator lands on the fleet: ask for the jobs page
    page.fill("#username", username)
    page.fill("#password", password)
    page.click("button[type=submit]")
    page.wait_for_selector("#jobs-section:not([hidden])")


def test_tenant_follows_a_job_and_operator_sees_the_queue(job_platform: Platform, jobs_dir: Path,
                                                          tmp_path: Path) -> None:
    platform = job_platform
    platform.cli("tenant", "create", "acme")
    platform.cli("user", "create", "acme-dev", "--role", "tenant", "--tenant", "acme", "--password", TENANT_PASSWORD)
    key = platform.cli_json("key", "create", "--user", "acme-dev")["key"]
    guarantee(platform, "acme", 4)
    # One line per stream (one write each), and markup that must stay text in the page.
    hello = submit(platform, key, "--gpus", "1", "--name", "hello", "--", "sh", "-c",
                   "echo 'hello-console <b>not-markup</b>'; echo oops-stderr >&2; sleep 1")
    # Its second line waits for a file the test makes once the log view follows the job.
    go = jobs_dir / "go"
    sleeper = submit(platform, key, "--gpus", "2", "--name", "sleeper", "--time-limit", "5m", "--", "sh", "-c",
                     f"echo started; while [ ! -e {go} ]; do sleep 0.2; done; echo still-here; sleep 240")
    nowhere = submit(platform, key, "--gpus", "1", "--model", "ascend-910b2", "--name", "nowhere", "--", "true")
    shots = Path(os.environ.get("ZHISUAN_TEST_SCREENSHOT_DIR", str(tmp_path)))
    problems: list[str] = []
    with console_page(problems) as page:
        # The tenant: its own jobs (no tenant column), the job reaching "succeeded" by the table's refresh.
        sign_in(page, platform.url, "acme-dev", TENANT_PASSWORD)
        hello_row = f"#jobs tr[data-job='{hello['id']}']"
        page.wait_for_selector(f"{hello_row} .pill.job-succeeded")
        assert "Tenant" not in page.locator("#jobs th").all_inner_texts()
        assert page.inner_text(f"{hello_row} td:nth-child(2)") == "hello"
        assert page.is_hidden("#queue-section")

        # Only active jobs: the finished one leaves the table, the queued one stays.
        page.click("#jobs-active")
        page.wait_for_selector(hello_row, state="detached")
        page.wait_for_selector(f"#jobs tr[data-job='{nowhere['id']}']")
        page.click("#jobs-all")
        page.click(hello_row)

        # The open job: its fields, its events in order, its log (complete: the job has ended), no Cancel.
        page.wait_for_selector("#job-log:has-text('hello-console')")
        page.wait_for_selector("#log-status:has-text('complete')")
        assert "<b>not-markup</b>" in page.inner_text("#job-log")
        assert page.locator("#job-detail b").count() == 0  # log and command are text, never markup
        # The command is shown as a shell would need it typed: it reads back to the same argv.
        assert shlex.split(page.inner_text("#job-fields code")) == hello["command"]
        states = page.locator("#job-events td:nth-child(3)").all_inner_texts()
        assert states[:4] == ["queued", "admitted", "starting", "running"] and states[-1] == "succeeded", states
        assert page.is_hidden("#job-cancel")
        assert page.inner_text("#job-state") == "succeeded"
        assert "elastic · priority 0 · within guarantee" in page.inner_text("#job-fields")
        # Its goodput (GET /jobs/{id}/goodput): a bar whose segments are the parts of its wall time.
        page.wait_for_selector("#job-ettr")
        goodput = platform.cli_json("job", "goodput", str(hello["id"]), ZHISUAN_API_KEY=key)["breakdown"]
        shown = set(page.locator("#job-goodput .part").evaluate_all("nodes => nodes.map(n => n.dataset.part)"))
        parts = ("queueing", "productive", "checkpoint", "lost", "restart")
        assert shown == {part for part in parts if goodput[part] > 0}
        assert page.inner_text("#job-ettr").startswith("ETTR ")
        page.click("#log-stderr")
        page.wait_for_selector("#job-log:has-text('oops-stderr')")
        assert "hello-console" not in page.inner_text("#job-log")
        assert "succeeded" in page.inner_text("#job-usage")
        page.screenshot(path=str(shots / "console-jobs-tenant.png"), full_page=True)

        # The operator: every tenant's jobs, the Queue panel, and cancelling a running job.
        page.click("#logout")
        # Nothing of the tenant's stays in the page for whoever signs in next.
        assert page.locator("#jobs tr, #job-usage tr").count() == 0 and page.is_hidden("#job-detail")
        sign_in(page, platform.url, platform.username, platform.password)
        page.wait_for_selector("#queue-pending table")
        pending = page.inner_text("#queue-pending")
        assert "acme" in pending and "model not allowed" in pending, pending
        page.wait_for_selector("#queue-running .pill.job-running")
        assert "acme" in page.inner_text("#queue-running")
        guarantees = page.locator("#queue-guarantees tbody tr").all_inner_texts()
        assert [row.split("\t")[:4] for row in guarantees] == [["acme", "h100-sxm", "4", "2"]], guarantees
        meter = page.locator("#queue-guarantees meter")
        assert (meter.get_attribute("max"), meter.get_attribute("value")) == ("4", "2")
        assert "PREEMPTIONS SO FAR\n0" in page.inner_text("#queue-cards").upper()
        assert "Tenant" in page.locator("#jobs th").all_inner_texts()
        sleeper_row = f"#jobs tr[data-job='{sleeper['id']}']"
        page.wait_for_selector(f"{sleeper_row} .pill.job-running")
        page.click(sleeper_row)
        page.wait_for_selector("#job-log:has-text('started')")
        assert page.inner_text("#log-status").startswith("following")
        go.touch()
        page.wait_for_selector("#job-log:has-text('still-here')")  # appended from the offset it had
        assert page.inner_text("#job-log").count("started") == 1
        assert page.inner_text("#log-status").startswith("following")
        page.screenshot(path=str(shots / "console-jobs-operator.png"), full_page=True)
        page.once("dialog", lambda dialog: dialog.accept())
        page.click("#job-cancel")
        page.wait_for_selector("#job-state .pill.job-cancelled")
        page.wait_for_selector(f"{sleeper_row} .pill.job-cancelled")
        page.wait_for_selector("#log-status:has-text('complete')")
        assert page.is_hidden("#job-cancel")
        assert platform.cli_json("job", "show", str(sleeper["id"]))["state"] == "cancelled"
    assert not problems, problems


def test_the_log_view_follows_a_preempted_job_into_its_next_attempt(job_platform: Platform) -> None:
    platform = job_platform
    platform.cli("tenant", "create", "acme")
    platform.cli("tenant", "create", "beta")
    guarantee(platform, "acme", 4)
    # beta's spot job borrows all 8 H100s, acme's guarantee included; each attempt says which it is.
    spot = submit(platform, platform.api_key, "--tenant", "beta", "--gpus", "8", "--class", "spot", "--name", "spot",
                  "--time-limit", "5m", "--", "sh", "-c", 'echo "attempt-$ZHISUAN_JOB_ATTEMPT"; sleep 240')
    problems: list[str] = []
    with console_page(problems) as page:
        sign_in(page, platform.url, platform.username, platform.password)
        page.click(f"#jobs tr[data-job='{spot['id']}']")
        page.wait_for_selector("#job-log:has-text('attempt-1')")
        # acme takes its guarantee back: the spot job is preempted, queued, and runs again once acme's ends.
        owner = submit(platform, platform.api_key, "--tenant", "acme", "--gpus", "4", "--class", "reserved",
                       "--name", "owner", "--", "sleep", "2")
        page.wait_for_selector(f"#jobs tr[data-job='{owner['id']}'] .pill.job-succeeded")
        page.wait_for_selector("#job-log:has-text('attempt-2')")
        assert "attempt-1" not in page.inner_text("#job-log")  # the new attempt's log, from its start
        assert "attempt 2" in page.inner_text("#log-status")
        assert "preempted" in page.locator("#job-events td:nth-child(3)").all_inner_texts()
        assert "preempted 1×" in page.inner_text("#job-fields")
    assert not problems, problems
