"""How the agent runs vendor tools: for real (SubprocessRunner) or from recordings (FixtureRunner)."""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from zhisuan.agent.detection.commands import fixture_file_name, fixture_files_of_tool

EXIT_NOT_FOUND = 127
EXIT_TIMED_OUT = 124


@dataclass(frozen=True)
class CommandResult:
    """What a tool invocation produced. Runners never raise: failures become a non-zero returncode."""

    returncode: int
    stdout: str
    stderr: str = ""

    @property
    def ok(self) -> bool:
        return self.returncode == 0


class CommandRunner(Protocol):
    """Runs a vendor tool. Injected into ``detect_accelerators`` so tests need no hardware."""

    def which(self, tool: str) -> bool:
        """Whether ``tool`` can be run here."""
        ...

    def run(self, argv: Sequence[str], timeout_s: float) -> CommandResult:
        """Run ``argv``; never raises, reports failure in the result."""
        ...


class SubprocessRunner:
    """Runs the real tools found on PATH, each call bounded by a timeout (a hung driver must not hang
    the agent)."""

    def which(self, tool: str) -> bool:
        return shutil.which(tool) is not None

    def run(self, argv: Sequence[str], timeout_s: float) -> CommandResult:
        try:
            completed = subprocess.run(
                list(argv), capture_output=True, text=True, timeout=timeout_s, check=False
            )
        except subprocess.TimeoutExpired:
            return CommandResult(EXIT_TIMED_OUT, "", f"{argv[0]} timed out after {timeout_s:g} s")
        except OSError as error:
            return CommandResult(EXIT_NOT_FOUND, "", f"{argv[0]}: {error}")
        return CommandResult(completed.returncode, completed.stdout, completed.stderr)


class FixtureRunner:
    """A FAKE runner for tests and demos on machines without accelerators.

    It does not run anything: it answers each invocation the agent makes with a recorded output file
    from ``directory`` (``nvidia-smi.txt``, ``npu-smi-info.txt``… see ``commands.FIXTURE_FILES``). A
    tool "exists" when one of its files exists. An optional ``<file>.rc`` holds a non-zero exit code to
    replay a failing tool. Select it for the whole agent with ``ZHISUAN_FAKE_SMI_DIR=<directory>``.
    """

    def __init__(self, directory: Path | str) -> None:
        self.directory = Path(directory)

    def which(self, tool: str) -> bool:
        return any((self.directory / name).is_file() for name in fixture_files_of_tool(tool))

    def run(self, argv: Sequence[str], timeout_s: float) -> CommandResult:
        name = fixture_file_name(tuple(argv))
        path = self.directory / name if name else None
        if path is None or not path.is_file():
            return CommandResult(EXIT_NOT_FOUND, "", f"no recording for {' '.join(argv)!r}")
        rc_path = path.with_name(path.name + ".rc")
        returncode = int(rc_path.read_text().strip()) if rc_path.is_file() else 0
        return CommandResult(returncode, path.read_text(encoding="utf-8"))
