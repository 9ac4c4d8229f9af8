"""One real throw-away Slurm cluster per test session: 2 nodes × 8 fake h100 GPUs.

``scripts/test-slurm.sh`` installs Debian's slurm-wlm and munge when it can; when it cannot it sets
``ZHISUAN_TEST_SLURM_SKIP`` to the reason and these tests are skipped — except in CI (``CI=true``),
where a missing Slurm fails them instead.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from zhisuan.drivers.slurm import testcluster
from zhisuan.drivers.slurm.driver import SlurmDriver

NODES = 2
GPUS = 8
GPU_TYPE = "h100"


def _unavailable_reason() -> str | None:
    reason = os.environ.get("ZHISUAN_TEST_SLURM_SKIP")
    if reason:
        return reason
    missing = [d for d in testcluster.DAEMONS if shutil.which(d) is None]
    if missing:
        return f"{', '.join(missing)} not installed (Debian packages slurm-wlm munge)"
    if os.geteuid() != 0:
        return "the test cluster runs slurmd as root"
    return None


@pytest.fixture(scope="session")
def slurm_cluster() -> Iterator[testcluster.TestCluster]:
    reason = _unavailable_reason()
    if reason:
        if os.environ.get("CI") == "true":
            pytest.fail(f"Slurm is unavailable in CI ({reason}); CI must not skip the Slurm tests")
        pytest.skip(f"Slurm tests SKIPPED: {reason}")
    # not under pytest's own 0700 temp tree: jobs running as tenants' users must reach the cluster's files
    directory = Path(tempfile.mkdtemp(prefix="zs-slurm-test-"))
    cluster = testcluster.start(directory, nodes=NODES, gpus=GPUS, gpu_type=GPU_TYPE)
    try:
        yield cluster
    finally:
        testcluster.stop(directory)
        shutil.rmtree(directory, ignore_errors=True)


@pytest.fixture()
def driver(slurm_cluster: testcluster.TestCluster) -> SlurmDriver:
    return SlurmDriver(str(slurm_cluster.conf_path), partition=slurm_cluster.partition,
                       root=slurm_cluster.workdir_root)


@pytest.fixture
def slurm_cluster_with_spare() -> Iterator[testcluster.TestCluster]:
    """A second throw-away cluster for node-fault tests: three 8-GPU nodes (a gang of two and a spare) and
    a short ``SlurmdTimeout`` (5 s: a silent node is DOWN about 8 s later), so a fault costs seconds.
    One per test (it starts in about a second): a frozen node must not disturb other tests, and a fresh
    controller remembers no job names of another database's jobs. Skipped (or, in CI, failed) exactly
    like ``slurm_cluster``."""
    reason = _unavailable_reason()
    if reason:
        if os.environ.get("CI") == "true":
            pytest.fail(f"Slurm is unavailable in CI ({reason}); CI must not skip the Slurm tests")
        pytest.skip(f"Slurm tests SKIPPED: {reason}")
    directory = Path(tempfile.mkdtemp(prefix="zs-slurm-spare-test-"))
    cluster = testcluster.start(directory, nodes=3, gpus=GPUS, gpu_type=GPU_TYPE, slurmd_timeout_s=5)
    try:
        yield cluster
    finally:
        testcluster.stop(directory)
        shutil.rmtree(directory, ignore_errors=True)
