"""A newcomer's first hour and the secrets a box keeps: credentials, modes, URLs, agent keys, pipes.

Real ``zhisuan up`` processes and the real CLI as subprocesses (stdout is a pipe, not a terminal).
"""

from __future__ import annotations

import os
import re
import stat
import subprocess
import sys
from collections.abc import Iterator
from importlib import resources
from pathlib import Path

import pytest

from tests.e2e.conftest import Platform, start_platform, stop

H100_FIXTURES = str(resources.files("zhisuan.agent").joinpath("demo_fixtures/h100x8"))


@pytest.fixture(scope="module")
def shared(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Platform]:
    running = start_platform(tmp_path_factory.mktemp("newcomer"))
    yield running
    stop(running)


def loose_paths(root: Path) -> list[str]:
    """Everything under ``root`` (itself included) that group or others may read, write or enter."""
    return [f"{path} {stat.filemode(path.stat().st_mode)}" for path in (root, *root.rglob("*"))
            if not path.is_symlink() and path.stat().st_mode & 0o077]


def test_first_start_without_a_terminal_keeps_credentials_out_of_the_log(tmp_path: Path) -> None:
    first = start_platform(tmp_path)
    output = stop(first)
    assert first.api_key not in output and first.password not in output
    credentials = tmp_path / "data" / "first-operator.txt"
    assert f"credentials are in {credentials} (mode 0600)" in output
    assert stat.S_IMODE(credentials.stat().st_mode) == 0o600
    assert stat.S_IMODE((tmp_path / "data").stat().st_mode) == 0o700
    assert stat.S_IMODE((tmp_path / "data" / "zhisuan.db").stat().st_mode) == 0o600
    assert loose_paths(tmp_path / "data") == []

    # A data directory an older version left world-readable is tightened at the next start.
    (tmp_path / "data").chmod(0o755)
    (tmp_path / "data" / "zhisuan.db").chmod(0o644)
    (tmp_path / "data" / "logs").mkdir(mode=0o755, exist_ok=True)
    (tmp_path / "data" / "logs" / "old.log").write_text("")
    (tmp_path / "data" / "logs" / "old.log").chmod(0o644)
    second = start_platform(tmp_path, first_start=False)
    try:
        assert loose_paths(tmp_path / "data") == []
    finally:
        stop(second)


def test_a_database_password_never_reaches_the_terminal(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "zhisuan", "up", "--no-maas", "--data-dir", str(tmp_path / "data"),
         "--database", "postgresql://zhisuan:Pa55-w0rd-xyz@127.0.0.1:9/zhisuan"],
        capture_output=True, text=True, timeout=60, env={**os.environ, "XDG_CONFIG_HOME": str(tmp_path)})
    assert result.returncode == 1
    assert "Pa55-w0rd-xyz" not in result.stdout + result.stderr
    assert "cannot prepare the database postgresql+psycopg://zhisuan:***@127.0.0.1:9/zhisuan" in result.stderr


def test_keys_show_their_limits(shared: Platform) -> None:
    shared.cli("tenant", "create", "limited")
    shared.cli("user", "create", "limited-ops", "--role", "tenant", "--tenant", "limited")
    created = shared.cli("key", "create", "--user", "limited-ops", "--model", "smollm2-135m-instruct",
                         "--rpm", "60", "--tpm", "20000", "--token-budget", "1000000", "--money-budget", "12.50")
    limits = "models=smollm2-135m-instruct rpm=60 tpm=20000 tokens=1000000 CNY=12.50 per=month"
    assert limits in created.stdout
    forever = shared.cli("key", "create", "--user", "limited-ops", "--token-budget", "500", "--budget-period", "none")
    assert "tokens=500 per=ever" in forever.stdout
    table = shared.cli("key", "list").stdout
    assert "LIMITS" in table and limits in table and "unlimited" in table  # the operator's own key
    listed = [key for key in shared.cli_json("key", "list") if key["username"] == "limited-ops"][0]
    assert (listed["models"], listed["rpm"], listed["tpm"], listed["token_budget"], listed["money_budget"]) == (
        ["smollm2-135m-instruct"], 60, 20000, 1000000, "12.50")


@pytest.mark.parametrize("command", [("catalog", "list"), ("key", "list", "--json"), ("--help",)])
def test_a_reader_that_stops_early_ends_the_command_quietly(shared: Platform, command: tuple[str, ...]) -> None:
    process = subprocess.Popen([sys.executable, "-m", "zhisuan", *command], stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True, env=shared.env())
    assert process.stdout is not None and process.stderr is not None
    process.stdout.close()  # like `| head` that has read its lines: every later write hits a closed pipe
    errors = process.stderr.read()
    assert process.wait(timeout=60) == 0, errors
    assert errors == ""


def test_agent_key_comes_from_a_file_or_the_environment(shared: Platform, tmp_path: Path) -> None:
    shared.cli("provider", "create", "dc-agents", "--revenue-share", "0.7")
    shared.cli("site", "create", "agents-1", "--engine", "slurm", "--region", "cn-east-1", "--provider", "dc-agents")
    key_file = tmp_path / "agent.key"
    key_file.write_text(shared.cli_json("site", "agent-key", "agents-1")["key"] + "\n")
    by_file = shared.cli("agent", "--server", shared.url, "--token-file", str(key_file), "--name", "gpu-01",
                         "--once", ZHISUAN_FAKE_SMI_DIR=H100_FIXTURES)
    assert "node registered" in by_file.stdout and by_file.stderr.count("warning") == 0

    second_key = shared.cli_json("site", "agent-key", "agents-1")["key"]  # one key per node
    by_env = shared.cli("agent", "--server", shared.url, "--name", "gpu-02", "--once",
                        ZHISUAN_FAKE_SMI_DIR=H100_FIXTURES, ZHISUAN_AGENT_TOKEN=second_key)
    assert "node registered" in by_env.stdout

    other_node = shared.cli("agent", "--server", shared.url, "--token-file", str(key_file), "--name", "gpu-02",
                            "--once", check=False, ZHISUAN_FAKE_SMI_DIR=H100_FIXTURES)
    assert other_node.returncode == 1 and "belongs to another node" in other_node.stderr

    on_command_line = shared.cli("agent", "--server", shared.url, "--token", second_key, "--name", "gpu-02",
                                 "--once", ZHISUAN_FAKE_SMI_DIR=H100_FIXTURES)
    assert "warning: --token shows the agent key" in on_command_line.stderr
    missing = shared.cli("agent", "--server", shared.url, "--once", check=False)
    assert missing.returncode == 1 and "no agent key" in missing.stderr


README = (Path(__file__).parents[2] / "README.md").read_text(encoding="utf-8")
SCRIPTS = Path(__file__).parents[2] / "scripts"


def test_readme_place_examples_are_what_its_walkthrough_gives(tmp_path: Path) -> None:
    examples = re.findall(r"^- `zhisuan place ([^`]+)` → `([^`]+)`$", README, re.M)
    assert len(examples) >= 2
    running = start_platform(tmp_path)
    try:
        running.cli("provider", "create", "dc-east", "--revenue-share", "0.7")
        running.cli("site", "create", "east-1", "--engine", "slurm", "--region", "cn-east-1", "--provider", "dc-east")
        key_file = tmp_path / "gpu-01.key"
        key_file.write_text(running.cli("site", "agent-key", "east-1").stdout)  # the key alone goes to stdout
        running.cli("agent", "--server", running.url, "--token-file", str(key_file), "--name", "gpu-01", "--once",
                    ZHISUAN_FAKE_SMI_DIR=H100_FIXTURES)
        for arguments, shown in examples:
            assert running.cli("place", *arguments.split()).stdout.strip() == shown
    finally:
        stop(running)


def test_readme_commands_need_no_uv_on_path_and_both_scripts_sync_alike() -> None:
    quick_start = re.search(r"## Quick start\n\n```bash\n(.*?)```", README, re.S)
    assert quick_start and quick_start.group(1).split("\n")[:-1] == ["./scripts/up", "./scripts/test"]
    # A new login shell may lack ~/.local/bin (where scripts/ensure-env.sh puts uv): the alias must not need it.
    alias = re.search(r'^alias zhisuan="(.*)"$', README, re.M)
    assert alias and alias.group(1) == "$PWD/.venv/bin/zhisuan"
    # `uv sync --no-dev` in one and an all-groups sync in the other undid each other's installs.
    syncs = {name: re.findall(r"^uv sync .*$", (SCRIPTS / name).read_text(), re.M) for name in ("up", "test")}
    assert syncs["up"] == syncs["test"] == ["uv sync --locked --quiet"]
    assert re.search(r'^openai\b', "\n".join(dependency_names()), re.M)


def dependency_names() -> list[str]:
    import tomllib

    project = tomllib.loads((SCRIPTS.parent / "pyproject.toml").read_text())
    groups = project.get("dependency-groups", {})
    names = [*project["project"]["dependencies"], *[d for deps in groups.values() for d in deps]]
    return [str(name) for name in names]


def test_first_start_on_a_terminal_shows_the_credentials_there(tmp_path: Path) -> None:
    import pty
    import select

    from tests.e2e.conftest import free_port

    main, terminal = pty.openpty()
    process = subprocess.Popen(
        [sys.executable, "-m", "zhisuan", "up", "--no-maas", "--port", str(free_port()),
         "--data-dir", str(tmp_path / "data")],
        stdin=subprocess.DEVNULL, stdout=terminal, stderr=subprocess.DEVNULL,
        env={**os.environ, "XDG_CONFIG_HOME": str(tmp_path / "config")})
    os.close(terminal)
    seen = b""
    try:
        while b"CLI:" not in seen and select.select([main], [], [], 60)[0]:
            seen += os.read(main, 4096)
    except OSError:  # the terminal closed: the process is gone
        pass
    finally:
        process.terminate()
        process.wait(timeout=30)
        os.close(main)
    assert re.search(rb"console login:\s+admin / \S+", seen) and re.search(rb"API key:\s+zs_\S+", seen), seen
    assert not (tmp_path / "data" / "first-operator.txt").exists()


@pytest.mark.parametrize(("text", "shown"), [
    ("cannot reach postgresql+psycopg://zs:Pa55@db:5432/zs: refused",
     "cannot reach postgresql+psycopg://zs:***@db:5432/zs: refused"),
    ("redis://:hunter2@cache:6379/0 and http://user:pw@proxy", "redis://:***@cache:6379/0 and http://user:***@proxy"),
    ("postgresql://db/zs?user=zs&password=Pa55&sslmode=require", "postgresql://db/zs?user=zs&password=***&sslmode=require"),
    ("postgresql://zs@db/zs, http://127.0.0.1:8420/docs", "postgresql://zs@db/zs, http://127.0.0.1:8420/docs"),
])
def test_url_passwords_are_redacted(text: str, shown: str) -> None:
    from zhisuan.config import redact_url_passwords

    assert redact_url_passwords(text) == shown
