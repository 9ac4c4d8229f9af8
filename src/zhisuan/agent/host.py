"""What a node agent tells the control plane about its machine: host facts plus detected devices."""

from __future__ import annotations

import os
import socket
from pathlib import Path
from typing import Any

from zhisuan import __version__
from zhisuan.agent.detection import DetectedDevice, detect_accelerators


def memory_mib(meminfo: Path = Path("/proc/meminfo")) -> int:
    """Total memory from /proc/meminfo (``MemTotal: <kB> kB``), 0 where there is no such file."""
    try:
        for line in meminfo.read_text().splitlines():
            if line.startswith("MemTotal:"):
                return int(line.split()[1]) // 1024
    except OSError:
        pass
    return 0


def device_payload(device: DetectedDevice) -> dict[str, Any]:
    return {
        "index": device.index,
        "uuid": device.uuid,
        "model": device.model_key or device.reported_name,
        "reported_name": device.reported_name,
        "memory_mib": device.memory_mib,
        "healthy": device.healthy,
        "health_detail": device.health_detail,
    }


def registration(
    name: str | None = None, devices: list[DetectedDevice] | None = None, labels: dict[str, str] | None = None
) -> dict[str, Any]:
    """The body of ``POST /api/v1/agent/register`` for this machine."""
    detected = detect_accelerators() if devices is None else devices
    return {
        "name": name or socket.gethostname(),
        "cpu_cores": os.cpu_count() or 0,
        "memory_mib": memory_mib(),
        "labels": labels or {},
        "agent_version": __version__,
        "devices": [device_payload(device) for device in detected],
    }


def heartbeat(name: str, devices: list[DetectedDevice]) -> dict[str, Any]:
    return {
        "node": name,
        "devices": [
            {"index": d.index, "healthy": d.healthy, "health_detail": d.health_detail} for d in devices
        ],
    }
