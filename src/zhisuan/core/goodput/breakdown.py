"""A job's wall time, split by what it was spent on, and its effective-training-time ratio.

Following Kokolis et al., "Revisiting Reliability in Large-Scale ML Research Clusters" (HPCA 2025):

    wall = queueing + productive + checkpoint + lost + restart
    ETTR = productive / (wall − queueing)

- queueing: waiting for capacity (first admission and every re-queue's wait for capacity);
- productive: compute whose result was kept (steps up to the last complete checkpoint, or to the end);
- checkpoint: time spent writing checkpoints (the part that blocks training);
- lost: compute since the last complete checkpoint when a fault struck — recomputed after restart;
- restart: detection, rescheduling, start-up and checkpoint loading after a fault.

All in seconds (floats: these are measurements and model outputs, not money).
"""

from __future__ import annotations

from dataclasses import dataclass, fields


@dataclass(frozen=True)
class TimeBreakdown:
    queueing: float = 0.0
    productive: float = 0.0
    checkpoint: float = 0.0
    lost: float = 0.0
    restart: float = 0.0

    def __post_init__(self) -> None:
        for f in fields(self):
            if getattr(self, f.name) < 0:
                raise ValueError(f"{f.name} must not be negative (got {getattr(self, f.name)})")

    @property
    def wall(self) -> float:
        return self.queueing + self.productive + self.checkpoint + self.lost + self.restart

    @property
    def ettr(self) -> float | None:
        """productive / (wall − queueing); None while nothing has run (the ratio is undefined)."""
        # the running parts summed, not wall − queueing, which rounds a small running time to 0
        running = self.productive + self.checkpoint + self.lost + self.restart
        return self.productive / running if running > 0 else None

    def __add__(self, other: TimeBreakdown) -> TimeBreakdown:
        """Sum of two breakdowns (e.g. a tenant's jobs): the ETTR of the sum is time-weighted."""
        return TimeBreakdown(*(getattr(self, f.name) + getattr(other, f.name) for f in fields(self)))

    def as_dict(self) -> dict[str, float | None]:
        out: dict[str, float | None] = {f.name: getattr(self, f.name) for f in fields(self)}
        out["wall"] = self.wall
        out["ettr"] = self.ettr
        return out
