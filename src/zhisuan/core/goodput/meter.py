"""The live effective-training-time meter: a job's timeline (its attempts, from events and progress
reports) → its ``TimeBreakdown``, which adds up to the job's wall time.

A job's life is a chain of attempts; attempt k is queued at q_k (submission, or the instant the previous
attempt ended), admitted at a_k, reports its first progress line at p_k, completes checkpoints at c_k,1 <
c_k,2 < … (each with the seconds it blocked training, s_k,j), and ends at e_k (or is still going at ``now``;
q_{k+1} = e_k). With E_k = e_k or now:

    queueing   += a_k − q_k                  (first admission and every re-queue's wait for capacity)
    restart    += p_k − a_k                  (launch, start-up, checkpoint loading — every attempt, the
                                              first one's start-up too: it is not training either)
    attempt ended by a fault (failed, requeued, preempted):
        kept    = c_k,last − p_k              (c_k,last = p_k when this attempt completed no checkpoint)
        lost   += E_k − c_k,last             (compute since the last complete checkpoint: redone)
    otherwise (succeeded, cancelled, still running):
        kept    = E_k − p_k
    checkpoint += min(kept, Σ s_k,j over the kept checkpoints)
    productive += kept − that

An attempt that never reported progress (a job not speaking the protocol, or one that died first) has no
p_k: its running time counts as ``lost`` when it ended by a fault and as ``productive`` otherwise. An
attempt never admitted is all queueing. Every second from q_1 to the last E_k falls in exactly one
category, so ``wall`` = E_last − q_1 (up to float rounding of the differences).

Times are seconds on one clock (the control plane's); no clock is read here.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from zhisuan.core.goodput.breakdown import TimeBreakdown


@dataclass(frozen=True)
class Checkpoint:
    at: float  # when the control plane learnt the checkpoint was complete
    step: int
    seconds: float = 0.0  # how long writing it blocked training (checkpoint_s)


@dataclass(frozen=True)
class Attempt:
    queued_at: float
    admitted_at: float | None = None  # None: never admitted (still waiting, or cancelled while queued)
    first_progress_at: float | None = None
    checkpoints: tuple[Checkpoint, ...] = ()  # completed during this attempt, oldest first
    ended_at: float | None = None  # None: still going (measured to ``now``)
    faulted: bool = False  # ended by a fault: its work since the last checkpoint is lost


def measure(attempts: Sequence[Attempt], now: float) -> TimeBreakdown:
    """The breakdown of a job's attempts (oldest first, each queued when the previous ended)."""
    queueing = productive = checkpoint = lost = restart = 0.0
    for attempt in attempts:
        end = attempt.ended_at if attempt.ended_at is not None else max(now, attempt.queued_at)
        admitted = _clip(attempt.admitted_at, attempt.queued_at, end)
        if admitted is None:
            queueing += end - attempt.queued_at
            continue
        queueing += admitted - attempt.queued_at
        started = _clip(attempt.first_progress_at, admitted, end)
        if started is None:
            if attempt.faulted:
                lost += end - admitted
            else:
                productive += end - admitted
            continue
        restart += started - admitted
        kept_checkpoints = [c for c in attempt.checkpoints if started <= c.at <= end]
        kept_until = end
        if attempt.faulted:
            kept_until = kept_checkpoints[-1].at if kept_checkpoints else started
            lost += end - kept_until
        kept = kept_until - started
        writing = min(kept, sum(max(0.0, c.seconds) for c in kept_checkpoints))
        checkpoint += writing
        productive += kept - writing
    return TimeBreakdown(queueing=queueing, productive=productive, checkpoint=checkpoint, lost=lost,
                         restart=restart)


def _clip(value: float | None, low: float, high: float) -> float | None:
    return None if value is None else min(max(value, low), high)
