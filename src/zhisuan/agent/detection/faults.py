"""Device faults beyond what detection sees: NVIDIA XID events, ECC and NVLink state, Ascend alarms.

``FaultProbe`` runs once per heartbeat after detection and marks devices unhealthy with the reason;
the control plane cordons the device, or its node for a node-scoped fault (``inventory.cordon``,
``core.health.scope``). Parsing is pure (``core.health``); here
only the tools are run (through the same ``CommandRunner`` as detection, so tests use recordings)
and the kernel log is followed: only XID lines *new* since the last probe count (old ones stay in
the log after the GPU was repaired), read from ``kernel_log`` (a file the test or a log shipper
appends to; production: ``/dev/kmsg`` readable by the agent, or journald's kernel file).

Mapping: nvidia-smi lists GPUs in index order (PCI order), so ECC and NVLink sections map to indexes
by position/number; XID lines name a PCI bus id, mapped with ``--query-gpu=index,pci.bus_id``.
``npu-smi -i`` takes the NPU id, equal to the logical index on one-chip-per-NPU boards (the common
case); a multi-chip board's alarm is reported on that index.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

from zhisuan.agent.detection.device import DetectedDevice
from zhisuan.agent.detection.runners import CommandRunner, SubprocessRunner
from zhisuan.core.health.ascend import parse_npu_health
from zhisuan.core.health.nvidia import parse_ecc, parse_nvlink_status, parse_xid_lines, short_bus_id

TIMEOUT_S = 10.0


class FaultProbe:
    def __init__(self, runner: CommandRunner | None = None, kernel_log: Path | None = None) -> None:
        self.runner = runner or SubprocessRunner()
        self.kernel_log = kernel_log
        self.log_offset: int | None = None  # bytes of the kernel log already read
        self.xid_faults: dict[str, str] = {}  # short bus id -> fault, sticky until the agent restarts

    def __call__(self, devices: list[DetectedDevice]) -> list[DetectedDevice]:
        faults: dict[int, list[str]] = {}
        if any(d.vendor == "nvidia" for d in devices):
            self.nvidia_faults(faults)
        if any(d.vendor == "huawei" for d in devices):
            self.ascend_faults([d.index for d in devices if d.vendor == "huawei"], faults)
        return [dataclasses.replace(d, healthy=False, health_detail="; ".join(faults[d.index])[:255])
                if faults.get(d.index) else d for d in devices]

    def nvidia_faults(self, faults: dict[int, list[str]]) -> None:
        ecc = self.runner.run(["nvidia-smi", "-q", "-d", "ECC"], TIMEOUT_S)
        if ecc.ok:
            for index, report in enumerate(parse_ecc(ecc.stdout)):
                if report.fault:
                    faults.setdefault(index, []).append(report.fault)
        links = self.runner.run(["nvidia-smi", "nvlink", "-s"], TIMEOUT_S)
        if links.ok:
            for index, fault in parse_nvlink_status(links.stdout).items():
                if fault:
                    faults.setdefault(index, []).append(fault)
        self.follow_kernel_log()
        if self.xid_faults:
            buses = self.runner.run(["nvidia-smi", "--query-gpu=index,pci.bus_id", "--format=csv,noheader"],
                                    TIMEOUT_S)
            by_bus = {short_bus_id(bus.strip()): int(index) for index, bus in
                      (line.split(",", 1) for line in buses.stdout.splitlines() if "," in line)
                      if index.strip().isdigit()} if buses.ok else {}
            for bus, fault in self.xid_faults.items():
                if bus in by_bus:
                    faults.setdefault(by_bus[bus], []).append(fault)

    def follow_kernel_log(self) -> None:
        if self.kernel_log is None:
            return
        try:
            with open(self.kernel_log, "rb") as log:
                size = log.seek(0, 2)
                start = size if self.log_offset is None else min(self.log_offset, size)
                log.seek(start)
                data = log.read(size - start)
        except OSError:
            return
        complete = data[: data.rfind(b"\n") + 1]
        self.log_offset = start + len(complete)
        for xid in parse_xid_lines(complete.decode(errors="replace").splitlines()):
            if xid.fault:
                self.xid_faults[short_bus_id(xid.bus_id)] = f"XID {xid.code} ({xid.text or 'no detail'})"

    def ascend_faults(self, indexes: list[int], faults: dict[int, list[str]]) -> None:
        for index in indexes:
            result = self.runner.run(["npu-smi", "info", "-t", "health", "-i", str(index)], TIMEOUT_S)
            if not result.ok:
                continue
            try:
                chips = parse_npu_health(result.stdout)
            except ValueError:
                continue
            for chip in chips:
                if chip.fault:
                    faults.setdefault(index, []).append(chip.fault)
