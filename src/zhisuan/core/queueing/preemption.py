"""Choosing preemption victims: the fewest reclaimable jobs whose release lets a job fit.

Candidates are running jobs that are *not* within their owner's guarantee, hold the model the job
needs, have a worker on a site the job may use, are of a class no higher than ``max_rank`` (a job is
never preempted for a job of a lower class) and are not already being preempted this cycle. They are
ordered spot before elastic, then newest first (largest ``seq``, then largest ``job_id``)::

    victims = the shortest prefix v[0..k) of that order such that the job fits on a copy of the
              arrays with v[0..k)'s CPU, memory and device shares added back

``k`` is found by binary search over prefixes (releasing more never makes a job fit worse), so the
cost is O(log V) trial placements. The live arrays are never touched.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Mapping, Sequence

import numpy as np

from zhisuan.core.placement.fleet import FleetArrays
from zhisuan.core.queueing.model import RunningJob, class_rank


def victim_order(
    running: Sequence[RunningJob],
    model: str | None,
    max_rank: int,
    sites: frozenset[str] | None,
    node_site: Mapping[str, str],
    taken: set[int],
) -> list[RunningJob]:
    """Reclaimable candidates in preemption order (see the module docstring)."""
    candidates = [
        job
        for job in running
        if not job.within_guarantee
        and job.model == model
        and class_rank(job.priority_class) <= max_rank
        and job.job_id not in taken
        and (sites is None or any(node_site.get(w.node) in sites for w in job.workers))
    ]
    return sorted(candidates, key=lambda j: (class_rank(j.priority_class), -j.seq, -j.job_id))


def with_released(fleet: FleetArrays, rows: Mapping[str, int], victims: Sequence[RunningJob]) -> FleetArrays:
    """A copy of the arrays as if ``victims`` had stopped (their holds added back, capped at a whole device)."""
    trial = copy.copy(fleet)
    trial.cpu_free, trial.mem_free = fleet.cpu_free.copy(), fleet.mem_free.copy()
    trial.gpu_left, trial.affinity = fleet.gpu_left.copy(), fleet.affinity.copy()
    for job in victims:
        for worker in job.workers:
            row = rows.get(worker.node)
            if row is None:  # the node left the inventory: nothing to give back
                continue
            trial.cpu_free[row] += worker.cpu_milli
            trial.mem_free[row] += worker.memory_mib
            for index in worker.device_indices:
                slot = np.flatnonzero(fleet.device_index[row] == index)
                trial.gpu_left[row, slot] = np.minimum(trial.gpu_left[row, slot] + worker.milli_per_device, 1000)
    return trial


def fewest_victims(
    fleet: FleetArrays,
    rows: Mapping[str, int],
    candidates: Sequence[RunningJob],
    fits: Callable[[FleetArrays], bool],
) -> list[RunningJob] | None:
    """The shortest prefix of ``candidates`` after whose release ``fits`` holds, or None if none does."""
    if not candidates or not fits(with_released(fleet, rows, candidates)):
        return None
    low, high = 1, len(candidates)  # invariant: the prefix of length ``high`` fits
    while low < high:
        middle = (low + high) // 2
        if fits(with_released(fleet, rows, candidates[:middle])):
            high = middle
        else:
            low = middle + 1
    return list(candidates[:high])
