"""How often to checkpoint: the Young/Daly intervals, an adaptive estimate of the failure rate, and the
first-order ETTR model used to check the simulator.

Notation: δ = the time a checkpoint blocks training (seconds), M = the whole job's mean time between
failures (seconds), τ = the compute time between two checkpoints, R = the time from a failure until
training runs again (detection + replacement + start-up + loading), L = the time after the block until a
checkpoint is complete (0 for a synchronous write; the background write or replication of an async one).

- Young (1974): τ = sqrt(2·δ·M).
- Daly (2006), first order: τ = sqrt(2·δ·M) − δ.
- Daly (2006), higher order: τ = sqrt(2·δ·M)·[1 + ⅓·sqrt(δ/(2M)) + (1/9)·(δ/(2M))] − δ for δ < 2M, else τ = M.

All three minimise the expected waste per unit of compute; they need δ < M (a checkpoint that takes
longer than the mean time between failures cannot be amortised), so they refuse δ ≥ M.

First-order ETTR (Young/Daly's waste model, as in Kokolis et al., HPCA 2025, for a single job):
each cycle is τ of compute and δ of blocking, so a fraction τ/(τ+δ) of running time computes; each
failure (rate 1/M) costs R of restart plus, on average, the compute since the last complete checkpoint,
≈ (τ+δ)/2 + L of the running time. Hence

    ETTR ≈ τ/(τ+δ) · (1 − (R + L + (τ+δ)/2) / M)

which is accurate when R, τ ≪ M (failures during restart and second-order terms neglected).

Adaptive estimate (Gamma–Poisson): with a prior MTBF M₀ worth ``w`` failures and ``n`` failures seen in
``t`` seconds of exposure, the posterior mean failure rate is (w + n)/(w·M₀ + t), so

    M̂ = (w·M₀ + t) / (w + n)

which starts at M₀ and follows the observed rate as evidence accumulates.
"""

from __future__ import annotations

import math


def _check(delta_s: float, mtbf_s: float) -> None:
    if not delta_s > 0:
        raise ValueError(f"checkpoint time must be > 0 (got {delta_s})")
    if not mtbf_s > 0:
        raise ValueError(f"MTBF must be > 0 (got {mtbf_s})")
    if delta_s >= mtbf_s:
        raise ValueError(f"a checkpoint of {delta_s:g} s is not shorter than the job's MTBF of {mtbf_s:g} s: "
                         "no checkpoint interval can amortise it")


def young_interval(delta_s: float, mtbf_s: float) -> float:
    """τ = sqrt(2·δ·M) (Young 1974)."""
    _check(delta_s, mtbf_s)
    return math.sqrt(2 * delta_s * mtbf_s) if math.isfinite(mtbf_s) else math.inf


def daly_interval(delta_s: float, mtbf_s: float, higher_order: bool = False) -> float:
    """τ = sqrt(2·δ·M) − δ (Daly 2006, first order), or Daly's higher-order form (see the module)."""
    _check(delta_s, mtbf_s)
    if not math.isfinite(mtbf_s):
        return math.inf
    if not higher_order:
        return math.sqrt(2 * delta_s * mtbf_s) - delta_s
    if delta_s >= 2 * mtbf_s:  # unreachable after _check; kept to mirror Daly's definition
        return mtbf_s
    x = delta_s / (2 * mtbf_s)
    return math.sqrt(2 * delta_s * mtbf_s) * (1 + math.sqrt(x) / 3 + x / 9) - delta_s


def first_order_ettr(
    interval_s: float, blocking_s: float, restart_s: float, mtbf_s: float, lag_s: float = 0.0
) -> float:
    """ETTR ≈ τ/(τ+δ) · (1 − (R + L + (τ+δ)/2)/M), clamped at 0 (see the module docstring)."""
    cycle = interval_s + blocking_s
    loss = (restart_s + lag_s + cycle / 2) / mtbf_s if math.isfinite(mtbf_s) else 0.0
    return max(0.0, interval_s / cycle * (1 - loss))


def estimated_mtbf(prior_mtbf_s: float, prior_weight: float, failures: int, exposure_s: float) -> float:
    """M̂ = (w·M₀ + t)/(w + n): the Gamma–Poisson posterior mean (see the module docstring)."""
    if prior_weight <= 0 or failures < 0 or exposure_s < 0:
        raise ValueError("prior_weight must be > 0, failures and exposure ≥ 0")
    if not math.isfinite(prior_mtbf_s):
        return math.inf if failures == 0 else exposure_s / failures
    return (prior_weight * prior_mtbf_s + exposure_s) / (prior_weight + failures)
