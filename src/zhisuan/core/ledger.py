"""The allocation ledger's rule: what is held of a resource never exceeds the resource. Pure.

A *resource* is anything with a fixed capacity that holders take shares of over time: one device
(capacity 1000 milli), the CPU of one node (its cores × 1000 milli-cores) or its memory (MiB).
A *hold* takes ``amount`` of one resource over ``[start, end)`` (``end`` None: until released).

The rule, checked before every hold is written: at every instant of the new hold's window, the
holds already live on the resource plus the new one never exceed the capacity. Because the load
of a set of intervals only rises at an interval's start, checking the load at the new window's
start and at every existing start inside it is enough — the peak is at one of those instants.

A request holding several resources (the devices of a multi-device job) is all-or-nothing: every
shortfall is reported and nothing is held if there is any.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime

DEVICE_MILLI = 1000


@dataclass(frozen=True, slots=True)
class Hold:
    """``amount`` of ``resource`` held over ``[start, end)``; ``end`` None is open-ended."""

    resource: str
    amount: int
    start: datetime
    end: datetime | None = None

    def __post_init__(self) -> None:
        if self.amount < 0:
            raise ValueError(f"a hold of {self.resource} cannot be negative ({self.amount})")
        if self.end is not None and self.end < self.start:
            raise ValueError(f"a hold of {self.resource} ends before it starts")

    def live_at(self, instant: datetime) -> bool:
        return self.start <= instant and (self.end is None or instant < self.end)

    def overlaps(self, start: datetime, end: datetime | None) -> bool:
        if self.end is not None and self.end <= start:
            return False
        return end is None or self.start < end

    @property
    def empty(self) -> bool:
        return self.amount == 0 or self.end == self.start


@dataclass(frozen=True, slots=True)
class Shortfall:
    """A wanted hold that does not fit: only ``free`` of the resource is left in its window."""

    position: int
    resource: str
    wanted: int
    free: int


class OverAllocation(Exception):
    """A hold would take more of a resource than it has; ``shortfalls`` says where and how much."""

    def __init__(self, shortfalls: Sequence[Shortfall]) -> None:
        first = shortfalls[0]
        super().__init__(f"{first.resource} has only {first.free} free of the {first.wanted} wanted")
        self.shortfalls = tuple(shortfalls)


def peak_load(holds: Iterable[Hold], resource: str, start: datetime, end: datetime | None) -> int:
    """The largest total amount of ``resource`` held at any instant of ``[start, end)``."""
    relevant = [h for h in holds if h.resource == resource and not h.empty and h.overlaps(start, end)]
    instants = {start, *(h.start for h in relevant if h.start > start)}
    return max((sum(h.amount for h in relevant if h.live_at(t)) for t in instants), default=0)


def shortfalls(holds: Sequence[Hold], wanted: Sequence[Hold], capacity: Mapping[str, int]) -> list[Shortfall]:
    """Every wanted hold that would take its resource over capacity (with the others wanted too).

    The wanted holds count against each other: two wanted holds of one resource must fit together.
    A resource missing from ``capacity`` has none.
    """
    result = []
    for position, hold in enumerate(wanted):
        if hold.empty:  # holds nothing, so it always fits
            continue
        others = [*holds, *wanted[:position]]
        free = capacity.get(hold.resource, 0) - peak_load(others, hold.resource, hold.start, hold.end)
        if hold.amount > free:
            result.append(Shortfall(position, hold.resource, hold.amount, max(0, free)))
    return result


@dataclass(frozen=True)
class Ledger:
    """An immutable set of holds over resources of known capacity (the model the database keeps)."""

    capacity: Mapping[str, int]
    holds: tuple[Hold, ...] = field(default=())

    def hold(self, wanted: Sequence[Hold]) -> Ledger:
        """The ledger with every wanted hold added, or ``OverAllocation`` and nothing added."""
        missing = shortfalls(self.holds, wanted, self.capacity)
        if missing:
            raise OverAllocation(missing)
        return Ledger(self.capacity, (*self.holds, *wanted))

    def release(self, position: int, at: datetime) -> Ledger:
        """The ledger with hold ``position`` ended at ``at`` (never later than it already ends)."""
        hold = self.holds[position]
        end = at if hold.end is None else min(hold.end, at)
        ended = Hold(hold.resource, hold.amount, hold.start, max(hold.start, end))
        return Ledger(self.capacity, (*self.holds[:position], ended, *self.holds[position + 1:]))

    def load_at(self, resource: str, instant: datetime) -> int:
        return sum(h.amount for h in self.holds if h.resource == resource and h.live_at(instant))


def device_resource(device_id: int) -> str:
    return f"device:{device_id}"


def cpu_resource(node_id: int) -> str:
    return f"cpu:{node_id}"


def memory_resource(node_id: int) -> str:
    return f"memory:{node_id}"
