"""The AcceleratorModel value type: one catalog entry, frozen and hashable.

Figures are Decimals (never floats) so that capacity sums and prices derived from them are exact.
A figure is ``None`` when its source says it is not published, not supported, or anonymised.

Every figure carries a confidence, taken from the strongest source that vouches for it:
``vendor`` (datasheet, product page, vendor paper) > ``secondary`` (press or reputable report of
vendor figures) > ``community`` (public tool output, community repository quoting the vendor) >
``derived`` (computed from other figures; the source's ``formula`` says how).
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from typing import Literal, cast, get_args

Precision = Literal["bf16", "fp16", "fp8", "int8"]
PRECISIONS: tuple[Precision, ...] = get_args(Precision)

# "observed" is a public tool output (nvidia-smi, npu-smi, cnmon …); it counts as community evidence.
SourceKind = Literal["vendor", "secondary", "community", "observed", "derived", "none"]
SOURCE_KINDS: tuple[SourceKind, ...] = get_args(SourceKind)

Confidence = Literal["vendor", "secondary", "community", "derived"]
# Strongest first: a figure's confidence is the first of these among the sources that name it.
CONFIDENCES: tuple[Confidence, ...] = get_args(Confidence)
CONFIDENCE_OF_KIND: dict[SourceKind, Confidence | None] = {
    "vendor": "vendor",
    "secondary": "secondary",
    "community": "community",
    "observed": "community",
    "derived": "derived",
    "none": None,
}

# The figure fields every model must name in a source (a null one with kind "none").
REQUIRED_FIGURE_FIELDS: tuple[str, ...] = (
    "memory_gib",
    *(f"tflops_dense.{precision}" for precision in PRECISIONS),
    "interconnect_bandwidth_gb_s",
)
# Usable memory is optional: absent means "no tool output recorded" (see per_device_memory_mib).
OPTIONAL_FIGURE_FIELDS: tuple[str, ...] = ("usable_memory_mib",)
# The figure fields a source entry may name; "tflops_dense" alone stands for all four precisions.
FIGURE_FIELDS: tuple[str, ...] = (*REQUIRED_FIGURE_FIELDS, *OPTIONAL_FIGURE_FIELDS)
MIB_PER_GIB = 1024


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
    """Where figures come from. ``fields`` lists the figure fields this entry vouches for.

    A ``derived`` source names the figures it computes and says how in ``formula``
    (e.g. ``"= tflops_dense.fp16 (Ada runs BF16 at the FP16 rate)"``).
    """

    kind: SourceKind
    fields: tuple[str, ...]
    note: str
    title: str | None = None
    url: str | None = None
    ref: str | None = None
    formula: str | None = None

    @property
    def confidence(self) -> Confidence | None:
        """How far this source can be trusted; ``None`` for a ``none`` source (no figure)."""
        return CONFIDENCE_OF_KIND[self.kind]


@dataclass(frozen=True)
class AcceleratorModel:
    """One accelerator model of the catalog.

    ``devices_per_unit`` is how many devices the SMI tool and container runtime show for one catalog
    unit (an Ascend 910C package shows 2 dies). Memory and throughput are per unit; the ``per_device_*``
    helpers divide by it, because schedulers and node agents count devices.

    ``memory_gib`` is the nominal (marketed) capacity per unit; ``usable_memory_mib`` is what the
    device's SMI tool reports per device (an MLU370-X4 with 24 GB nominal shows 23,308 MiB), which is
    what a job can actually allocate. It is ``None`` when no public tool output was recorded.
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
    usable_memory_mib: int | None = None

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

    def per_device_memory_mib(self) -> int | None:
        """Memory a job can use on one device, in MiB, when no device report is at hand.

        ``usable_memory_mib`` when a tool output was recorded, else the nominal figure
        ``floor(memory_gib × 1024 / devices_per_unit)`` (an upper bound: tools report less), else None.
        Placement prefers what the node agent reports; this is only the fallback.
        """
        if self.usable_memory_mib is not None:
            return self.usable_memory_mib
        nominal = self.per_device_memory_gib()
        return None if nominal is None else int(nominal * MIB_PER_GIB)

    def confidence(self, field_name: str) -> Confidence | None:
        """The confidence of one figure (``"memory_gib"``, ``"tflops_dense.bf16"`` …).

        The strongest kind among the sources naming the field; ``None`` when the figure is null.
        """
        if field_name not in FIGURE_FIELDS:
            raise ValueError(f"unknown figure field {field_name!r}; expected one of {', '.join(FIGURE_FIELDS)}")
        if _figure(self, field_name) is None:
            return None
        vouching = {s.confidence for s in self.sources if field_name in s.fields}
        return next((level for level in CONFIDENCES if level in vouching), None)


def _figure(model: AcceleratorModel, field_name: str) -> Decimal | int | None:
    """The value of a dotted figure field of ``model``."""
    if field_name.startswith("tflops_dense."):
        return model.tflops_dense.at(cast(Precision, field_name.removeprefix("tflops_dense.")))
    value: Decimal | int | None = getattr(model, field_name)
    return value
