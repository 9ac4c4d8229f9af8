"""The AcceleratorModel value type: one catalog entry, frozen and hashable.

Figures are Decimals (never floats) so that capacity sums and prices derived from them are exact.
A figure is ``None`` when its source says it is not published, not supported, or anonymised.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from typing import Literal, get_args

Precision = Literal["bf16", "fp16", "fp8", "int8"]
PRECISIONS: tuple[Precision, ...] = get_args(Precision)

SourceKind = Literal["vendor", "secondary", "observed", "none"]
SOURCE_KINDS: tuple[SourceKind, ...] = get_args(SourceKind)

# The figure fields a source entry may name; "tflops_dense" alone stands for all four precisions.
FIGURE_FIELDS: tuple[str, ...] = (
    "memory_gib",
    *(f"tflops_dense.{precision}" for precision in PRECISIONS),
    "interconnect_bandwidth_gb_s",
)


@dataclass(frozen=True)
class Throughput:
    """Dense (no sparsity) peak throughput per catalog unit: TFLOPS, except ``int8`` in TOPS."""

    bf16: Decimal | None = None
    fp16: Decimal | None = None
    fp8: Decimal | None = None
    int8: Decimal | None = None

    def at(self, precision: Precision) -> Decimal | None:
        """The figure for ``precision`` (``None`` when not published or not supported)."""
        if precision not in PRECISIONS:
            raise ValueError(f"unknown precision {precision!r}; expected one of {', '.join(PRECISIONS)}")
        value: Decimal | None = getattr(self, precision)
        return value


@dataclass(frozen=True)
class Source:
    """Where figures come from. ``fields`` lists the figure fields this entry vouches for."""

    kind: SourceKind
    fields: tuple[str, ...]
    note: str
    title: str | None = None
    url: str | None = None
    ref: str | None = None


@dataclass(frozen=True)
class AcceleratorModel:
    """One accelerator model of the catalog.

    ``devices_per_unit`` is how many devices the SMI tool and container runtime show for one catalog
    unit (an Ascend 910C package shows 2 dies). Memory and throughput are per unit; the ``per_device_*``
    helpers divide by it, because schedulers and node agents count devices.
    """

    key: str
    vendor: str
    vendor_name: str
    name: str
    memory_gib: Decimal | None
    tflops_dense: Throughput
    interconnect: str | None
    interconnect_bandwidth_gb_s: Decimal | None
    stack: str | None
    k8s_resource: str | None
    visible_devices_env: str | None
    smi_tool: str | None
    aliases: tuple[str, ...] = ()
    sources: tuple[Source, ...] = ()
    devices_per_unit: int = 1
    anonymised: bool = False

    def per_device_tflops(self, precision: Precision) -> Decimal | None:
        """Dense throughput of one device: ``tflops_dense[precision] / devices_per_unit``."""
        unit_figure = self.tflops_dense.at(precision)
        if unit_figure is None:
            return None
        return unit_figure / self.devices_per_unit

    def per_device_memory_gib(self) -> Decimal | None:
        """Memory of one device: ``memory_gib / devices_per_unit``."""
        if self.memory_gib is None:
            return None
        return self.memory_gib / self.devices_per_unit
