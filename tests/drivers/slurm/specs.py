"""Specs placed on the test cluster's nodes (``sn1``..``snN``), shared by the Slurm tests."""

from __future__ import annotations

from collections.abc import Sequence

from zhisuan.drivers.base import LaunchSpec, WorkerAssignment

MODEL = "h100-sxm"  # the catalog key the site's "h100" gres type maps to


def make_spec(key: str, command: Sequence[str], workers: int, *, gpus: int = 1, model: str = MODEL,
              **extra: object) -> LaunchSpec:
    """A spec placed on sn1..snN with ``gpus`` devices each (the conformance suite's SpecFactory)."""
    assignments = tuple(
        WorkerAssignment(rank=i, node=f"sn{i + 1}", device_indices=tuple(range(gpus)), model=model if gpus else None,
                         visible_devices_env="CUDA_VISIBLE_DEVICES" if gpus else None, cpu_milli=1000,
                         memory_mib=256)
        for i in range(workers)
    )
    return LaunchSpec(key=key, job_id=int(key.split("-")[1]), attempt=1, tenant="acme", command=tuple(command),
                      workers=assignments, max_run_s=600, **extra)  # type: ignore[arg-type]

