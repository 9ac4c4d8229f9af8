"""vLLM-Ascend profile: the vLLM server with the Ascend (CANN) platform plugin on NPUs.

The plugin registers itself with vLLM; the chips are selected by ``ASCEND_RT_VISIBLE_DEVICES``.
"""

from __future__ import annotations

import sys

from zhisuan.engines.spec import DeviceAssignment, LaunchPlan, ModelSpec, ProfileError, visible_devices
from zhisuan.engines.vllm import SECRET_ENV, vllm_args

ENGINE = "vllm-ascend"


def build(spec: ModelSpec, a: DeviceAssignment, *, python: str | None = None, secret: str | None = None) -> LaunchPlan:
    if a.stack.upper() != "CANN":
        raise ProfileError(f"the vLLM-Ascend profile runs on CANN, not {a.stack}")
    argv = [python or sys.executable, "-m", "vllm.entrypoints.openai.api_server", *vllm_args(spec, a)]
    env = {
        **visible_devices(a, "ASCEND_RT_VISIBLE_DEVICES"),
        "VLLM_NO_USAGE_STATS": "1",
        "VLLM_TARGET_DEVICE": "npu",
        # Recommended by vLLM-Ascend for multi-card serving: spawn, not fork, the workers.
        "VLLM_WORKER_MULTIPROC_METHOD": "spawn",
    }
    return LaunchPlan(argv=tuple(argv), env=env, base_url=f"http://{a.host}:{a.port}", health_path="/health",
                      secret=secret, secret_env=SECRET_ENV if secret else None)
