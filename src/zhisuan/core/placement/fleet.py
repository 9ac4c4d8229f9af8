"""The array form of a fleet and of a request, shared by ``place()`` and the trace replay.

``FleetArrays`` holds one row per node and one column per device slot (padded to the widest node).
Absent slots have ``gpu_left = 0`` and ``device_model = -1`` so they never fit a GPU request.
Strings (models, stacks, tenants) are interned as small integer codes.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

from zhisuan.core.placement.snapshot import ClusterSnapshot, PlacementRequest

NO_CODE = -1  # absent device / shared node
UNKNOWN_CODE = -2  # a name the fleet has never heard of: matches nothing


@dataclass
class FleetArrays:
    """Mutable numpy state of N nodes with up to G device slots each (mutated only by ``commit``)."""

    names: tuple[str, ...]
    sites: tuple[str, ...]
    cpu_free: np.ndarray  # int64[N] milli-CPU left
    mem_free: np.ndarray  # int64[N] MiB left
    gpu_left: np.ndarray  # int64[N,G] free milli per device slot (0 for absent slots)
    device_index: np.ndarray  # int64[N,G] the device's own index (-1 absent)
    device_model: np.ndarray  # int32[N,G] model code (-1 absent)
    device_memory: np.ndarray  # int64[N,G] MiB
    device_tflops: np.ndarray  # float64[N,G]
    device_stack: np.ndarray  # int32[N,G] stack code
    device_healthy: np.ndarray  # bool[N,G] (False for absent slots)
    node_healthy: np.ndarray  # bool[N]
    node_tenant: np.ndarray  # int32[N] exclusive tenant code or -1
    affinity: np.ndarray  # int64[N] bit set of workload classes placed on the node (GpuClustering)
    models: tuple[str, ...]
    stacks: tuple[str, ...] = ()
    tenants: tuple[str, ...] = ()
    labels: tuple[Mapping[str, str], ...] = ()
    node_model: np.ndarray = field(init=False)  # int32[N] model of the first device (type access)
    device_count: np.ndarray = field(init=False)  # int64[N]

    def __post_init__(self) -> None:
        first = self.device_model[:, 0] if self.device_model.shape[1] else np.full(len(self.names), NO_CODE)
        self.node_model = first.astype(np.int32)
        self.device_count = (self.device_model >= 0).sum(axis=1).astype(np.int64)

    @property
    def size(self) -> int:
        return len(self.names)

    def total_gpu_milli(self) -> int:
        return int(self.device_count.sum()) * 1000


@dataclass(frozen=True)
class Demand:
    """A request in fleet codes. ``key`` fields fully determine feasibility and score on a node state."""

    cpu: int
    mem: int
    milli: int  # per device, 0 for CPU-only
    count: int  # devices, 0 for CPU-only
    allowed: frozenset[int] | None = None  # model codes; None = any
    min_device_memory: int = 0
    min_device_tflops: float = 0.0
    stack: int | None = None
    tenant: int = NO_CODE
    selector: tuple[tuple[str, str], ...] = ()
    may_use_leased: bool = False  # borrowing work passes the exclusive-lease filter
    avoid: frozenset[int] = frozenset()  # node rows this job failed on before (filters.not_avoided)

    @property
    def wants_devices(self) -> bool:
        return self.count > 0 and self.milli > 0

    @property
    def is_share(self) -> bool:
        """One device, less than all of it (the FGD paper's 'GPU-share' task)."""
        return self.count == 1 and 0 < self.milli < 1000

    @property
    def affinity_bit(self) -> int:
        """GpuClustering class: 0 = no GPU, bit 0 = share-gpu, bit k = '<k>-gpu'."""
        if not self.wants_devices:
            return 0
        return 1 if self.is_share else 1 << min(self.count, 62)

    def without_memory(self) -> Demand:
        return Demand(
            self.cpu,
            0,
            self.milli,
            self.count,
            self.allowed,
            self.min_device_memory,
            self.min_device_tflops,
            self.stack,
            self.tenant,
            self.selector,
            self.may_use_leased,
            self.avoid,
        )


def _code(table: Sequence[str], name: str | None) -> int:
    if name is None:
        return NO_CODE
    return table.index(name) if name in table else UNKNOWN_CODE


def demand_from_request(fleet: FleetArrays, req: PlacementRequest) -> Demand:
    """Translate names to the fleet's codes; unknown names become codes that match nothing."""
    count = req.device_count
    allowed = None
    if req.allowed_models is not None:
        allowed = frozenset(fleet.models.index(m) for m in req.allowed_models if m in fleet.models)
    return Demand(
        cpu=req.cpu_milli,
        mem=req.memory_mib,
        milli=req.milli_per_device if count else 0,
        count=count,
        allowed=allowed,
        min_device_memory=req.min_device_memory_mib,
        min_device_tflops=req.min_device_tflops,
        stack=None if req.stack is None else _code(fleet.stacks, req.stack),
        tenant=UNKNOWN_CODE
        if req.tenant is not None and req.tenant not in fleet.tenants
        else _code(fleet.tenants, req.tenant),
        selector=tuple(sorted((req.node_selector or {}).items())),
        may_use_leased=req.may_use_leased,
        avoid=frozenset(row for row, name in enumerate(fleet.names) if name in req.avoid_nodes)
        if req.avoid_nodes
        else frozenset(),
    )


def fleet_from_snapshot(cluster: ClusterSnapshot) -> FleetArrays:
    """Build arrays from frozen snapshots (O(devices)); the snapshot itself is never modified."""
    nodes = cluster.nodes
    width = max((len(n.devices) for n in nodes), default=0)
    models = tuple(sorted({d.model for n in nodes for d in n.devices}))
    stacks = tuple(sorted({d.stack for n in nodes for d in n.devices}))
    tenants = tuple(sorted({n.exclusive_tenant for n in nodes if n.exclusive_tenant is not None}))
    shape = (len(nodes), width)
    left, index = np.zeros(shape, np.int64), np.full(shape, -1, np.int64)
    model, stack = np.full(shape, NO_CODE, np.int32), np.full(shape, NO_CODE, np.int32)
    memory, tflops, healthy = np.zeros(shape, np.int64), np.zeros(shape), np.zeros(shape, bool)
    for row, node in enumerate(nodes):
        for col, dev in enumerate(sorted(node.devices, key=lambda d: d.index)):
            left[row, col], index[row, col] = dev.free_milli, dev.index
            model[row, col], stack[row, col] = models.index(dev.model), stacks.index(dev.stack)
            memory[row, col], tflops[row, col], healthy[row, col] = (
                dev.memory_mib,
                dev.tflops_bf16,
                dev.healthy,
            )
    return FleetArrays(
        names=tuple(n.name for n in nodes),
        sites=tuple(n.site for n in nodes),
        cpu_free=np.array([n.cpu_milli_free for n in nodes], np.int64).reshape(-1),
        mem_free=np.array([n.memory_mib_free for n in nodes], np.int64).reshape(-1),
        gpu_left=left,
        device_index=index,
        device_model=model,
        device_memory=memory,
        device_tflops=tflops,
        device_stack=stack,
        device_healthy=healthy,
        node_healthy=np.array([n.healthy for n in nodes], bool).reshape(-1),
        node_tenant=np.array([_code(tenants, n.exclusive_tenant) for n in nodes], np.int32).reshape(-1),
        affinity=np.zeros(len(nodes), np.int64),
        models=models,
        stacks=stacks,
        tenants=tenants,
        labels=tuple(n.labels for n in nodes),
    )


def commit(fleet: FleetArrays, node: int, slots: np.ndarray, demand: Demand) -> None:
    """Apply a decision to the arrays in place: CPU, memory, device share and the node's workload classes."""
    fleet.cpu_free[node] -= demand.cpu
    fleet.mem_free[node] -= demand.mem
    if demand.wants_devices:
        fleet.gpu_left[node, slots] -= demand.milli
    fleet.affinity[node] |= demand.affinity_bit
