"""Where the idle GPU capacity is at the end of a replay, by what could still use it.

The FGD protocol places every pod that fits when it arrives and never removes one, so by column 130 the
fleet is saturated and what stays idle is leftovers. Each device's leftover ``L`` (milli) is classed by
what could still use it::

    small    0 < L < 200      only the 160/140/110/50-milli shares fit (1.3 % of default's tasks), or nothing
    partial  200 ≤ L < 1000   a common share fits (220, 230, 320, 470, … milli)
    whole    L = 1000        a whole free device

``small`` leftovers are what shares leave beside each other — chiefly the 190 milli beside each
810-milli share, the most frequent openb shape, and the remainders of good pairings (470 + 470,
650 + 320, 3 × 320). ``partial`` and ``whole`` idle is capacity a common pod could still have used (if
its node had the CPU left — a different policy could have kept it): the headroom a better online policy
could recover at most while the small leftovers stay as they are. The split and the count of 810-milli
shares placed are compared across policies in BENCHMARKS.md (Placement §14).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class IdleClasses:
    """Idle device milli at the end of a replay, as % of the fleet's GPU capacity."""

    small: float
    partial: float
    whole: float

    @property
    def headroom(self) -> float:
        return self.partial + self.whole


SMALL_BELOW = 200  # milli; openb share sizes below it: 160, 140, 110, 50


def idle_classes(
    gpu_left: np.ndarray, present: np.ndarray, total_gpus: int, small_below: int = SMALL_BELOW
) -> IdleClasses:
    """Split the idle milli of present devices into small / partial / whole (module docstring)."""
    left = np.where(present, gpu_left, 0)
    capacity = 1000.0 * total_gpus

    def share(mask: np.ndarray) -> float:
        return float(100.0 * left[mask].sum() / capacity)

    return IdleClasses(
        small=share((left > 0) & (left < small_below)),
        partial=share((left >= small_below) & (left < 1000)),
        whole=share(left == 1000),
    )
