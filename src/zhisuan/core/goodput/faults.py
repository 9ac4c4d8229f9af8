"""The fault process a long training run sees: failure rates per component, and the Llama 3 defaults.

Source of the defaults: Dubey et al., "The Llama 3 Herd of Models" (Meta, arXiv:2407.21783, 2024),
§3.3.4 and Table 5. During a 54-day snapshot of Llama 3 405B pre-training on 16,384 H100 GPUs there
were 466 job interruptions: 47 planned (automated maintenance such as firmware upgrades, operator-
initiated configuration or dataset updates) and 419 unexpected, ~78% of them attributed to confirmed or
suspected hardware issues. Meta reports higher than 90% effective training time over that period.

Table 5's counts, as printed, add up to 422, not 419, and its "Faulty GPU" share (30.1%) does not match
148/419 (35.3%); every other share is count/419. We keep the printed counts as the *mix* of components
and scale them so that the total is the 419 unexpected interruptions the text reports:

    rate_i  [per GPU-hour] = (count_i / Σ count) · 419 / (16,384 GPUs · 54 · 24 h)

so the whole job's failure rate is Λ = G · Σ rate_i for G GPUs (independent failures, so rates add), and
its mean time between failures M = 1 / Λ — 3.09 h at Llama 3's scale.

Each component maps to how the platform sees the failure (``core.goodput.restart`` kinds) and what
becomes of the node: ``repair`` (out for the repair time), ``check`` (back after a health check),
``healthy`` (a program failure: the node is fine).
"""

from __future__ import annotations

from dataclasses import dataclass, field

LLAMA3_GPUS = 16_384
LLAMA3_DAYS = 54
LLAMA3_UNEXPECTED = 419
LLAMA3_PLANNED = 47
HOURS_PER_DAY = 24.0


@dataclass(frozen=True)
class Component:
    name: str  # flag-friendly key, e.g. ``faulty_gpu``
    label: str  # Table 5's wording
    category: str  # Table 5's category column
    count: int  # Table 5's interruption count, as printed
    printed_share: float  # Table 5's "% of interruptions", as printed
    kind: str  # how the platform sees it: a ``core.goodput.restart`` failure kind
    node_fate: str  # repair | check | healthy


LLAMA3_TABLE5: tuple[Component, ...] = (
    Component("faulty_gpu", "Faulty GPU", "GPU", 148, 30.1, "device_fault", "repair"),
    Component("gpu_hbm3", "GPU HBM3 Memory", "GPU", 72, 17.2, "device_fault", "repair"),
    Component("software_bug", "Software Bug", "Dependency", 54, 12.9, "exit_nonzero", "healthy"),
    Component("network_switch_cable", "Network Switch/Cable", "Network", 35, 8.4, "node_fault", "repair"),
    Component("host_maintenance", "Host Maintenance", "Unplanned Maintenance", 32, 7.6, "node_fault", "repair"),
    Component("gpu_sram", "GPU SRAM Memory", "GPU", 19, 4.5, "device_fault", "repair"),
    Component("gpu_system_processor", "GPU System Processor", "GPU", 17, 4.1, "device_fault", "repair"),
    Component("nic", "NIC", "Host", 7, 1.7, "node_fault", "repair"),
    Component("nccl_watchdog", "NCCL Watchdog Timeouts", "Unknown", 7, 1.7, "hang", "check"),
    Component("silent_data_corruption", "Silent Data Corruption", "GPU", 6, 1.4, "device_fault", "repair"),
    Component("gpu_thermal", "GPU Thermal Interface + Sensor", "GPU", 6, 1.4, "device_fault", "repair"),
    Component("ssd", "SSD", "Host", 3, 0.7, "node_fault", "repair"),
    Component("power_supply", "Power Supply", "Host", 3, 0.7, "node_fault", "repair"),
    Component("server_chassis", "Server Chassis", "Host", 2, 0.5, "node_fault", "repair"),
    Component("io_network", "IO Network", "Network", 2, 0.5, "node_fault", "repair"),
    Component("dependency", "Dependency", "Dependency", 2, 0.5, "exit_nonzero", "healthy"),
    Component("other", "Other", "Unknown", 7, 1.7, "node_fault", "check"),
)
COMPONENTS = {c.name: c for c in LLAMA3_TABLE5}
NODE_FATES = ("repair", "check", "healthy")


def llama3_rates_per_million_gpu_hours() -> dict[str, float]:
    """Each component's failure rate in failures per 10⁶ GPU-hours (19.7 in total), from Table 5."""
    printed_total = sum(c.count for c in LLAMA3_TABLE5)
    gpu_hours = LLAMA3_GPUS * LLAMA3_DAYS * HOURS_PER_DAY
    return {c.name: 1e6 * c.count / printed_total * LLAMA3_UNEXPECTED / gpu_hours for c in LLAMA3_TABLE5}


def llama3_planned_per_day() -> float:
    """Planned interruptions of the whole job per day (47 in 54 days)."""
    return LLAMA3_PLANNED / LLAMA3_DAYS


@dataclass(frozen=True)
class FaultModel:
    """Independent Poisson failures per component at ``rates`` (per 10⁶ GPU-hours, per GPU) and planned
    interruptions of the whole job at ``planned_per_day``."""

    rates: dict[str, float] = field(default_factory=llama3_rates_per_million_gpu_hours)
    planned_per_day: float = field(default_factory=llama3_planned_per_day)

    def __post_init__(self) -> None:
        for name, rate in self.rates.items():
            if name not in COMPONENTS:
                raise ValueError(f"rate: unknown component {name!r} (known: {', '.join(COMPONENTS)})")
            if not rate >= 0:  # also refuses NaN
                raise ValueError(f"rate: {name} must be ≥ 0 (got {rate})")
        if not self.planned_per_day >= 0:
            raise ValueError(f"planned_per_day must be ≥ 0 (got {self.planned_per_day})")

    def job_rate_per_s(self, gpus: int) -> float:
        """Λ: unexpected failures of a job on ``gpus`` GPUs per second."""
        return gpus * sum(self.rates.values()) / 1e6 / 3600.0

    def job_mtbf_s(self, gpus: int) -> float:
        """M = 1/Λ in seconds (infinite when nothing ever fails)."""
        rate = self.job_rate_per_s(gpus)
        return 1.0 / rate if rate > 0 else float("inf")

    def mix(self) -> tuple[tuple[Component, ...], tuple[float, ...]]:
        """The components that can fail and the probability that a given failure is each of them."""
        total = sum(self.rates.values())
        live = tuple(COMPONENTS[name] for name, rate in self.rates.items() if rate > 0)
        return live, tuple(self.rates[c.name] / total for c in live) if total > 0 else ()

    def scaled(self, factor: float) -> FaultModel:
        """The same mix with every rate multiplied by ``factor`` (planned interruptions unchanged)."""
        return FaultModel({name: rate * factor for name, rate in self.rates.items()}, self.planned_per_day)
