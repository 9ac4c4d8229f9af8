"""vLLM profile: CUDA GPUs, OpenAI-compatible server, tensor parallel over the assigned devices.

The replica's secret goes in ``VLLM_API_KEY`` (vLLM's ``--api-key`` read from the environment, so
argv never carries it); ``--allowed-origins []`` turns vLLM's allow-all CORS policy off.
"""

from __future__ import annotations

import sys

from zhisuan.engines.spec import DeviceAssignment, LaunchPlan, ModelSpec, ProfileError, visible_devices

ENGINE = "vllm"
SECRET_ENV = "VLLM_API_KEY"


def vllm_args(spec: ModelSpec, a: DeviceAssignment) -> list[str]:
    return [
        "--model", spec.source,
        "--served-model-name", spec.name,
        "--host", a.host,
        "--port", str(a.port),
        "--max-model-len", str(spec.context_length),
        "--tensor-parallel-size", str(len(a.device_indices)),
        "--max-num-seqs", str(max(a.parallel, 1)),
        "--disable-log-requests",
        "--allowed-origins", "[]",
        *spec.extra_args,
    ]


def build(spec: ModelSpec, a: DeviceAssignment, *, python: str | None = None, secret: str | None = None) -> LaunchPlan:
    if a.stack.upper() != "CUDA":
        raise ProfileError(f"the vLLM profile runs on CUDA, not {a.stack}")
    argv = [python or sys.executable, "-m", "vllm.entrypoints.openai.api_server", *vllm_args(spec, a)]
    env = {**visible_devices(a, "CUDA_VISIBLE_DEVICES"), "VLLM_NO_USAGE_STATS": "1"}
    return LaunchPlan(argv=tuple(argv), env=env, base_url=f"http://{a.host}:{a.port}", health_path="/health",
                      secret=secret, secret_env=SECRET_ENV if secret else None)
