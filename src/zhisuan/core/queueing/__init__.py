"""Queueing and admission (the Kueue model): a frozen snapshot in, admissions and preemptions out.

Public API (wired to the database loop by the control plane)::

    schedule(snapshot: QueueSnapshot, policy="zhisuan", seed=0) -> CycleResult

See ``quota`` for the quota formulas, ``cycle`` for the order of decisions and ``preemption`` for
how victims are chosen.
"""

from zhisuan.core.queueing.cycle import schedule
from zhisuan.core.queueing.model import (
    PRIORITY_CLASSES,
    Admission,
    CycleResult,
    Pending,
    Preemption,
    QueuedJob,
    QueueSnapshot,
    RunningJob,
    WorkerPlace,
)

__all__ = [
    "PRIORITY_CLASSES",
    "Admission",
    "CycleResult",
    "Pending",
    "Preemption",
    "QueueSnapshot",
    "QueuedJob",
    "RunningJob",
    "WorkerPlace",
    "schedule",
]
