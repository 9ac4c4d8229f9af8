"""Placement: a pure pipeline of filter and score plugins that puts work on nodes and devices.

Public API (used by the live platform and by ``zhisuan.sim``)::

    place(cluster, request, policy="zhisuan", seed=0) -> Placement | Rejection
"""

from zhisuan.core.placement.pipeline import place
from zhisuan.core.placement.policies import DEFAULT_POLICY, POLICIES
from zhisuan.core.placement.snapshot import (
    ClusterSnapshot,
    DeviceSnapshot,
    NodeSnapshot,
    Placement,
    PlacementRequest,
    Rejection,
)

__all__ = [
    "DEFAULT_POLICY",
    "POLICIES",
    "ClusterSnapshot",
    "DeviceSnapshot",
    "NodeSnapshot",
    "Placement",
    "PlacementRequest",
    "Rejection",
    "place",
]
