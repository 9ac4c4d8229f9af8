"""llama.cpp profile: inference of GGUF files through llama.cpp's own HTTP server, on the CPU or
offloaded to NVIDIA GPUs (stack ``CUDA``: every layer on the assigned GPUs, ``--n-gpu-layers 999``,
split by layer over several; ``CUDA_VISIBLE_DEVICES`` restricts it to them; needs a CUDA build of
``llama-server`` in ``ZHISUAN_LLAMA_SERVER`` or on ``PATH``).

Two launchers share one argument set (llama-server's flags):
- the ``llama-server`` binary when one is installed (``ZHISUAN_LLAMA_SERVER`` or ``PATH``);
- otherwise ``python -m zhisuan.engines.llamacpp_host``, which runs the same C++ server from the
  prebuilt ``xllamacpp`` wheel (PyPI), so no compiler is needed on the box.

Only the gateway may call a replica: the replica's secret goes in ``LLAMA_API_KEY`` (llama-server
reads its ``--api-key`` from that variable; the host reads it the same way), so it never appears in
argv; and ``--cors-origins ""`` makes the server answer every ``Origin`` with an empty
``Access-Control-Allow-Origin``, which matches no origin — a browser page cannot read a replica's
answers (llama.cpp's default reflects any origin).
"""

from __future__ import annotations

import os
import shutil
import sys

from zhisuan.engines.spec import DeviceAssignment, LaunchPlan, ModelSpec, ProfileError, visible_devices

ENGINE = "llama.cpp"
SECRET_ENV = "LLAMA_API_KEY"


def find_llama_server() -> str | None:
    return os.environ.get("ZHISUAN_LLAMA_SERVER") or shutil.which("llama-server")


def server_args(spec: ModelSpec, a: DeviceAssignment) -> list[str]:
    args = [
        "--model", spec.source,
        "--alias", spec.name,
        "--host", a.host,
        "--port", str(a.port),
        "--ctx-size", str(spec.context_length * a.parallel),
        "--parallel", str(a.parallel),
        "--cors-origins", "",
    ]
    if a.threads:
        args += ["--threads", str(a.threads)]
    if spec.embeddings:
        # A chat model's GGUF leaves pooling unset, which llama.cpp serves as "none" (one vector per
        # token) and its OpenAI /v1/embeddings refuses; mean pooling gives one vector per input.
        args += ["--embeddings", "--pooling", "mean"]
    return args + list(spec.extra_args)


def build(spec: ModelSpec, a: DeviceAssignment, *, binary: str | None = None, python: str | None = None,
          secret: str | None = None) -> LaunchPlan:
    """argv + env for one replica. ``binary``: a llama-server path; None → the xllamacpp host."""
    if a.stack.lower() not in ("cpu", "cuda"):
        raise ProfileError(f"the llama.cpp profile runs on cpu or CUDA, not {a.stack}")
    if not spec.source.endswith(".gguf"):
        raise ProfileError("llama.cpp serves GGUF files (source must end in .gguf)")
    args = server_args(spec, a)
    if a.stack.lower() == "cuda":
        # The assigned GPUs only, every layer on them.
        env = {**visible_devices(a, "CUDA_VISIBLE_DEVICES"), "LLAMA_ARG_NO_WEBUI": "1"}
        args += ["--n-gpu-layers", "999"]
    else:
        # No accelerator: hide any GPU from a llama.cpp build that could use one.
        env = {"CUDA_VISIBLE_DEVICES": "", "LLAMA_ARG_NO_WEBUI": "1"}
    launcher = [binary] if binary else [python or sys.executable, "-m", "zhisuan.engines.llamacpp_host"]
    argv = [*launcher, *args]
    return LaunchPlan(argv=tuple(argv), env=env, base_url=f"http://{a.host}:{a.port}", health_path="/health",
                      secret=secret, secret_env=SECRET_ENV if secret else None)
