"""Golden tests of the engine launch profiles: model spec + device assignment → argv + env."""

from __future__ import annotations

import json

import pytest

from zhisuan.engines import llamacpp, mindie, vllm, vllm_ascend
from zhisuan.engines.profiles import launch_plan
from zhisuan.engines.spec import DeviceAssignment, LaunchPlan, ModelSpec, ProfileError

GGUF = ModelSpec(name="smollm2", source="/models/smol.gguf", engine="llama.cpp", context_length=2048)
QWEN = ModelSpec(name="qwen2.5-72b", source="/models/Qwen2.5-72B-Instruct", engine="vllm", context_length=32768,
                 stacks=("CUDA", "CANN"))


def test_llamacpp_binary() -> None:
    plan = llamacpp.build(GGUF, DeviceAssignment(port=9100, threads=2, parallel=2), binary="/usr/bin/llama-server")
    assert plan.argv == ("/usr/bin/llama-server", "--model", "/models/smol.gguf", "--alias", "smollm2",
                         "--host", "127.0.0.1", "--port", "9100", "--ctx-size", "4096", "--parallel", "2",
                         "--cors-origins", "", "--threads", "2")
    assert plan.env == {"CUDA_VISIBLE_DEVICES": "", "LLAMA_ARG_NO_WEBUI": "1"}
    assert plan.base_url == "http://127.0.0.1:9100" and plan.health_path == "/health"


def test_llamacpp_without_binary_uses_the_xllamacpp_host() -> None:
    spec = ModelSpec(name="e", source="/m/e.gguf", engine="llama.cpp", embeddings=True)
    plan = llamacpp.build(spec, DeviceAssignment(port=9101, parallel=1), python="/venv/bin/python")
    assert plan.argv == ("/venv/bin/python", "-m", "zhisuan.engines.llamacpp_host", "--model", "/m/e.gguf",
                         "--alias", "e", "--host", "127.0.0.1", "--port", "9101", "--ctx-size", "4096",
                         "--parallel", "1", "--cors-origins", "", "--embeddings", "--pooling", "mean")


def test_llamacpp_refuses_other_accelerators_and_non_gguf() -> None:
    with pytest.raises(ProfileError, match="cpu or CUDA, not CANN"):
        llamacpp.build(GGUF, DeviceAssignment(port=1, stack="CANN", device_indices=(0,)))
    with pytest.raises(ProfileError, match="needs at least one device"):
        llamacpp.build(GGUF, DeviceAssignment(port=1, stack="CUDA"))
    with pytest.raises(ProfileError):
        llamacpp.build(QWEN, DeviceAssignment(port=1))


def test_llamacpp_on_nvidia_offloads_every_layer_to_the_assigned_gpus_only() -> None:
    a = DeviceAssignment(port=9102, stack="CUDA", device_indices=(2, 5), visible_devices_env="CUDA_VISIBLE_DEVICES",
                         parallel=4)
    plan = llamacpp.build(GGUF, a, binary="/opt/llama-cuda/llama-server", secret="k")
    assert plan.argv == ("/opt/llama-cuda/llama-server", "--model", "/models/smol.gguf", "--alias", "smollm2",
                         "--host", "127.0.0.1", "--port", "9102", "--ctx-size", "8192", "--parallel", "4",
                         "--cors-origins", "", "--n-gpu-layers", "999")
    assert plan.env == {"CUDA_VISIBLE_DEVICES": "2,5", "LLAMA_ARG_NO_WEBUI": "1"}
    assert plan.environment()["LLAMA_API_KEY"] == "k"
    on_cpu = llamacpp.build(GGUF, DeviceAssignment(port=9103), binary="/opt/llama-cuda/llama-server")
    assert on_cpu.env["CUDA_VISIBLE_DEVICES"] == "" and "--n-gpu-layers" not in on_cpu.argv
    both = ModelSpec(name="smollm2", source="/models/smol.gguf", engine="llama.cpp", stacks=("cpu", "CUDA"))
    assert launch_plan(both, a).env["CUDA_VISIBLE_DEVICES"] == "2,5"


def test_vllm_tensor_parallel_over_assigned_gpus() -> None:
    a = DeviceAssignment(port=9200, stack="CUDA", device_indices=(2, 3, 6, 7),
                         visible_devices_env="CUDA_VISIBLE_DEVICES", parallel=64)
    plan = vllm.build(QWEN, a, python="/venv/bin/python")
    assert plan.argv == ("/venv/bin/python", "-m", "vllm.entrypoints.openai.api_server",
                         "--model", "/models/Qwen2.5-72B-Instruct", "--served-model-name", "qwen2.5-72b",
                         "--host", "127.0.0.1", "--port", "9200", "--max-model-len", "32768",
                         "--tensor-parallel-size", "4", "--max-num-seqs", "64", "--disable-log-requests",
                         "--allowed-origins", "[]")
    assert plan.env == {"CUDA_VISIBLE_DEVICES": "2,3,6,7", "VLLM_NO_USAGE_STATS": "1"}


def test_vllm_ascend_uses_the_ascend_visible_devices_variable() -> None:
    a = DeviceAssignment(port=9300, stack="CANN", device_indices=(0, 1),
                         visible_devices_env="ASCEND_RT_VISIBLE_DEVICES")
    plan = vllm_ascend.build(QWEN, a, python="python3")
    assert plan.argv[:3] == ("python3", "-m", "vllm.entrypoints.openai.api_server")
    assert "--tensor-parallel-size" in plan.argv and plan.argv[plan.argv.index("--tensor-parallel-size") + 1] == "2"
    assert plan.env == {"ASCEND_RT_VISIBLE_DEVICES": "0,1", "VLLM_NO_USAGE_STATS": "1", "VLLM_TARGET_DEVICE": "npu",
                        "VLLM_WORKER_MULTIPROC_METHOD": "spawn"}


def test_mindie_renders_its_config_file() -> None:
    spec = ModelSpec(name="qwen", source="/w/qwen", engine="mindie", context_length=8192, stacks=("CANN",))
    a = DeviceAssignment(port=1025, stack="CANN", device_indices=(4, 5, 6, 7), parallel=16)
    plan = mindie.build(spec, a, config_dir="/run/zs")
    assert plan.argv == ("/usr/local/Ascend/mindie/latest/mindie-service/bin/mindieservice_daemon",)
    assert plan.env == {"ASCEND_RT_VISIBLE_DEVICES": "4,5,6,7",
                        "MIES_INSTALL_PATH": "/usr/local/Ascend/mindie/latest/mindie-service",
                        "MIES_CONFIG_JSON_PATH": "/run/zs/mindie-qwen-1025.json"}
    cfg = json.loads(plan.files["/run/zs/mindie-qwen-1025.json"])
    assert cfg["ServerConfig"]["port"] == 1025
    assert cfg["BackendConfig"]["npuDeviceIds"] == [[0, 1, 2, 3]]
    model = cfg["BackendConfig"]["ModelDeployConfig"]["ModelConfig"][0]
    assert (model["modelName"], model["modelWeightPath"], model["worldSize"]) == ("qwen", "/w/qwen", 4)


def test_accelerator_profiles_need_devices() -> None:
    with pytest.raises(ProfileError):
        vllm.build(QWEN, DeviceAssignment(port=1, stack="CUDA"))


def test_launch_plan_checks_the_models_stacks() -> None:
    with pytest.raises(ProfileError, match="does not run on CANN"):
        launch_plan(GGUF, DeviceAssignment(port=1, stack="CANN", device_indices=(0,)))
    with pytest.raises(ProfileError, match="unknown engine"):
        launch_plan(ModelSpec(name="x", source="/x", engine="tgi"), DeviceAssignment(port=1))
    plan = launch_plan(QWEN, DeviceAssignment(port=5, stack="CUDA", device_indices=(0,)))
    assert plan.env["CUDA_VISIBLE_DEVICES"] == "0"


SECRET = "s3cret-Zq9"


@pytest.mark.parametrize(("plan", "variable"), [
    (llamacpp.build(GGUF, DeviceAssignment(port=9100), binary="/usr/bin/llama-server", secret=SECRET), "LLAMA_API_KEY"),
    (llamacpp.build(GGUF, DeviceAssignment(port=9100), python="python3", secret=SECRET), "LLAMA_API_KEY"),
    (vllm.build(QWEN, DeviceAssignment(port=9200, stack="CUDA", device_indices=(0,)), secret=SECRET), "VLLM_API_KEY"),
    (vllm_ascend.build(QWEN, DeviceAssignment(port=9300, stack="CANN", device_indices=(0,)), secret=SECRET),
     "VLLM_API_KEY"),
])
def test_the_replica_secret_reaches_the_engine_through_its_environment_only(plan: LaunchPlan, variable: str) -> None:
    # The engine demands the key (llama-server and vLLM read --api-key from these variables) …
    assert plan.environment()[variable] == SECRET and plan.secret == SECRET and plan.secret_env == variable
    # … and it is nowhere ps shows, nor in the plan's repr (which may end up in a log).
    assert not any(SECRET in arg for arg in plan.argv)
    assert SECRET not in repr(plan)


def test_engines_allow_no_cross_origin_callers() -> None:
    for plan in (llamacpp.build(GGUF, DeviceAssignment(port=1), binary="llama-server"),
                 llamacpp.build(GGUF, DeviceAssignment(port=1), python="python3")):
        assert plan.argv[plan.argv.index("--cors-origins") + 1] == ""
    plan = vllm.build(QWEN, DeviceAssignment(port=1, stack="CUDA", device_indices=(0,)))
    assert plan.argv[plan.argv.index("--allowed-origins") + 1] == "[]"


def test_launch_plan_passes_the_secret_to_every_engine_that_takes_one() -> None:
    cuda = DeviceAssignment(port=5, stack="CUDA", device_indices=(0,))
    assert launch_plan(QWEN, cuda, secret=SECRET).environment()["VLLM_API_KEY"] == SECRET
    assert launch_plan(GGUF, DeviceAssignment(port=5), secret=SECRET).environment()["LLAMA_API_KEY"] == SECRET
    assert "LLAMA_API_KEY" not in launch_plan(GGUF, DeviceAssignment(port=5)).environment()
