"""Device choice on the chosen node (the scheduler's Reserve step).

* ``best``: a share takes the device with the smallest ``left ≥ m`` (lowest index on ties); whole
  devices take the lowest-index fully free devices; a multi-device share packs in ascending ``left``.
* ``random``: a share takes a uniformly random device with ``left ≥ m``; otherwise as ``best``.
* ``scored``: a share takes the device the score plugin chose (FGD: highest integer score).
"""

from __future__ import annotations

import numpy as np

from zhisuan.core.placement.fleet import Demand, FleetArrays
from zhisuan.core.placement.fragmentation import packed_take
from zhisuan.core.placement.node_view import NodeView

MILLI = 1000


def default_slots(left: np.ndarray, demand: Demand) -> np.ndarray:
    """Slots for non-share demands given usable ``left[G]``: whole devices by lowest index, else packing."""
    if demand.milli == MILLI:
        return np.flatnonzero(left == MILLI)[: demand.count]
    return np.flatnonzero(packed_take(left[None], (left > 0)[None], demand.milli, demand.count)[0])


def best_share_slot(left: np.ndarray, milli: int) -> int:
    """Smallest ``left ≥ milli``, lowest index first."""
    key = np.where(left >= milli, left, 1 << 40)
    return int(key.argmin())


def choose_slots(
    fleet: FleetArrays,
    demand: Demand,
    node: int,
    method: str,
    scored_slot: int,
    rng: np.random.Generator | None,
) -> np.ndarray:
    """int64[count]: the device slots of ``node`` that receive the demand (empty for CPU-only demands)."""
    if not demand.wants_devices:
        return np.zeros(0, np.int64)
    if demand.is_share and method == "scored" and scored_slot >= 0:
        return np.array([scored_slot], np.int64)
    left = NodeView(fleet, demand, np.array([node])).usable_left[0]
    if not demand.is_share:
        return default_slots(left, demand)
    if method == "random" and rng is not None:
        fitting = np.flatnonzero(left >= demand.milli)
        return np.array([fitting[rng.integers(len(fitting))]], np.int64)
    return np.array([best_share_slot(left, demand.milli)], np.int64)
