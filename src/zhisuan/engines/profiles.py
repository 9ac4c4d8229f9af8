"""Engine name → launch profile."""

from __future__ import annotations

from zhisuan.engines import llamacpp, mindie, vllm, vllm_ascend
from zhisuan.engines.spec import DeviceAssignment, LaunchPlan, ModelSpec, ProfileError

ENGINES = (llamacpp.ENGINE, vllm.ENGINE, vllm_ascend.ENGINE, mindie.ENGINE)
# Which software stack each engine runs on (lower-case stack names).
ENGINE_STACK = {llamacpp.ENGINE: "cpu", vllm.ENGINE: "cuda", vllm_ascend.ENGINE: "cann", mindie.ENGINE: "cann"}
# Every stack each engine can run on (the first is its default): llama.cpp also offloads to NVIDIA GPUs.
ENGINE_STACKS = {llamacpp.ENGINE: ("cpu", "cuda"), vllm.ENGINE: ("cuda",), vllm_ascend.ENGINE: ("cann",),
                 mindie.ENGINE: ("cann",)}


def launch_plan(spec: ModelSpec, assignment: DeviceAssignment, secret: str | None = None) -> LaunchPlan:
    """``secret``: the key the engine must demand of every caller (the gateway presents it)."""
    if assignment.stack.lower() not in {s.lower() for s in spec.stacks}:
        runs_on = ", ".join(spec.stacks)
        raise ProfileError(f"model {spec.name} does not run on {assignment.stack} (it runs on {runs_on})")
    if spec.engine == llamacpp.ENGINE:
        return llamacpp.build(spec, assignment, binary=llamacpp.find_llama_server(), secret=secret)
    if spec.engine == vllm.ENGINE:
        return vllm.build(spec, assignment, secret=secret)
    if spec.engine == vllm_ascend.ENGINE:
        return vllm_ascend.build(spec, assignment, secret=secret)
    if spec.engine == mindie.ENGINE:
        return mindie.build(spec, assignment)
    raise ProfileError(f"unknown engine {spec.engine!r} (known: {', '.join(ENGINES)})")
