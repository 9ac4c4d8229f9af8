"""The clearing round as a mixed-integer program (built as numpy arrays for HiGHS).

Columns, for the candidate pairs c = (r, o) of ``candidates.py`` (f = factor, h = r.duration_h):

- x_c ∈ {0..max_c} integer: devices of offer o leased to a divisible request r;
- z_c ∈ {0, 1}: gang request r takes exactly n_c = ceil(amount / f) devices of offer o (one offer);
- y_r ∈ {0, 1}: divisible request r is filled (within its fill bounds) or not at all.

Maximise Σ_c w_c · d_c, where d_c is the devices column (x_c, or n_c · z_c) and
w_c = (cap_r × f − floor_o) · h  ("surplus", CNY) or  f · h  ("pflops_hours", H100-equivalent-hours).

Subject to
- fill, divisible r:   Σ_c f·x_c − lower_r·y_r >= 0   and   Σ_c f·x_c − upper_r·y_r <= 0
  (one equality row when lower = upper);
- gang r:              Σ_c z_c <= 1  (all on one offer, so on one site and network domain);
- capacity over time:  each candidate holds its devices over [start_c, end_c), start_c the earliest
  common start. Usage only rises at a lease start, so for each offer o and each distinct start t:
  Σ_{c on o: start_c <= t < end_c} d_c <= devices_o. A start t is left out when no lease ends in
  (t, next start] — its set of running leases is contained in the next start's, so that row is implied.
  These "clique" rows hold O(k²) non-zeros for an offer with k overlapping candidates; an offer with
  more than ``clique_up_to`` candidates gets the equivalent chain form instead (``_capacity_rows``):
  continuous usage columns u_t ∈ [0, devices_o] linked by u_t = u_prev + starts − releases, O(k).
  At 10,000 × 2,000 one cheap offer drew 939 candidates and the clique rows 750 k of 814 k non-zeros.
"""

from collections.abc import Sequence
from dataclasses import dataclass

import highspy
import numpy as np

from zhisuan.core.matching.book import Grant
from zhisuan.core.matching.candidates import Candidate, fill_bounds
from zhisuan.core.matching.types import Offer, Request

INF = highspy.kHighsInf
CLIQUE_UP_TO = 40  # candidates on one offer; past this the capacity rows use the chain form


@dataclass
class ClearingModel:
    candidates: list[Candidate]
    is_gang: np.ndarray  # per candidate column
    devices_per_unit: np.ndarray  # 1 for x columns, n_c for gang z columns
    y_column: dict[int, int]  # request position -> its y column
    num_cols: int
    costs: np.ndarray
    lower: np.ndarray
    upper: np.ndarray
    integer_columns: np.ndarray
    rows: tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]  # lo, hi, starts, index, value
    chains: list[tuple[int, np.ndarray, np.ndarray, np.ndarray]]  # first usage column, columns, start row, end row


def build_model(offers: Sequence[Offer], requests: Sequence[Request],
                per_request: Sequence[Sequence[Candidate]], objective: str,
                clique_up_to: int = CLIQUE_UP_TO) -> ClearingModel:
    cands = [c for found in per_request for c in found]
    k = len(cands)
    gang = np.array([requests[c.request_index].gang for c in cands], dtype=bool)
    per_unit = np.array([c.max_devices if g else 1 for c, g in zip(cands, gang, strict=True)], dtype=np.float64)
    hours = np.array([c.end - c.start for c in cands], dtype=np.float64)
    weight = np.array([float(c.unit_surplus if objective == "surplus" else c.factor) for c in cands])
    y_column: dict[int, int] = {}
    for position in sorted({c.request_index for c in cands if not requests[c.request_index].gang}):
        y_column[position] = k + len(y_column)
    chains: list[tuple[int, np.ndarray, np.ndarray, np.ndarray]] = []
    capacity, usage_upper = _capacity_rows(offers, cands, per_unit, k + len(y_column), chains, clique_up_to)
    num_cols = k + len(y_column) + len(usage_upper)
    costs = np.concatenate([weight * hours * per_unit, np.zeros(num_cols - k)])
    upper = np.concatenate([np.where(gang, 1.0, [float(c.max_devices) for c in cands]), np.ones(len(y_column)),
                            usage_upper])
    integer = np.arange(k + len(y_column), dtype=np.int32)  # usage columns stay continuous
    return ClearingModel(cands, gang, per_unit, y_column, num_cols, costs, np.zeros(num_cols), upper,
                         integer, _to_csr([capacity, _fill_rows(requests, cands, y_column)]), chains)


Triplets = tuple[list[np.ndarray], list[np.ndarray], list[np.ndarray], list[float], list[float]]


def _capacity_rows(offers: Sequence[Offer], cands: Sequence[Candidate], per_unit: np.ndarray,
                   first_usage_column: int, chains: list, clique_up_to: int) -> tuple[Triplets, np.ndarray]:
    """Capacity over time per offer, and the upper bounds of the usage columns the chain form adds.

    An offer with at most ``clique_up_to`` candidates gets one row per distinct start that is not
    implied by the next one (module doc). A popular offer — hundreds of candidates, all overlapping —
    would make that O(k²) non-zeros, so it gets the chain form instead: a usage column u_j in
    [0, devices] per distinct start t_1 < … < t_m and the equality rows
    u_j = u_{j−1} + Σ_{c starts at t_j} d_c − Σ_{c ends in (t_{j−1}, t_j]} d_c  (u_0 = 0),
    so u_j is exactly the usage at t_j and each candidate appears in at most two rows."""
    blocks: Triplets = ([], [], [], [], [])
    usage_upper: list[float] = []
    by_offer: dict[int, list[int]] = {}
    for column, candidate in enumerate(cands):
        by_offer.setdefault(candidate.offer_index, []).append(column)
    for offer_index in sorted(by_offer):
        columns = np.array(by_offer[offer_index], dtype=np.int64)
        start = np.array([cands[c].start for c in columns], dtype=np.int64)
        end = np.array([cands[c].end for c in columns], dtype=np.int64)
        devices = float(offers[offer_index].devices)
        if len(columns) <= clique_up_to:
            _clique_rows(blocks, columns, start, end, per_unit, devices)
        else:
            chains.append(_chain_rows(blocks, columns, start, end, per_unit, first_usage_column + len(usage_upper)))
            usage_upper.extend([devices] * len(np.unique(start)))
    return blocks, np.array(usage_upper, dtype=np.float64)


def _clique_rows(blocks: Triplets, columns: np.ndarray, start: np.ndarray, end: np.ndarray,
                 per_unit: np.ndarray, devices: float) -> None:
    rows, cols, vals, lo, hi = blocks
    points = np.unique(start)
    following = np.append(points[1:], np.iinfo(np.int64).max)
    ends = np.sort(end)
    ending_before_next = np.searchsorted(ends, following, "right") - np.searchsorted(ends, points, "right")
    kept = points[ending_before_next > 0]
    running = (start[None, :] <= kept[:, None]) & (end[None, :] > kept[:, None])
    point, member = np.nonzero(running)
    rows.append(point + len(lo))
    cols.append(columns[member])
    vals.append(per_unit[columns[member]])
    lo.extend([-INF] * len(kept))
    hi.extend([devices] * len(kept))


def _chain_rows(blocks: Triplets, columns: np.ndarray, start: np.ndarray, end: np.ndarray,
                per_unit: np.ndarray, first_usage: int) -> tuple[int, np.ndarray, np.ndarray, np.ndarray]:
    rows, cols, vals, lo, hi = blocks
    points = np.unique(start)
    m, base = len(points), len(lo)
    starts_at = np.searchsorted(points, start)  # the row where the lease begins
    ends_at = np.searchsorted(points, end, "left")  # first t_j >= end: the row where it is released
    released = ends_at < m
    usage = np.arange(m)
    rows += [base + starts_at, base + ends_at[released], base + usage, base + usage[1:]]
    cols += [columns[:], columns[released], first_usage + usage, first_usage + usage[:-1]]
    vals += [per_unit[columns], -per_unit[columns[released]], -np.ones(m), np.ones(m - 1)]
    lo.extend([0.0] * m)
    hi.extend([0.0] * m)
    return first_usage, columns, starts_at, ends_at


def _fill_rows(requests: Sequence[Request], cands: Sequence[Candidate], y_column: dict[int, int]) -> Triplets:
    """Gang: Σ z <= 1. Divisible: lower·y <= Σ f·x <= upper·y (one equality row when lower = upper)."""
    by_request: dict[int, list[int]] = {}
    for column, candidate in enumerate(cands):
        by_request.setdefault(candidate.request_index, []).append(column)
    rows: list[int] = []
    cols: list[int] = []
    vals: list[float] = []
    lo: list[float] = []
    hi: list[float] = []
    for position, columns in sorted(by_request.items()):
        request = requests[position]
        if request.gang:
            rows += [len(lo)] * len(columns)
            cols += columns
            vals += [1.0] * len(columns)
            lo.append(-INF)
            hi.append(1.0)
            continue
        bounds = fill_bounds(request)
        factors = [float(cands[c].factor) for c in columns]
        if bounds.upper == bounds.lower:
            sides = [(float(bounds.lower), 0.0, 0.0)]
        else:
            sides = [(float(bounds.lower), 0.0, INF), (float(bounds.upper), -INF, 0.0)]
        for y_coef, side_lo, side_hi in sides:
            rows += [len(lo)] * (len(columns) + 1)
            cols += [*columns, y_column[position]]
            vals += [*factors, -y_coef]
            lo.append(side_lo)
            hi.append(side_hi)
    return [np.array(rows, dtype=np.int64)], [np.array(cols, dtype=np.int64)], [np.array(vals)], lo, hi


def _to_csr(blocks: list[Triplets]) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Stack row blocks (each numbered from 0) into HiGHS's row-wise arrays."""
    rows: list[np.ndarray] = []
    cols: list[np.ndarray] = []
    vals: list[np.ndarray] = []
    lo: list[float] = []
    hi: list[float] = []
    offset = 0
    for block_rows, block_cols, block_vals, block_lo, block_hi in blocks:
        rows += [r + offset for r in block_rows]
        cols += block_cols
        vals += block_vals
        lo += block_lo
        hi += block_hi
        offset += len(block_lo)
    r = np.concatenate(rows) if rows else np.zeros(0, dtype=np.int64)
    order = np.argsort(r, kind="stable")
    starts = np.searchsorted(r[order], np.arange(offset)).astype(np.int32)
    c = np.concatenate(cols)[order].astype(np.int32) if cols else np.zeros(0, dtype=np.int32)
    v = np.concatenate(vals)[order] if vals else np.zeros(0)
    return np.array(lo, dtype=np.float64), np.array(hi, dtype=np.float64), starts, c, v


def grants_to_columns(model: ClearingModel, grants: dict[int, list[Grant]]) -> np.ndarray:
    """A feasible start for the MIP: device columns (z = 1 for a gang's offer) and filled flags."""
    values = np.zeros(model.num_cols)
    column_of = {(c.request_index, c.offer_index): i for i, c in enumerate(model.candidates)}
    for position, given in grants.items():
        for candidate, devices in given:
            column = column_of[(candidate.request_index, candidate.offer_index)]
            values[column] = 1.0 if model.is_gang[column] else float(devices)
        if position in model.y_column:
            values[model.y_column[position]] = 1.0
    for first_usage, columns, starts_at, ends_at in model.chains:  # usage follows from the device columns
        devices = values[columns] * model.devices_per_unit[columns]
        m = int(starts_at.max()) + 1
        change = np.bincount(starts_at, devices, m) - np.bincount(ends_at, devices, m + 1)[:m]
        values[first_usage:first_usage + m] = np.cumsum(change)
    return values
