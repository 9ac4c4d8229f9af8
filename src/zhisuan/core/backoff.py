"""Exponential backoff after repeated failures (logins, API keys): a pure rule, no clock, no state."""

from __future__ import annotations


def lockout_seconds(failures: int, free: int, base_s: float, cap_s: float) -> float:
    """How long to refuse further attempts after ``failures`` consecutive failures.

    The first ``free`` failures cost nothing (typos happen); each one after doubles the wait,
    from ``base_s`` up to ``cap_s``.
    """
    if failures < free:
        return 0.0
    return float(min(cap_s, base_s * 2 ** min(failures - free, 32)))
