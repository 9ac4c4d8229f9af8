"""The exact tool invocations the agent makes, and the fixture file that answers each one.

One table serves both the real runner (argv) and the FixtureRunner (file name), so a demo directory is
just the tools' recorded outputs under these names.
"""

from __future__ import annotations

NVIDIA_SMI_QUERY = (
    "nvidia-smi",
    "--query-gpu=index,uuid,name,memory.total,memory.used,utilization.gpu,temperature.gpu,power.draw",
    "--format=csv,noheader,nounits",
)
NPU_SMI_INFO = ("npu-smi", "info")
NPU_SMI_MAPPING = ("npu-smi", "info", "-m")
CNMON = ("cnmon",)
# hy-smi accepts rocm-smi's options; the JSON form carries names and memory totals, the plain table
# does not, so JSON is tried first and the table is the fallback.
_DCU_JSON_OPTIONS = ("--showproductname", "--showmeminfo", "vram", "--showuniqueid", "--showtemp", "--json")
HY_SMI_JSON = ("hy-smi", *_DCU_JSON_OPTIONS)
HY_SMI = ("hy-smi",)
ROCM_SMI_JSON = ("rocm-smi", *_DCU_JSON_OPTIONS)
ROCM_SMI = ("rocm-smi",)
MTHREADS_GMI = ("mthreads-gmi",)
IXSMI = ("ixsmi",)
MX_SMI = ("mx-smi",)

FIXTURE_FILES: dict[tuple[str, ...], str] = {
    NVIDIA_SMI_QUERY: "nvidia-smi.txt",
    NPU_SMI_INFO: "npu-smi-info.txt",
    NPU_SMI_MAPPING: "npu-smi-info-m.txt",
    CNMON: "cnmon.txt",
    HY_SMI_JSON: "hy-smi-json.txt",
    HY_SMI: "hy-smi.txt",
    ROCM_SMI_JSON: "rocm-smi-json.txt",
    ROCM_SMI: "rocm-smi.txt",
    MTHREADS_GMI: "mthreads-gmi.txt",
    IXSMI: "ixsmi.txt",
    MX_SMI: "mx-smi.txt",
}


def fixture_file_name(argv: tuple[str, ...]) -> str | None:
    """The recorded-output file name for this exact invocation, or None if the agent never makes it."""
    return FIXTURE_FILES.get(argv)


def fixture_files_of_tool(tool: str) -> list[str]:
    """Every fixture file name that answers an invocation of ``tool``."""
    return [name for argv, name in FIXTURE_FILES.items() if argv[0] == tool]
