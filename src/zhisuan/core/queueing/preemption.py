"""Choosing preemption victims: the fewest reclaimable jobs whose release lets a job fit.

Candidates are running jobs that are *not* within their owner's guarantee, hold the model the job
needs, have a worker on a site the job may use, are of a class no higher than ``max_rank`` (a job is
never preempted for a job of a lower class) and are not already being preempted this cycle. They are
ordered spot before elastic, then newest first (largest ``seq``, then largest ``job_id``)::

    victims = the shortest prefix v[0..k) of that order such that the job fits on a copy of the
              arrays with v[0..k)'s CPU, memory and device shares added back

``k`` is found by binary search over prefixes (releasing more never makes a job fit worse), so the
cost is O(log V) trial placements. The live arrays are never touched. A single worker did not fit
anywhere before, so only nodes a victim gives something back on can fit after: the caller's trial
may filter just those rows.
"""

from __future__ import annotations

import copy
from collections import defaultdict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from zhisuan.core.placement.fleet import FleetArrays
from zhisuan.core.queueing.model import RunningJob, class_rank


def reclaimable(running: Sequence[RunningJob]) -> dict[str | None, list[RunningJob]]:
    """Running jobs outside their guarantee, per model held, in preemption order (spot first, newest first)."""
    by_model: dict[str | None, list[RunningJob]] = defaultdict(list)
    for job in sorted(running, key=lambda j: (class_rank(j.priority_class), -j.seq, -j.job_id)):
        if not job.within_guarantee:
            by_model[job.model].append(job)
    return dict(by_model)


def victim_order(
    ordered: Sequence[RunningJob],
    max_rank: int,
    sites: frozenset[str] | None,
    node_site: Mapping[str, str],
    taken: set[int],
) -> list[RunningJob]:
    """The candidates of ``ordered`` (one model's ``reclaimable``) this job may preempt, in order."""
    return [
        job
        for job in ordered
        if class_rank(job.priority_class) <= max_rank
        and job.job_id not in taken
        and (sites is None or any(node_site.get(w.node) in sites for w in job.workers))
    ]


@dataclass(frozen=True)
class Release:
    """What a running job gives back when it stops, in fleet rows and device slots."""

    rows: np.ndarray  # int64[W] node row per worker found in the fleet
    cpu: np.ndarray  # int64[W]
    mem: np.ndarray  # int64[W]
    device_rows: np.ndarray  # int64[D]
    device_slots: np.ndarray  # int64[D]
    device_milli: np.ndarray  # int64[D]


def release_of(fleet: FleetArrays, rows: Mapping[str, int], job: RunningJob) -> Release:
    """The job's holds as array deltas; workers on nodes that left the inventory give nothing back."""
    node_rows, cpu, mem, dev_rows, dev_slots, dev_milli = [], [], [], [], [], []
    for worker in job.workers:
        row = rows.get(worker.node)
        if row is None:
            continue
        node_rows.append(row)
        cpu.append(worker.cpu_milli)
        mem.append(worker.memory_mib)
        for index in worker.device_indices:
            for slot in np.flatnonzero(fleet.device_index[row] == index):
                dev_rows.append(row)
                dev_slots.append(int(slot))
                dev_milli.append(worker.milli_per_device)
    as_array = [np.array(values, np.int64) for values in (node_rows, cpu, mem, dev_rows, dev_slots, dev_milli)]
    return Release(*as_array)


def with_released(fleet: FleetArrays, releases: Sequence[Release]) -> FleetArrays:
    """A copy of the arrays as if these jobs had stopped (their holds added back, capped at a whole device)."""
    trial = copy.copy(fleet)
    trial.cpu_free, trial.mem_free = fleet.cpu_free.copy(), fleet.mem_free.copy()
    trial.gpu_left, trial.affinity = fleet.gpu_left.copy(), fleet.affinity.copy()
    if releases:
        np.add.at(trial.cpu_free, np.concatenate([r.rows for r in releases]), np.concatenate([r.cpu for r in releases]))
        np.add.at(trial.mem_free, np.concatenate([r.rows for r in releases]), np.concatenate([r.mem for r in releases]))
        dev_rows = np.concatenate([r.device_rows for r in releases])
        dev_slots = np.concatenate([r.device_slots for r in releases])
        np.add.at(trial.gpu_left, (dev_rows, dev_slots), np.concatenate([r.device_milli for r in releases]))
        np.minimum(trial.gpu_left, 1000, out=trial.gpu_left)
    return trial


def fewest_victims(
    fleet: FleetArrays,
    releases: Sequence[Release],
    fits: Callable[[FleetArrays, Sequence[Release]], bool],
) -> int:
    """The length of the shortest prefix of ``releases`` after which ``fits(arrays, prefix)`` holds (0: none)."""
    if not releases or not fits(with_released(fleet, releases), releases):
        return 0
    low, high = 1, len(releases)  # invariant: the prefix of length ``high`` fits
    while low < high:
        middle = (low + high) // 2
        if fits(with_released(fleet, releases[:middle]), releases[:middle]):
            high = middle
        else:
            low = middle + 1
    return high
