"""The clearing round as a mixed-integer program (built as numpy arrays for HiGHS).

Columns, for the candidate pairs c = (r, o) of ``candidates.py`` (f = factor, h = r.duration_h):

- x_c ∈ {0..max_c} integer: devices of offer o leased to a divisible request r;
- z_c ∈ {0, 1}: gang request r takes exactly n_c = ceil(amount / f) devices of offer o (one offer);
- y_r ∈ {0, 1}: divisible request r is filled (within its fill bounds) or not at all;
- u_{o,j} ∈ [0, devices_o] continuous: devices of offer o in use from its j-th event time on.

Maximise Σ_c w_c · d_c, where d_c is the devices column (x_c, or n_c · z_c) and
w_c = (cap_r × f − floor_o) · h  ("surplus", CNY) or  f · h  ("pflops_hours", H100-equivalent-hours).

Subject to
- fill, divisible r:   Σ_c f·x_c − lower_r·y_r >= 0   and   Σ_c f·x_c − upper_r·y_r <= 0
  (one equality row when lower = upper);
- gang r:              Σ_c z_c <= 1  (all on one offer, so on one site and network domain);
- capacity over time:  each candidate holds its devices over [start_c, end_c) with start_c the
  earliest common start; at each distinct event time t_j of offer o (a start or an end),
  u_{o,j} = u_{o,j−1} + Σ_{start_c = t_j} d_c − Σ_{end_c = t_j} d_c and u_{o,j} <= devices_o.
  This is the "sum of overlapping leases <= devices at every lease start" constraint written with
  O(pairs) non-zeros instead of O(pairs × starts): u_{o,j} equals the usage at t_j.
"""

from collections.abc import Sequence
from dataclasses import dataclass

import highspy
import numpy as np

from zhisuan.core.matching.book import Grant
from zhisuan.core.matching.candidates import Candidate, fill_bounds
from zhisuan.core.matching.types import Offer, Request

INF = highspy.kHighsInf


@dataclass
class ClearingModel:
    candidates: list[Candidate]
    is_gang: np.ndarray  # per candidate column
    devices_per_unit: np.ndarray  # 1 for x columns, n_c for gang z columns
    y_column: dict[int, int]  # request position -> its y column
    start_event: np.ndarray  # per candidate: index of its start event (= u column offset)
    end_event: np.ndarray
    first_u: int
    num_cols: int
    costs: np.ndarray
    lower: np.ndarray
    upper: np.ndarray
    integer_columns: np.ndarray
    rows: tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]  # lo, hi, starts, index, value


def build_model(offers: Sequence[Offer], requests: Sequence[Request],
                per_request: Sequence[Sequence[Candidate]], objective: str) -> ClearingModel:
    cands = [c for found in per_request for c in found]
    k = len(cands)
    gang = np.array([requests[c.request_index].gang for c in cands], dtype=bool)
    per_unit = np.array([c.max_devices if g else 1 for c, g in zip(cands, gang, strict=True)], dtype=np.float64)
    hours = np.array([c.end - c.start for c in cands], dtype=np.float64)
    weight = [c.unit_surplus if objective == "surplus" else c.factor for c in cands]
    costs = [np.array([float(w) for w in weight]) * hours * per_unit]
    lower, upper = [np.zeros(k)], [np.where(gang, 1.0, [float(c.max_devices) for c in cands])]
    y_column: dict[int, int] = {}
    for position in sorted({c.request_index for c in cands if not requests[c.request_index].gang}):
        y_column[position] = k + len(y_column)
    costs.append(np.zeros(len(y_column)))
    lower.append(np.zeros(len(y_column)))
    upper.append(np.ones(len(y_column)))
    start_event, end_event, u_upper = _events(offers, cands)
    first_u = k + len(y_column)
    costs.append(np.zeros(len(u_upper)))
    lower.append(np.zeros(len(u_upper)))
    upper.append(u_upper)
    integers = np.arange(first_u, dtype=np.int32)
    rows = _rows(requests, cands, per_unit, y_column, start_event, end_event, first_u, len(u_upper))
    return ClearingModel(cands, gang, per_unit, y_column, start_event, end_event, first_u, first_u + len(u_upper),
                         np.concatenate(costs), np.concatenate(lower), np.concatenate(upper), integers, rows)


def _events(offers: Sequence[Offer], cands: Sequence[Candidate]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Distinct (offer, time) events, sorted by offer then time; each candidate's start and end event."""
    offer_of = np.array([c.offer_index for c in cands], dtype=np.int64)
    span = 1 + max((c.end for c in cands), default=0) - min((c.start for c in cands), default=0)
    base = min((c.start for c in cands), default=0)
    start_key = offer_of * span + (np.array([c.start for c in cands], dtype=np.int64) - base)
    end_key = offer_of * span + (np.array([c.end for c in cands], dtype=np.int64) - base)
    keys, inverse = np.unique(np.concatenate([start_key, end_key]), return_inverse=True)
    capacity = np.array([float(offers[int(o)].devices) for o in keys // span]) if len(keys) else np.zeros(0)
    return inverse[: len(cands)], inverse[len(cands):], capacity


def _rows(requests, cands, per_unit, y_column, start_event, end_event, first_u, num_u):
    """Row-wise triplets → CSR arrays: capacity-event rows, then fill rows, then gang rows."""
    k = len(cands)
    r_idx, c_idx, vals, lo, hi = [], [], [], [np.zeros(num_u)], [np.zeros(num_u)]
    # capacity events: u_j − u_{j−1} − Σ starts + Σ ends = 0
    u_cols = first_u + np.arange(num_u)
    r_idx += [np.arange(num_u)]
    c_idx += [u_cols]
    vals += [np.ones(num_u)]
    if num_u > 1:
        same_offer = _same_offer_as_previous(cands, start_event, end_event, num_u)
        rows = np.flatnonzero(same_offer)
        r_idx += [rows]
        c_idx += [u_cols[rows - 1]]
        vals += [-np.ones(len(rows))]
    r_idx += [start_event, end_event]
    c_idx += [np.arange(k), np.arange(k)]
    vals += [-per_unit, per_unit]
    next_row = num_u
    by_request: dict[int, list[int]] = {}
    for column, candidate in enumerate(cands):
        by_request.setdefault(candidate.request_index, []).append(column)
    extra_r, extra_c, extra_v, extra_lo, extra_hi = [], [], [], [], []
    for position, columns in sorted(by_request.items()):
        request = requests[position]
        if request.gang:
            extra_r += [next_row] * len(columns)
            extra_c += columns
            extra_v += [1.0] * len(columns)
            extra_lo.append(-INF)
            extra_hi.append(1.0)
            next_row += 1
            continue
        bounds = fill_bounds(request)
        factors = [float(cands[c].factor) for c in columns]
        if bounds.upper == bounds.lower:
            pairs = [(float(bounds.lower), 0.0, 0.0)]
        else:
            pairs = [(float(bounds.lower), 0.0, INF), (float(bounds.upper), -INF, 0.0)]
        for y_coef, bound_lo, bound_hi in pairs:
            extra_r += [next_row] * (len(columns) + 1)
            extra_c += [*columns, y_column[position]]
            extra_v += [*factors, -y_coef]
            extra_lo.append(bound_lo)
            extra_hi.append(bound_hi)
            next_row += 1
    r_all = np.concatenate([*r_idx, np.array(extra_r, dtype=np.int64)])
    c_all = np.concatenate([*c_idx, np.array(extra_c, dtype=np.int64)])
    v_all = np.concatenate([*vals, np.array(extra_v, dtype=np.float64)])
    order = np.argsort(r_all, kind="stable")
    starts = np.searchsorted(r_all[order], np.arange(next_row)).astype(np.int32)
    row_lo = np.concatenate([*lo, np.array(extra_lo)])
    row_hi = np.concatenate([*hi, np.array(extra_hi)])
    return row_lo, row_hi, starts, c_all[order].astype(np.int32), v_all[order]


def _same_offer_as_previous(cands, start_event, end_event, num_u) -> np.ndarray:
    """Whether event j belongs to the same offer as event j − 1 (events are sorted by offer)."""
    offer_of_event = np.full(num_u, -1, dtype=np.int64)
    offers = np.array([c.offer_index for c in cands], dtype=np.int64)
    offer_of_event[start_event] = offers
    offer_of_event[end_event] = offers
    same = np.zeros(num_u, dtype=bool)
    same[1:] = offer_of_event[1:] == offer_of_event[:-1]
    return same


def grants_to_columns(model: ClearingModel, grants: dict[int, list[Grant]]) -> np.ndarray:
    """A feasible start for the MIP: device columns, filled flags, and the usage each event implies."""
    values = np.zeros(model.num_cols)
    column_of = {id(c): i for i, c in enumerate(model.candidates)}
    for position, given in grants.items():
        for candidate, devices in given:
            column = column_of[id(candidate)]
            values[column] = 1.0 if model.is_gang[column] else float(devices)
        if position in model.y_column:
            values[model.y_column[position]] = 1.0
    k = len(model.candidates)
    held = values[:k] * model.devices_per_unit
    delta = np.zeros(model.num_cols - model.first_u)
    np.add.at(delta, model.start_event, held)
    np.add.at(delta, model.end_event, -held)
    # Each offer's events net to zero, so one running sum over all events serves every offer.
    values[model.first_u:] = np.round(np.cumsum(delta))
    return values
