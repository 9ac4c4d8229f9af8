"""Pure translate (``manifests.build_manifests``): golden files, strict schema validation, and the facts a
schema cannot check (enum values, quantity syntax, requests = limits, pinning, rendezvous).

Goldens: tests/drivers/kubernetes/golden/manifests/<case>.json. Regenerate after an intended change
with ``ZHISUAN_UPDATE_GOLDENS=1 pytest tests/drivers/kubernetes`` and review the diff.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from kubernetes.utils import parse_quantity

from zhisuan.drivers.base import LaunchSpec, WorkerAssignment
from zhisuan.drivers.kubernetes.manifests import ManifestError, as_json, build_manifests, namespace_for, owned_by

GOLDEN = Path(__file__).parent / "golden" / "manifests"
SCHEMA_VERSIONS = [f"1.{minor}" for minor in range(25, 38)]
NEWEST = "1.37"
DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
LABEL_VALUE = re.compile(r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$")


def worker(rank: int, node: str, devices: int = 0, vendor: str | None = None, cpu: int = 1000,
           memory: int = 1024) -> WorkerAssignment:
    resource = {"nvidia": "nvidia.com/gpu", "huawei": "huawei.com/Ascend910"}.get(vendor or "")
    env = {"nvidia": "CUDA_VISIBLE_DEVICES", "huawei": "ASCEND_RT_VISIBLE_DEVICES"}.get(vendor or "")
    return WorkerAssignment(rank=rank, node=node, device_indices=tuple(range(devices)), visible_devices_env=env,
                            device_plugin_resource=resource, cpu_milli=cpu, memory_mib=memory)


def spec(*workers: WorkerAssignment, **changes: Any) -> LaunchSpec:
    base: dict[str, Any] = dict(key="zs-42-1", job_id=42, attempt=1, tenant="acme", command=("python", "train.py"),
                                workers=workers, max_run_s=3600, image="registry.example/train:1")
    return LaunchSpec(**{**base, **changes})


CASES: dict[str, LaunchSpec] = {
    "cpu-1-worker": spec(worker(0, "cpu-01", cpu=2500, memory=4096), command=("sh", "-c", "echo hi"),
                         env={"EPOCHS": "3"}),
    "gpu-1-worker-1-gpu": spec(worker(0, "gpu-a", 1, "nvidia", cpu=8000, memory=65536), checkpoint_dir="/ckpt/42"),
    "gang-2x8-h100": spec(worker(0, "gpu-a", 8, "nvidia", 96000, 1048576), worker(1, "gpu-b", 8, "nvidia", 96000,
                                                                                      1048576),
                          key="zs-7-2", job_id=7, attempt=2, command=("torchrun", "--nnodes=2", "train.py")),
    "ascend-1-worker-8-npu": spec(worker(0, "npu-01", 8, "huawei", 64000, 524288), tenant="Zhi Lab",
                                  script="python -m mindspore_train\n", workdir="runs/a"),
    "gang-4-on-2-nodes": spec(*(worker(r, f"gpu-{r // 2}", 4, "nvidia") for r in range(4)), key="zs-9-1", job_id=9),
}


def rendered(case: LaunchSpec) -> list[Any]:
    m = build_manifests(case)
    service = owned_by(m.service, case.key, "00000000-0000-0000-0000-000000000001") if m.service else None
    return [as_json(o) for o in (m.namespace, m.job, service) if o is not None]


@pytest.mark.parametrize("name", sorted(CASES))
def test_manifests_match_golden(name: str) -> None:
    golden = GOLDEN / f"{name}.json"
    objects = rendered(CASES[name])
    if os.environ.get("ZHISUAN_UPDATE_GOLDENS"):
        golden.parent.mkdir(parents=True, exist_ok=True)
        golden.write_text(json.dumps(objects, indent=2, ensure_ascii=False) + "\n")
    assert objects == json.loads(golden.read_text())


@pytest.mark.parametrize("version", SCHEMA_VERSIONS)
def test_every_golden_validates_strictly_on_every_schema(version: str) -> None:
    for path in sorted(GOLDEN.glob("*.json")):
        for obj in json.loads(path.read_text()):
            kubernetes_validate.validate(obj, version, strict=True)


def test_strict_validation_does_fail_on_an_unknown_field() -> None:
    job = rendered(CASES["cpu-1-worker"])[1]
    job["spec"]["template"]["spec"]["containers"][0]["gpus"] = 1
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(job, NEWEST, strict=True)


def walk(obj: Any, path: str = "") -> Iterator[tuple[str, Any]]:
    if isinstance(obj, dict):
        for key, value in obj.items():
            yield from walk(value, f"{path}.{key}")
    elif isinstance(obj, list):
        for value in obj:
            yield from walk(value, f"{path}[]")
    else:
        yield path, obj


ENUMS = {  # what the API accepts, which the JSON schemas leave as free strings
    ".spec.completionMode": {"NonIndexed", "Indexed"},
    ".spec.template.spec.restartPolicy": {"Never", "OnFailure"},  # "Always" is refused for Jobs
    ".matchExpressions[].operator": {"In", "NotIn", "Exists", "DoesNotExist", "Gt", "Lt"},
    ".topologySpreadConstraints[].whenUnsatisfiable": {"DoNotSchedule", "ScheduleAnyway"},
    ".spec.ports[].protocol": {"TCP", "UDP", "SCTP"},
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_enum_values_quantities_and_names(name: str) -> None:
    case, objects = CASES[name], rendered(CASES[name])
    for obj in objects:
        for path, value in walk(obj):
            for suffix, allowed in ENUMS.items():
                if path.endswith(suffix):
                    assert value in allowed, (path, value)
        assert DNS_LABEL.match(obj["metadata"]["name"]) and len(obj["metadata"]["name"]) <= 63
        assert all(LABEL_VALUE.match(v) and len(v) <= 63 for v in obj["metadata"]["labels"].values())
    job = objects[1]
    resources = job["spec"]["template"]["spec"]["containers"][0]["resources"]
    assert resources["requests"] == resources["limits"], "Guaranteed QoS: requests = limits"
    first = case.workers[0]
    assert re.fullmatch(r"\d+m", resources["limits"]["cpu"]) and re.fullmatch(r"\d+Mi", resources["limits"]["memory"])
    assert parse_quantity(resources["limits"]["cpu"]) * 1000 == first.cpu_milli
    assert parse_quantity(resources["limits"]["memory"]) == first.memory_mib * 1024 * 1024
    if first.device_plugin_resource:
        assert resources["limits"][first.device_plugin_resource] == str(len(first.device_indices))
    assert job["spec"]["completions"] == job["spec"]["parallelism"] == len(case.workers)
    assert (job["spec"]["backoffLimit"], job["spec"]["activeDeadlineSeconds"]) == (0, case.max_run_s)


def env_of(case: LaunchSpec) -> dict[str, Any]:
    job = rendered(case)[1]
    container = job["spec"]["template"]["spec"]["containers"][0]
    return {e["name"]: e.get("value", e.get("valueFrom")) for e in container["env"]}


def test_gang_rendezvous_resolves_through_the_headless_service() -> None:
    case = CASES["gang-2x8-h100"]
    namespace, job, service = rendered(case)
    pod = job["spec"]["template"]["spec"]
    assert job["spec"]["completionMode"] == "Indexed"
    assert service["spec"]["clusterIP"] == "None" and service["spec"]["publishNotReadyAddresses"] is True
    assert pod["subdomain"] == service["metadata"]["name"] == case.key
    assert service["spec"]["selector"].items() <= job["spec"]["template"]["metadata"]["labels"].items()
    env = env_of(case)
    assert env["MASTER_ADDR"] == "zs-7-2-0.zs-7-2" and env["WORLD_SIZE"] == "2"
    index_ref = {"fieldRef": {"fieldPath": "metadata.annotations['batch.kubernetes.io/job-completion-index']"}}
    assert env["RANK"] == env["NODE_RANK"] == index_ref
    assert "CUDA_VISIBLE_DEVICES" not in env, "the device plugin sets it; host indices would be wrong in a pod"
    hosts = pod["affinity"]["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]["nodeSelectorTerms"]
    assert hosts[0]["matchExpressions"][0]["values"] == ["gpu-a", "gpu-b"]
    assert pod["affinity"]["podAntiAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"][0]["topologyKey"] \
        == "kubernetes.io/hostname"


def test_workers_sharing_nodes_are_spread_evenly_not_one_per_node() -> None:
    pod = rendered(CASES["gang-4-on-2-nodes"])[1]["spec"]["template"]["spec"]
    assert "podAntiAffinity" not in pod["affinity"]
    assert pod["topologySpreadConstraints"][0]["maxSkew"] == 1


def test_single_worker_is_pinned_by_node_selector_and_has_no_service() -> None:
    objects = rendered(CASES["gpu-1-worker-1-gpu"])
    assert len(objects) == 2
    pod = objects[1]["spec"]["template"]["spec"]
    assert pod["nodeSelector"] == {"kubernetes.io/hostname": "gpu-a"}
    assert objects[1]["spec"]["completionMode"] == "NonIndexed"
    assert env_of(CASES["gpu-1-worker-1-gpu"])["ZHISUAN_CHECKPOINT_DIR"] == "/ckpt/42"


def test_tenant_variables_cannot_override_the_platforms() -> None:
    env = env_of(spec(worker(0, "n"), env={"RANK": "9", "MASTER_ADDR": "evil", "MINE": "1"}))
    assert (env["RANK"], env["MASTER_ADDR"], env["MINE"]) == ("0", "127.0.0.1", "1")


def test_script_runs_with_sh() -> None:
    job = rendered(CASES["ascend-1-worker-8-npu"])[1]
    command = job["spec"]["template"]["spec"]["containers"][0]["command"]
    assert command == ["/bin/sh", "-c", "python -m mindspore_train\n"]


@pytest.mark.parametrize(("case", "words"), [
    (spec(worker(0, "n"), image=None), "image"),
    (spec(), "at least one worker"),
    (spec(worker(0, "a", 8, "nvidia"), worker(1, "b", 4, "nvidia")), "uniform"),
    (spec(WorkerAssignment(rank=0, node="n", device_indices=(0,), milli_per_device=500,
                           device_plugin_resource="nvidia.com/gpu")), "fractional"),
    (spec(WorkerAssignment(rank=0, node="n", device_indices=(0,))), "device-plugin resource"),
    (spec(worker(0, "n"), key="ZS_42"), "DNS label"),
    (spec(worker(0, "n"), max_run_s=0), "max_run_s"),
])
def test_refused_specs(case: LaunchSpec, words: str) -> None:
    with pytest.raises(ManifestError, match=words):
        build_manifests(case)


@given(st.text(min_size=1, max_size=80), st.text(min_size=1, max_size=80))
def test_namespaces_are_dns_labels_and_distinct_per_tenant(a: str, b: str) -> None:
    na, nb = namespace_for(a), namespace_for(b)
    assert DNS_LABEL.match(na) and len(na) <= 63
    assert (na == nb) == (a == b)




@settings(max_examples=40, deadline=None)
@given(workers=st.integers(1, 5), devices=st.integers(0, 8), vendor=st.sampled_from(["nvidia", "huawei", None]),
       cpu=st.integers(1, 256_000), memory=st.integers(1, 4_194_304), tenant=st.text(min_size=1, max_size=40),
       distinct_nodes=st.booleans(), max_run_s=st.integers(1, 10**7),
       env=st.dictionaries(st.from_regex(r"[A-Z_][A-Z0-9_]{0,20}", fullmatch=True), st.text(max_size=20),
                           max_size=4))
def test_any_valid_spec_gives_strictly_valid_manifests(workers: int, devices: int, vendor: str | None, cpu: int,
                                                       memory: int, tenant: str, distinct_nodes: bool,
                                                       max_run_s: int, env: dict[str, str]) -> None:
    placed = [worker(r, f"node-{r if distinct_nodes else r // 2}", devices if vendor else 0, vendor, cpu, memory)
              for r in range(workers)]
    case = spec(*placed, tenant=tenant, max_run_s=max_run_s, env=env)
    objects = rendered(case)
    for obj in objects:
        kubernetes_validate.validate(obj, NEWEST, strict=True)
    assert len(objects) == (3 if workers > 1 else 2)
    assert {e["name"] for e in objects[1]["spec"]["template"]["spec"]["containers"][0]["env"]} >= {
        "MASTER_ADDR", "MASTER_PORT", "WORLD_SIZE", "RANK", "NODE_RANK", *env}
