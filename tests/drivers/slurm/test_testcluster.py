"""The throw-away cluster itself: a second start replaces the first, and stop leaves nothing running."""

from __future__ import annotations

from pathlib import Path

import pytest

from zhisuan.drivers.slurm import testcluster

pytestmark = pytest.mark.slow


def recorded_pids(directory: Path) -> list[int]:
    return [int(p.read_text()) for p in (directory / "run").glob("*.pid") if not p.name.endswith(".daemon.pid")]


def test_start_twice_then_stop_leaves_nothing_running(slurm_cluster: testcluster.TestCluster,
                                                      tmp_path: Path) -> None:
    del slurm_cluster  # only for its skip/fail decision: this test runs its own small cluster
    first = testcluster.start(tmp_path / "c", nodes=1, gpus=2, gpu_type="l40s")
    old = recorded_pids(first.directory)
    assert len(old) == 3  # munged, slurmctld, one slurmd
    second = testcluster.start(tmp_path / "c", nodes=1, gpus=2, gpu_type="l40s")
    assert not any(testcluster._alive(pid) for pid in old)
    new = recorded_pids(second.directory)
    assert len(new) == 3 and all(testcluster._alive(pid) for pid in new)
    testcluster.stop(second.directory)
    assert not any(testcluster._alive(pid) for pid in new + old)
    assert testcluster._pids_with_env(f"SLURM_CONF={second.conf_path}".encode()) == []
    testcluster.stop(second.directory)  # stopping a stopped cluster is a no-op
