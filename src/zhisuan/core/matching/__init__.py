"""The market's clearing round: match tenants' requests to providers' offers.

Pure and I/O-free: frozen dataclasses in, a ``Clearing`` out. ``clear`` maximises total surplus
(or matched H100-equivalent-hours) — an exact MILP (HiGHS) for small rounds, capacity prices with a
bound valid for the whole round for large ones (``solve.py``); ``clear_fcfs`` and ``clear_greedy``
are the baselines it is measured against; ``clearing_price`` is the price rule every match uses.
Bad input raises ``MatchingInputError`` (a ``ValueError``) naming the field.
"""

from zhisuan.core.matching.baselines import clear_fcfs, clear_greedy
from zhisuan.core.matching.candidates import clearing_price
from zhisuan.core.matching.solve import clear
from zhisuan.core.matching.types import (
    OBJECTIVES,
    REASON_CAP_BELOW_FLOORS,
    REASON_GANG_TOO_LARGE,
    REASON_NO_CAPACITY,
    REASON_OUTBID,
    REASON_TOO_LITTLE_CAPACITY,
    Clearing,
    Match,
    MatchingInputError,
    Offer,
    Request,
)

__all__ = [
    "OBJECTIVES",
    "REASON_CAP_BELOW_FLOORS",
    "REASON_GANG_TOO_LARGE",
    "REASON_NO_CAPACITY",
    "REASON_OUTBID",
    "REASON_TOO_LITTLE_CAPACITY",
    "Clearing",
    "Match",
    "MatchingInputError",
    "Offer",
    "Request",
    "clear",
    "clear_fcfs",
    "clear_greedy",
    "clearing_price",
]
