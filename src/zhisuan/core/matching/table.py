"""Every feasible pairing of a round as flat numpy columns: what the price search and the fast sweeps use.

For pairing c = (r, o) in ``MarketPairings`` order (by request, then widest margin cap × f − floor):

- ``start``/``end``: the lease [s_c, s_c + h_r), s_c the earliest common start (candidates.py);
- ``need``: devices a gang takes on o (ceil(amount / f)), 0 for a divisible request;
- ``most``: the most devices a divisible request may take on o, min(devices_o, floor(upper_r / f)); for a
  gang its ``need``;
- ``value``: objective per device over the lease, W_c = (cap_r × f − floor_o) × h_r ("surplus") or
  f × h_r ("pflops_hours"), as floats (the bound adds a safety margin; matches are valued exactly).

Capacity *points*: for each offer, the distinct lease starts of its pairings. Usage only rises at a
start, so "usage <= devices at every hour" holds iff it holds at every point; ``point_of_start`` and
``point_after_end`` index the points so the points a lease covers are the range [first, after).
"""

from dataclasses import dataclass

import numpy as np

from zhisuan.core.matching.candidates import MarketPairings, pair_terms


@dataclass(frozen=True)
class PairTable:
    request: np.ndarray  # request position per pairing
    offer: np.ndarray  # offer index per pairing
    start: np.ndarray
    end: np.ndarray
    factor: np.ndarray  # float f
    gang: np.ndarray  # bool
    need: np.ndarray  # float: gang devices (0 for divisible)
    most: np.ndarray  # float: most devices on this offer
    value: np.ndarray  # W_c per device over the lease
    upper: np.ndarray  # per request: upper fill bound (H100-equivalents; devices when not normalised)
    point_of_start: np.ndarray
    point_after_end: np.ndarray
    point_capacity: np.ndarray  # devices of the point's offer
    num_requests: int

    @property
    def num_points(self) -> int:
        return len(self.point_capacity)

    def subset(self, pairs: np.ndarray) -> "PairTable":
        """The same round restricted to ``pairs`` (sorted pairing indices; requests and points kept)."""
        return PairTable(self.request[pairs], self.offer[pairs], self.start[pairs], self.end[pairs],
                         self.factor[pairs], self.gang[pairs], self.need[pairs], self.most[pairs], self.value[pairs],
                         self.upper, self.point_of_start[pairs], self.point_after_end[pairs], self.point_capacity,
                         self.num_requests)


def pair_table(pairings: MarketPairings, objective: str) -> PairTable:
    offers, requests = pairings.offers, pairings.requests
    position, offer = pairings.position, pairings.offer_index
    factor, need, most = _terms(pairings)
    earliest = np.array([r.earliest_start for r in requests], dtype=np.int64)
    hours = np.array([r.duration_h for r in requests], dtype=np.int64)
    offer_start = np.array([o.start for o in offers], dtype=np.int64)
    devices = np.array([o.devices for o in offers], dtype=np.int64)
    start = np.maximum(earliest[position], offer_start[offer]) if len(position) else np.zeros(0, np.int64)
    end = start + hours[position]
    gang = np.array([r.gang for r in requests], dtype=bool)[position]
    most = np.where(gang, need, np.minimum(most, devices[offer]))
    per_device_hour = -pairings.margin.astype(np.float64) if objective == "surplus" else factor
    horizon = int(max((o.end for o in offers), default=0)) + 1
    points, point_of_start, point_after_end = _points(offer * horizon + start, offer * horizon + end)
    return PairTable(
        position, offer, start, end, factor, gang, np.where(gang, need, 0.0), most.astype(np.float64),
        per_device_hour * hours[position], np.array([float(u) for u in pairings.uppers]),
        point_of_start, point_after_end,
        devices[points // horizon].astype(np.float64) if len(points) else np.zeros(0), len(requests))


def _points(start_keys: np.ndarray, end_keys: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Distinct start keys (offer × horizon + hour), each start's point and the first point at or after
    each end (sorting both sides: searchsorted with sorted queries, no hashing)."""
    by_start = np.argsort(start_keys, kind="stable")
    ordered = start_keys[by_start]
    new = np.r_[True, ordered[1:] != ordered[:-1]] if len(ordered) else np.zeros(0, dtype=bool)
    point_of_start = np.empty(len(start_keys), dtype=np.int64)
    point_of_start[by_start] = np.cumsum(new) - 1
    points = ordered[new]
    by_end = np.argsort(end_keys, kind="stable")
    point_after_end = np.empty(len(end_keys), dtype=np.int64)
    point_after_end[by_end] = np.searchsorted(points, end_keys[by_end])
    return points, point_of_start, point_after_end


def _terms(pairings: MarketPairings) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Factor, gang need and the fill-bound limit per pairing, computed exactly once per (request, model)."""
    names, requests = pairings.names, pairings.requests
    shape = (len(names), len(requests))
    factor, need, most = np.zeros(shape), np.zeros(shape), np.zeros(shape)
    code = {name: k for k, name in enumerate(names)}
    for p, (request, upper) in enumerate(zip(requests, pairings.uppers, strict=True)):
        for name, f in request.models.items():
            if name in code:
                terms = pair_terms(request, f, upper)
                factor[code[name], p], most[code[name], p] = float(f), terms.most
                need[code[name], p] = terms.most if request.gang else 0
    return factor[pairings.models, pairings.position], need[pairings.models, pairings.position], \
        most[pairings.models, pairings.position]
