"""NVIDIA: ``nvidia-smi --query-gpu=… --format=csv,noheader,nounits`` output, and NVML when available.

Health: a field nvidia-smi replaces with an error marker (``[GPU requires reset]``, ``[Unknown Error]``,
``ERR!``…) or an ``Unable to determine the device handle for GPU <bus>: …`` line (a GPU that fell off
the bus) is a fault; temperature at or above ``HIGH_TEMPERATURE_C`` is a warning.
"""

from __future__ import annotations

import csv
import importlib
import re
from typing import Any

from zhisuan.agent.detection.device import (
    UNKNOWN_INDEX,
    DetectedDevice,
    SmiParseError,
    parse_float,
    parse_int,
    resolve_model_key,
    temperature_health,
)
from zhisuan.catalog import Catalog, default_catalog

TOOL = "nvidia-smi"
VENDOR = "nvidia"
QUERY_FIELDS = ("index", "uuid", "name", "memory.total", "memory.used", "utilization.gpu",
                "temperature.gpu", "power.draw")  # fmt: skip
ERROR_MARKERS = ("[GPU requires reset]", "[Unknown Error]", "[GPU is lost]", "ERR!", "[Insufficient Power]")
LOST_GPU = re.compile(
    r"Unable to determine the device handle for (?:GPU\s*)?(?P<bus>[0-9A-Fa-f:.]+):\s*(?P<why>.*)"
)
NO_DEVICES = "No devices were found"


def parse_nvidia_smi_csv(text: str, catalog: Catalog | None = None) -> list[DetectedDevice]:
    """Devices from the CSV query output (stdout and stderr together, so lost GPUs are seen)."""
    catalog = catalog or default_catalog()
    devices: list[DetectedDevice] = []
    unrecognised: list[str] = []
    for line in text.splitlines():
        if not line.strip() or NO_DEVICES in line:
            continue
        lost = LOST_GPU.search(line)
        if lost:
            devices.append(_lost_gpu(lost.group("bus"), lost.group("why")))
            continue
        row = next(csv.reader([line], skipinitialspace=True))
        if len(row) != len(QUERY_FIELDS) or parse_int(row[0]) is None:
            unrecognised.append(line)
            continue
        devices.append(_device_from_row([cell.strip() for cell in row], catalog))
    if unrecognised and not devices:
        raise SmiParseError(f"nvidia-smi output not in the queried CSV shape: {unrecognised[0]!r}")
    return devices


def _device_from_row(row: list[str], catalog: Catalog) -> DetectedDevice:
    index, uuid, name, total, used, _utilisation, temperature, _power = row
    faults = sorted({marker for cell in row for marker in ERROR_MARKERS if marker in cell})
    temperature_c = parse_float(temperature)
    healthy, detail = temperature_health(temperature_c)
    if faults:
        healthy, detail = False, "fault: nvidia-smi reports " + ", ".join(faults)
    return DetectedDevice(
        index=int(index),
        uuid=uuid,
        reported_name=name,
        model_key=resolve_model_key(catalog, name),
        memory_mib=parse_int(total),
        memory_used_mib=parse_int(used),
        temperature_c=temperature_c,
        healthy=healthy,
        health_detail=detail,
        vendor=VENDOR,
        tool=TOOL,
    )


def _lost_gpu(bus_id: str, reason: str) -> DetectedDevice:
    return DetectedDevice(
        index=UNKNOWN_INDEX,
        uuid=bus_id,
        reported_name="unknown",
        model_key=None,
        memory_mib=None,
        healthy=False,
        health_detail=f"fault: nvidia-smi has no handle for GPU {bus_id}: {reason.strip() or 'unknown'}",
        vendor=VENDOR,
        tool=TOOL,
    )


def detect_with_nvml(catalog: Catalog | None = None) -> list[DetectedDevice] | None:
    """Devices through NVML (the ``pynvml`` module), or None when it is not installed or not usable.

    The dependency is optional on purpose: nvidia-smi ships with every driver, pynvml does not.
    """
    try:
        pynvml: Any = importlib.import_module("pynvml")
        pynvml.nvmlInit()
    except Exception:  # no module, no driver, no library: fall back to nvidia-smi
        return None
    catalog = catalog or default_catalog()
    try:
        return [_nvml_device(pynvml, index, catalog) for index in range(pynvml.nvmlDeviceGetCount())]
    finally:
        pynvml.nvmlShutdown()


def _nvml_device(pynvml: Any, index: int, catalog: Catalog) -> DetectedDevice:
    try:
        handle = pynvml.nvmlDeviceGetHandleByIndex(index)
        name = _text(pynvml.nvmlDeviceGetName(handle))
        memory = pynvml.nvmlDeviceGetMemoryInfo(handle)
        temperature_c = float(pynvml.nvmlDeviceGetTemperature(handle, pynvml.NVML_TEMPERATURE_GPU))
        uuid = _text(pynvml.nvmlDeviceGetUUID(handle))
    except Exception as error:  # an NVMLError on one device must not hide the others
        return DetectedDevice(index, f"nvml-index-{index}", "unknown", None, None, False,
                              f"fault: NVML error {error}", VENDOR, "nvml")  # fmt: skip
    healthy, detail = temperature_health(temperature_c)
    return DetectedDevice(
        index=index,
        uuid=uuid,
        reported_name=name,
        model_key=resolve_model_key(catalog, name),
        memory_mib=memory.total // (1024 * 1024),
        memory_used_mib=memory.used // (1024 * 1024),
        temperature_c=temperature_c,
        healthy=healthy,
        health_detail=detail,
        vendor=VENDOR,
        tool="nvml",
    )


def _text(value: str | bytes) -> str:
    """Older pynvml returns bytes, newer returns str."""
    return value.decode() if isinstance(value, bytes) else value
