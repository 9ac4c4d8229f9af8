"""MindIE Service profile (Huawei's inference server for CANN).

MindIE reads its whole configuration from one JSON file; the profile renders that file (written by
the supervisor before launch, pointed at by ``MIES_CONFIG_JSON_PATH``) and starts
``mindieservice_daemon``. Field names follow MindIE Service's ``conf/config.json``.
"""

from __future__ import annotations

import json

from zhisuan.engines.spec import DeviceAssignment, LaunchPlan, ModelSpec, ProfileError, visible_devices

ENGINE = "mindie"
DEFAULT_HOME = "/usr/local/Ascend/mindie/latest/mindie-service"


def config(spec: ModelSpec, a: DeviceAssignment) -> dict[str, object]:
    world = len(a.device_indices)
    return {
        "ServerConfig": {
            "ipAddress": a.host,
            "port": a.port,
            "managementIpAddress": a.host,
            "managementPort": a.port + 1,
            "metricsPort": a.port + 2,
            "httpsEnabled": False,
            "openAiSupport": "vllm",
        },
        "BackendConfig": {
            # Inside the process the visible chips are renumbered from 0.
            "npuDeviceIds": [list(range(world))],
            "ModelDeployConfig": {
                "maxSeqLen": spec.context_length,
                "maxInputTokenLen": spec.context_length,
                "ModelConfig": [{
                    "modelName": spec.name,
                    "modelWeightPath": spec.source,
                    "worldSize": world,
                    "backendType": "atb",
                }],
            },
            "ScheduleConfig": {"maxBatchSize": max(a.parallel, 1), "maxPrefillBatchSize": max(a.parallel, 1)},
        },
    }


def build(spec: ModelSpec, a: DeviceAssignment, *, home: str = DEFAULT_HOME, config_dir: str = "/tmp") -> LaunchPlan:
    if a.stack.upper() != "CANN":
        raise ProfileError(f"the MindIE profile runs on CANN, not {a.stack}")
    path = f"{config_dir}/mindie-{spec.name}-{a.port}.json"
    env = {**visible_devices(a, "ASCEND_RT_VISIBLE_DEVICES"), "MIES_INSTALL_PATH": home, "MIES_CONFIG_JSON_PATH": path}
    return LaunchPlan(
        argv=(f"{home}/bin/mindieservice_daemon",),
        env=env,
        base_url=f"http://{a.host}:{a.port}",
        health_path="/health",
        files={path: json.dumps(config(spec, a), indent=2, sort_keys=True)},
    )
