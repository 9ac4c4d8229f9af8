"""detect_accelerators end to end through injected runners: fixtures, failures, timeouts, NVML."""

from __future__ import annotations

import json
import subprocess
import sys
import types
from collections.abc import Sequence
from pathlib import Path

import pytest

from zhisuan.agent.detection import (
    FAKE_SMI_DIR_ENV,
    CommandResult,
    FixtureRunner,
    SubprocessRunner,
    commands,
    demo_fixture_dir,
    detect_accelerators,
)

FIXTURES = Path(__file__).parent / "fixtures"


class ScriptedRunner:
    """A test double: tools present and their canned results (or exceptions) per argv."""

    def __init__(self, results: dict[tuple[str, ...], CommandResult | Exception]) -> None:
        self.results = results
        self.calls: list[tuple[tuple[str, ...], float]] = []

    def which(self, tool: str) -> bool:
        return any(argv[0] == tool for argv in self.results)

    def run(self, argv: Sequence[str], timeout_s: float) -> CommandResult:
        self.calls.append((tuple(argv), timeout_s))
        outcome = self.results.get(tuple(argv), CommandResult(127, "", "not scripted"))
        if isinstance(outcome, Exception):
            raise outcome
        return outcome


def fixture_text(relative: str) -> str:
    return (FIXTURES / relative).read_text()


def test_demo_h100x8_via_fixture_runner() -> None:
    devices = detect_accelerators(FixtureRunner(demo_fixture_dir("h100x8")))
    assert [(d.index, d.model_key, d.tool) for d in devices] == [
        (i, "h100-sxm", "nvidia-smi") for i in range(8)
    ]


def test_env_var_switches_the_default_runner_to_fixtures(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(FAKE_SMI_DIR_ENV, str(demo_fixture_dir("ascend910bx8")))
    devices = detect_accelerators()
    assert len(devices) == 8
    assert {(d.model_key, d.vendor, d.healthy) for d in devices} == {("ascend-910b3", "huawei", True)}


def test_unknown_demo_set_is_rejected() -> None:
    with pytest.raises(ValueError, match="h100x8"):
        demo_fixture_dir("b200x8")


def test_a_failing_tool_never_hides_the_others() -> None:
    runner = ScriptedRunner(
        {
            commands.NVIDIA_SMI_QUERY: RuntimeError("driver exploded"),
            commands.CNMON: CommandResult(0, "this is not cnmon output"),
            commands.MX_SMI: CommandResult(0, fixture_text("mx-smi/c500x8.txt")),
            commands.IXSMI: CommandResult(1, "", "ixsmi: failed to initialise"),
        }
    )
    devices = detect_accelerators(runner)
    assert {d.tool for d in devices} == {"mx-smi"} and len(devices) == 8


def test_every_call_carries_the_timeout() -> None:
    runner = ScriptedRunner(
        {commands.NPU_SMI_INFO: CommandResult(0, fixture_text("npu-smi/atlas-a3-910c.txt"))}
    )
    detect_accelerators(runner, timeout_s=3.5)
    assert runner.calls and all(timeout == 3.5 for _, timeout in runner.calls)


def test_npu_mapping_is_optional() -> None:
    runner = ScriptedRunner(
        {
            commands.NPU_SMI_INFO: CommandResult(0, fixture_text("npu-smi/910b3x8-healthy.txt")),
            commands.NPU_SMI_MAPPING: CommandResult(1, "", "not supported"),
        }
    )
    devices = detect_accelerators(runner)
    assert {d.reported_name for d in devices} == {"910B3"} and len(devices) == 8


def test_nvidia_smi_non_zero_exit_with_a_lost_gpu_still_reports_all() -> None:
    healthy, lost = fixture_text("nvidia-smi/a800x8-faults.txt").rsplit("Unable", 1)
    runner = ScriptedRunner({commands.NVIDIA_SMI_QUERY: CommandResult(15, healthy, "Unable" + lost)})
    devices = detect_accelerators(runner)
    assert len(devices) == 8 and [d.uuid for d in devices if d.index == -1] == ["0000:3B:00.0"]


def test_hy_smi_falls_back_to_the_table_and_rocm_smi_is_then_skipped(tmp_path: Path) -> None:
    (tmp_path / "hy-smi.txt").write_text(fixture_text("hy-smi/k100ai-x4.txt"))
    (tmp_path / "rocm-smi.txt").write_text(fixture_text("hy-smi/k100ai-x4.txt"))
    devices = detect_accelerators(FixtureRunner(tmp_path))
    assert [(d.index, d.tool) for d in devices] == [(i, "hy-smi") for i in range(4)]


def test_hy_smi_json_is_preferred(tmp_path: Path) -> None:
    (tmp_path / "hy-smi-json.txt").write_text(fixture_text("hy-smi-json/dcu-gpustack.txt"))
    (tmp_path / "hy-smi.txt").write_text(fixture_text("hy-smi/k100ai-x4.txt"))
    devices = detect_accelerators(FixtureRunner(tmp_path))
    assert [(d.uuid, d.memory_mib) for d in devices] == [("7100fa8866904061", 65520)]


def test_fixture_runner_replays_exit_codes(tmp_path: Path) -> None:
    (tmp_path / "cnmon.txt").write_text(fixture_text("cnmon/mlu370-x8-v5.txt"))
    (tmp_path / "cnmon.txt.rc").write_text("2\n")
    runner = FixtureRunner(tmp_path)
    assert runner.which("cnmon") and not runner.which("nvidia-smi")
    assert runner.run(commands.CNMON, 1.0).returncode == 2
    assert detect_accelerators(runner) == []
    assert runner.run(("cnmon", "--unrecorded"), 1.0).returncode == 127


def test_subprocess_runner_reports_missing_tools_and_timeouts() -> None:
    runner = SubprocessRunner()
    assert not runner.which("no-such-smi-tool")
    assert runner.run(["no-such-smi-tool"], 1.0).returncode == 127
    assert runner.run([sys.executable, "-c", "import time; time.sleep(5)"], 0.2).returncode == 124
    echoed = runner.run([sys.executable, "-c", "print('0, GPU-x, NVIDIA A10, 1, 0, 0, 30, 10')"], 60.0)
    assert echoed.ok and "NVIDIA A10" in echoed.stdout


def test_nvml_is_used_on_real_hardware_when_importable(monkeypatch: pytest.MonkeyPatch) -> None:
    class NVMLError(Exception):
        pass

    memory = types.SimpleNamespace(total=81559 * 1024 * 1024, used=0)
    fake = types.SimpleNamespace(
        NVML_TEMPERATURE_GPU=0,
        nvmlInit=lambda: None,
        nvmlShutdown=lambda: None,
        nvmlDeviceGetCount=lambda: 2,
        nvmlDeviceGetHandleByIndex=lambda index: index,
        nvmlDeviceGetName=lambda handle: b"NVIDIA H100 80GB HBM3",
        nvmlDeviceGetMemoryInfo=lambda handle: memory,
        nvmlDeviceGetTemperature=lambda handle, sensor: 30 if handle == 0 else 90,
        nvmlDeviceGetUUID=lambda handle: (
            f"GPU-nvml-{handle}" if handle == 0 else _raise(NVMLError("GPU is lost"))
        ),
    )
    monkeypatch.setitem(sys.modules, "pynvml", fake)
    monkeypatch.setattr(SubprocessRunner, "which", lambda self, tool: tool == "nvidia-smi")
    devices = detect_accelerators(SubprocessRunner())
    assert [(d.tool, d.model_key, d.healthy) for d in devices] == [
        ("nvml", "h100-sxm", True),
        ("nvml", None, False),
    ]
    assert devices[0].memory_mib == 81559 and "GPU is lost" in devices[1].health_detail


def _raise(error: Exception) -> str:
    raise error


def test_module_entry_point_prints_json_from_recordings() -> None:
    completed = subprocess.run(
        [sys.executable, "-m", "zhisuan.agent.detection"],
        capture_output=True, text=True, timeout=60, check=True,
        env={"PATH": "/usr/bin:/bin", FAKE_SMI_DIR_ENV: str(demo_fixture_dir("h100x8"))},
    )  # fmt: skip
    devices = json.loads(completed.stdout)
    assert len(devices) == 8 and devices[0]["model_key"] == "h100-sxm"
