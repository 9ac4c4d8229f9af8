"""Frozen inputs and outputs of placement: what the fleet looks like, what is asked, what was decided.

These are the only types the live platform needs. They carry no behaviour beyond validation and
formatting; the pipeline (``pipeline.place``) turns them into arrays and decides.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

MILLI_PER_DEVICE = 1000


def _frozen_mapping(value: Mapping[str, str] | None) -> Mapping[str, str]:
    return MappingProxyType(dict(value or {}))


@dataclass(frozen=True)
class DeviceSnapshot:
    """One accelerator; ``free_milli`` of 1000 are free (free memory: ``memory_mib*free_milli/1000``)."""

    index: int
    model: str
    memory_mib: int
    free_milli: int
    healthy: bool = True
    tflops_bf16: float = 0.0
    stack: str = ""

    def __post_init__(self) -> None:
        if not 0 <= self.free_milli <= MILLI_PER_DEVICE:
            raise ValueError(f"device {self.index}: free_milli must be in 0..1000, got {self.free_milli}")
        if self.memory_mib < 0:
            raise ValueError(f"device {self.index}: memory_mib must be >= 0, got {self.memory_mib}")


@dataclass(frozen=True)
class NodeSnapshot:
    """A machine of a site: free CPU/memory and devices; ``exclusive_tenant`` leases it to one tenant."""

    name: str
    site: str
    cpu_milli_free: int
    memory_mib_free: int
    devices: tuple[DeviceSnapshot, ...] = ()
    labels: Mapping[str, str] = field(default_factory=dict)
    healthy: bool = True
    exclusive_tenant: str | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "labels", _frozen_mapping(self.labels))
        object.__setattr__(self, "devices", tuple(self.devices))
        indices = [d.index for d in self.devices]
        if len(set(indices)) != len(indices):
            raise ValueError(f"node {self.name}: duplicate device indices {indices}")


@dataclass(frozen=True)
class ClusterSnapshot:
    """All nodes the decision may use, in a stable order."""

    nodes: tuple[NodeSnapshot, ...]

    def __post_init__(self) -> None:
        object.__setattr__(self, "nodes", tuple(self.nodes))
        names = [n.name for n in self.nodes]
        if len(set(names)) != len(names):
            raise ValueError("cluster snapshot has duplicate node names")


@dataclass(frozen=True)
class PlacementRequest:
    """What one workload asks for.

    ``device_count`` devices with ``milli_per_device`` each (1000 = whole device; a share below 1000
    is only allowed with one device). Device constraints: ``allowed_models``, minimum device memory,
    minimum dense BF16 throughput and software stack. ``same_node`` must be True: a multi-node gang is
    split into per-node requests by the caller. ``may_use_leased`` lets the request use nodes leased
    exclusively to other tenants (only for work that borrows their idle guarantee and can be reclaimed).
    ``avoid_nodes`` (``site/name``) are filtered out ("the job failed on this node before").
    """

    cpu_milli: int
    memory_mib: int
    device_count: int
    milli_per_device: int = MILLI_PER_DEVICE
    allowed_models: frozenset[str] | None = None
    min_device_memory_mib: int = 0
    min_device_tflops: float = 0.0
    stack: str | None = None
    tenant: str | None = None
    same_node: bool = True
    node_selector: Mapping[str, str] | None = None
    may_use_leased: bool = False  # a borrowing job may run on nodes leased to other tenants
    avoid_nodes: frozenset[str] = frozenset()  # nodes this job failed on before: placed elsewhere if possible

    def __post_init__(self) -> None:
        object.__setattr__(self, "avoid_nodes", frozenset(self.avoid_nodes))
        if self.allowed_models is not None:
            object.__setattr__(self, "allowed_models", frozenset(self.allowed_models))
        if self.node_selector is not None:
            object.__setattr__(self, "node_selector", _frozen_mapping(self.node_selector))
        problems = request_problems(self)
        if problems:
            raise ValueError("invalid placement request: " + "; ".join(problems))


def request_problems(req: PlacementRequest) -> list[str]:
    """Human-readable reasons why a request is malformed (empty list if it is fine)."""
    problems = []
    if req.cpu_milli < 0 or req.memory_mib < 0:
        problems.append("cpu_milli and memory_mib must be >= 0")
    if req.device_count < 0:
        problems.append("device_count must be >= 0")
    if req.device_count > 0 and not 0 < req.milli_per_device <= MILLI_PER_DEVICE:
        problems.append("milli_per_device must be in 1..1000")
    if req.device_count > 1 and req.milli_per_device < MILLI_PER_DEVICE:
        problems.append("a fractional share is only possible on one device")
    if not req.same_node:
        problems.append("same_node=False is not supported by a single placement; split the gang per node")
    return problems


@dataclass(frozen=True)
class Placement:
    """The decision: this node, these device indices, this share of each."""

    node: str
    site: str
    device_indices: tuple[int, ...]
    milli_per_device: int
    score: float
    policy: str = ""
    feasible_nodes: int = 0


@dataclass(frozen=True)
class Rejection:
    """No node fits; ``reasons`` counts nodes per first failing filter, most frequent first."""

    reasons: tuple[tuple[str, int], ...]

    @property
    def message(self) -> str:
        if not self.reasons:
            return "no nodes in the cluster"
        return "; ".join(f"{count} node{'s' if count != 1 else ''}: {reason}" for reason, count in self.reasons)
