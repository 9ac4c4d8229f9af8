"""How big a replica is: the CPU and memory the platform holds (and bills) for one engine process.

A caller declares cores and GiB, but the engine decides what it really uses: a llama.cpp replica
maps its whole GGUF file into memory and needs a core to make progress, whatever was declared. So
the size is the larger of the declared value and the engine's floor:

    cpu_milli  = max(declared, engine CPU floor)
    memory_mib = max(declared, weights in host memory × 6/5 + engine overhead)

The 6/5 covers what grows with the weights (KV cache and compute buffers at the platform's
context sizes, allocator slack); the overhead is the engine's own process (runtime, HTTP server,
tokenizer). Accelerator engines keep their weights in device memory, so only their host-side
overhead counts. Declared values may raise a replica's size, never lower it. Pure: no I/O.
"""

from __future__ import annotations

from dataclasses import dataclass

MIB = 1024 * 1024


@dataclass(frozen=True)
class EngineFloor:
    cpu_milli: int
    overhead_mib: int
    # The weights live in host memory (CPU engines) rather than in accelerator memory.
    weights_in_host_memory: bool


# Measured for llama.cpp (SmolLM2-135M Q4_1, 98 MB file: ~250 MB resident with 2 slots of 2048
# tokens); the accelerator engines' floors are their documented host-side minimums.
FLOORS = {
    "llama.cpp": EngineFloor(cpu_milli=1000, overhead_mib=256, weights_in_host_memory=True),
    "vllm": EngineFloor(cpu_milli=2000, overhead_mib=4096, weights_in_host_memory=False),
    "vllm-ascend": EngineFloor(cpu_milli=2000, overhead_mib=4096, weights_in_host_memory=False),
    "mindie": EngineFloor(cpu_milli=2000, overhead_mib=4096, weights_in_host_memory=False),
}


@dataclass(frozen=True)
class ReplicaSize:
    cpu_milli: int
    memory_mib: int


def replica_size(engine: str, weights_bytes: int | None, declared_cpu_milli: int,
                 declared_memory_mib: int) -> ReplicaSize:
    """The size to hold for one replica. ``weights_bytes``: the model's files (None = unknown, then
    only the engine's overhead is the floor)."""
    floor = FLOORS[engine]
    weights_mib = -(-(weights_bytes or 0) // MIB) if floor.weights_in_host_memory else 0
    memory_floor = -(-weights_mib * 6 // 5) + floor.overhead_mib
    return ReplicaSize(cpu_milli=max(declared_cpu_milli, floor.cpu_milli),
                       memory_mib=max(declared_memory_mib, memory_floor))
