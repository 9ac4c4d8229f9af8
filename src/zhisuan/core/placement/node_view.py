"""``NodeView``: a subset of a fleet's nodes seen by one demand, with per-call cached derived arrays.

Filter and score plugins read node state only through a view, so one evaluation computes each
derived array (device eligibility, usable free share, …) once, for exactly the nodes it looks at.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

import numpy as np

from zhisuan.core.placement.fleet import Demand, FleetArrays

T = TypeVar("T")


class cached_property(Generic[T]):  # noqa: N801 — used like functools.cached_property
    """``functools.cached_property`` without its per-access lock (Python 3.11 takes an RLock on every first
    access; a view is used by one thread, and a replay builds ~10⁴ views with a few properties each)."""

    def __init__(self, compute: Callable[[Any], T]) -> None:
        self.compute, self.name, self.__doc__ = compute, compute.__name__, compute.__doc__

    def __get__(self, view: Any, owner: type | None = None) -> T:
        if view is None:
            return self  # type: ignore[return-value]  # the class attribute itself (introspection)
        value = self.compute(view)
        view.__dict__[self.name] = value  # later reads find it in the instance dict, not here
        return value


@dataclass
class NodeView:
    fleet: FleetArrays
    demand: Demand
    idx: np.ndarray  # int64[K] node rows

    @cached_property
    def cpu(self) -> np.ndarray:
        """int64[K] milli-CPU left."""
        return self.fleet.cpu_free[self.idx]

    @cached_property
    def left(self) -> np.ndarray:
        """int64[K,G] free milli per device slot (absent slots 0)."""
        return self.fleet.gpu_left[self.idx]

    @cached_property
    def node_model(self) -> np.ndarray:
        return self.fleet.node_model[self.idx]

    @cached_property
    def model_ok(self) -> np.ndarray:
        """bool[K,G]: the slot holds a device of an allowed model (any present device if none named)."""
        model = self.fleet.device_model[self.idx]
        if self.demand.allowed is None:
            return model >= 0
        table = np.zeros(len(self.fleet.models) + 1, bool)  # last entry: code -1 (absent)
        table[list(self.demand.allowed)] = True
        return table[model]

    @cached_property
    def capable(self) -> np.ndarray:
        """bool[K,G]: device memory, throughput and stack meet the demand's minimums."""
        d, f = self.demand, self.fleet
        if not (d.min_device_memory or d.min_device_tflops or d.stack is not None):
            return np.ones(self.left.shape, bool)
        ok = (f.device_memory[self.idx] >= d.min_device_memory) & (f.device_tflops[self.idx] >= d.min_device_tflops)
        if d.stack is not None:
            ok &= f.device_stack[self.idx] == d.stack
        return ok

    @cached_property
    def eligible(self) -> np.ndarray:
        """bool[K,G]: healthy, allowed, capable devices; only these may receive the demand's share."""
        return self.fleet.device_healthy[self.idx] & self.model_ok & self.capable

    @cached_property
    def usable_left(self) -> np.ndarray:
        """int64[K,G]: free milli of eligible slots, 0 elsewhere."""
        return np.where(self.eligible, self.left, 0)

    def given(self, **arrays: np.ndarray) -> NodeView:
        """This view with derived arrays already known (e.g. a cache's static ``eligible``), which must equal
        what the properties would compute for ``idx``; the rest are computed on first use as usual."""
        for name, value in arrays.items():
            if name not in DERIVED:
                raise AttributeError(f"NodeView has no derived array {name!r}")
            self.__dict__[name] = value
        return self

    def subset(self, rows: np.ndarray) -> NodeView:
        """The view restricted to positions ``rows`` of this view (cached arrays are carried over)."""
        sub = NodeView(self.fleet, self.demand, self.idx[rows])
        for name in DERIVED:
            if name in self.__dict__:
                sub.__dict__[name] = self.__dict__[name][rows]
        return sub


DERIVED = ("cpu", "left", "node_model", "model_ok", "capable", "eligible", "usable_left")
