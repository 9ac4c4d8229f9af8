"""detect_accelerators: ask every vendor tool present on this machine which devices it sees.

Each tool is probed only if the runner finds it, each call is bounded by a timeout, and a tool that is
missing, fails, hangs or prints something unexpected is skipped (and logged) — detection never raises,
because one vendor's broken driver must not hide another vendor's healthy devices.

Kunlunxin ``xpu-smi`` and Enflame ``efsmi`` are not probed: their output format is not publicly
documented (and Intel ships a different tool also named ``xpu-smi``), so parsing them would be guessing.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from zhisuan.agent.detection import commands
from zhisuan.agent.detection.cnmon import parse_cnmon
from zhisuan.agent.detection.device import DetectedDevice
from zhisuan.agent.detection.hy_smi import parse_dcu_json, parse_dcu_table
from zhisuan.agent.detection.ixsmi import parse_ixsmi
from zhisuan.agent.detection.mthreads_gmi import parse_mthreads_gmi
from zhisuan.agent.detection.mx_smi import parse_mx_smi
from zhisuan.agent.detection.npu_smi import parse_npu_smi_info
from zhisuan.agent.detection.nvidia_smi import detect_with_nvml, parse_nvidia_smi_csv
from zhisuan.agent.detection.runners import CommandRunner, FixtureRunner, SubprocessRunner
from zhisuan.catalog import Catalog, default_catalog

FAKE_SMI_DIR_ENV = "ZHISUAN_FAKE_SMI_DIR"
DEFAULT_TIMEOUT_S = 10.0
DEMO_FIXTURE_SETS = ("h100x8", "ascend910bx8")

log = logging.getLogger(__name__)


class ToolFailed(RuntimeError):
    """A tool ran but did not succeed; carries its stderr for the log."""


@dataclass(frozen=True)
class Probe:
    tool: str
    detect: Callable[[CommandRunner, float, Catalog], list[DetectedDevice]]


def _stdout(runner: CommandRunner, argv: tuple[str, ...], timeout_s: float) -> str:
    result = runner.run(argv, timeout_s)
    if not result.ok:
        raise ToolFailed(f"{' '.join(argv)} exited {result.returncode}: {result.stderr.strip()[:200]}")
    return result.stdout


def _nvidia(runner: CommandRunner, timeout_s: float, catalog: Catalog) -> list[DetectedDevice]:
    result = runner.run(commands.NVIDIA_SMI_QUERY, timeout_s)
    # A lost GPU makes nvidia-smi exit non-zero while still listing the others, and it says so on
    # stderr: parse both streams whatever the exit code.
    devices = parse_nvidia_smi_csv(result.stdout + "\n" + result.stderr, catalog)
    if not devices and not result.ok:
        raise ToolFailed(f"nvidia-smi exited {result.returncode}: {result.stderr.strip()[:200]}")
    return devices


def _npu(runner: CommandRunner, timeout_s: float, catalog: Catalog) -> list[DetectedDevice]:
    info = _stdout(runner, commands.NPU_SMI_INFO, timeout_s)
    mapping = runner.run(commands.NPU_SMI_MAPPING, timeout_s)  # optional: names and logical ids
    return parse_npu_smi_info(info, mapping.stdout if mapping.ok else None, catalog)


def _dcu(tool: str, json_argv: tuple[str, ...], table_argv: tuple[str, ...]) -> Probe:
    def detect(runner: CommandRunner, timeout_s: float, catalog: Catalog) -> list[DetectedDevice]:
        try:
            return parse_dcu_json(_stdout(runner, json_argv, timeout_s), tool, catalog)
        except Exception as error:  # older hy-smi without --json: fall back to the concise table
            log.info("%s JSON query unusable (%s); using the plain table", tool, error)
            return parse_dcu_table(_stdout(runner, table_argv, timeout_s), tool)

    return Probe(tool, detect)


def _simple(tool: str, argv: tuple[str, ...], parse: Callable[[str, Catalog], list[DetectedDevice]]) -> Probe:
    return Probe(tool, lambda runner, timeout_s, catalog: parse(_stdout(runner, argv, timeout_s), catalog))


PROBES: tuple[Probe, ...] = (
    Probe("nvidia-smi", _nvidia),
    Probe("npu-smi", _npu),
    _simple("cnmon", commands.CNMON, parse_cnmon),
    _dcu("hy-smi", commands.HY_SMI_JSON, commands.HY_SMI),
    _dcu("rocm-smi", commands.ROCM_SMI_JSON, commands.ROCM_SMI),
    _simple("mthreads-gmi", commands.MTHREADS_GMI, parse_mthreads_gmi),
    _simple("ixsmi", commands.IXSMI, parse_ixsmi),
    _simple("mx-smi", commands.MX_SMI, parse_mx_smi),
)


def default_runner() -> CommandRunner:
    """FixtureRunner over ``$ZHISUAN_FAKE_SMI_DIR`` when set (demo/test mode), else the real tools."""
    fake_dir = os.environ.get(FAKE_SMI_DIR_ENV)
    if fake_dir:
        log.warning(
            "%s is set: devices come from recordings in %s, not from hardware", FAKE_SMI_DIR_ENV, fake_dir
        )
        return FixtureRunner(fake_dir)
    return SubprocessRunner()


def detect_accelerators(
    runner: CommandRunner | None = None,
    catalog: Catalog | None = None,
    timeout_s: float = DEFAULT_TIMEOUT_S,
) -> list[DetectedDevice]:
    """Every device every present vendor tool reports; never raises.

    ``runner`` defaults to ``default_runner()``. On real hardware NVIDIA devices come from NVML when
    ``pynvml`` is importable, else from nvidia-smi. hy-smi and rocm-smi report the same DCUs, so
    rocm-smi is only asked when hy-smi found nothing.
    """
    runner = runner if runner is not None else default_runner()
    catalog = catalog or default_catalog()
    found: list[DetectedDevice] = []
    tools_with_devices: set[str] = set()
    for probe in PROBES:
        if probe.tool == "rocm-smi" and "hy-smi" in tools_with_devices:
            continue
        devices = _run_probe(probe, runner, timeout_s, catalog)
        if devices:
            tools_with_devices.add(probe.tool)
        found.extend(devices)
    return found


def _run_probe(
    probe: Probe, runner: CommandRunner, timeout_s: float, catalog: Catalog
) -> list[DetectedDevice]:
    try:
        if not runner.which(probe.tool):
            return []
        if probe.tool == "nvidia-smi" and isinstance(runner, SubprocessRunner):
            nvml_devices = detect_with_nvml(catalog)
            if nvml_devices is not None:
                return nvml_devices
        return probe.detect(runner, timeout_s, catalog)
    except Exception as error:  # never let one tool break detection of the others
        log.warning("skipping %s: %s", probe.tool, error)
        return []


def demo_fixture_dir(name: str) -> Path:
    """The packaged demo recordings ``name`` (one of DEMO_FIXTURE_SETS), for ZHISUAN_FAKE_SMI_DIR."""
    if name not in DEMO_FIXTURE_SETS:
        raise ValueError(f"unknown demo fixture set {name!r}; expected one of {', '.join(DEMO_FIXTURE_SETS)}")
    return Path(str(resources.files("zhisuan.agent").joinpath("demo_fixtures", name)))
