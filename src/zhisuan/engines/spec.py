"""What a launch profile consumes and produces. Pure data, no I/O."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class ModelSpec:
    """A registry entry: one servable model.

    ``source`` is a local path (a GGUF file for llama.cpp, a weights directory for vLLM/MindIE).
    ``stacks`` lists the accelerator software stacks it can run on (``cpu``, ``CUDA``, ``CANN``…).
    """

    name: str
    source: str
    engine: str
    context_length: int = 4096
    stacks: tuple[str, ...] = ("cpu",)
    # Extra engine flags appended verbatim (operator-supplied tuning knobs).
    extra_args: tuple[str, ...] = ()
    # Serve /v1/embeddings from this deployment (llama.cpp needs its embeddings mode for that).
    embeddings: bool = False


@dataclass(frozen=True)
class DeviceAssignment:
    """Where one replica runs: the devices placement gave it and the loopback port it listens on.

    ``device_indices`` are the node-local indices; ``visible_devices_env`` is the catalog's
    variable for the chip (``CUDA_VISIBLE_DEVICES``, ``ASCEND_RT_VISIBLE_DEVICES``…), None on CPU.
    """

    port: int
    host: str = "127.0.0.1"
    stack: str = "cpu"
    device_indices: tuple[int, ...] = ()
    visible_devices_env: str | None = None
    # CPU threads for CPU engines; parallel request slots.
    threads: int | None = None
    parallel: int = 4


@dataclass(frozen=True)
class LaunchPlan:
    """Everything needed to start one replica process."""

    argv: tuple[str, ...]
    env: dict[str, str]
    base_url: str
    health_path: str = "/health"
    # Files the engine reads at start (path → content), written by the supervisor before launch.
    files: dict[str, str] = field(default_factory=dict)
    # The per-replica key the engine demands, and the environment variable it reads it from (never
    # argv, which ``ps`` shows); the supervisor adds it to the environment at spawn, its health
    # check and the gateway present it. Kept out of ``env`` and repr so a logged plan never carries it.
    secret: str | None = field(default=None, repr=False)
    secret_env: str | None = None

    def environment(self) -> dict[str, str]:
        """The variables to set for the engine, the secret included."""
        if self.secret and self.secret_env:
            return {**self.env, self.secret_env: self.secret}
        return dict(self.env)


class ProfileError(ValueError):
    """The spec and the assignment do not fit this engine (wrong stack, missing devices…)."""


def visible_devices(assignment: DeviceAssignment, default_env: str) -> dict[str, str]:
    """The visible-devices variable restricting the engine to its assigned chips."""
    if not assignment.device_indices:
        raise ProfileError(f"{default_env.split('_')[0].lower()} engine needs at least one device")
    name = assignment.visible_devices_env or default_env
    return {name: ",".join(str(i) for i in assignment.device_indices)}
