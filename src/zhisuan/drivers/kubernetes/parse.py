"""Pure parse: Kubernetes API JSON (as the API server returns it) → the driver interface's values.

``parse_nodes``: a NodeList → ``ImportedNode``s. CPU and memory are the node's *allocatable* (what pods
may request; capacity minus system reservations). Devices are the allocatable count of each known
device-plugin resource (the catalog's ``k8s_resource`` names: ``nvidia.com/gpu``,
``huawei.com/Ascend910`` …), indexed 0..n-1 (the plugin, not us, picks which one a pod gets). The model
is resolved through the catalog from a product label — NVIDIA GPU feature discovery's
``nvidia.com/gpu.product`` (``NVIDIA-H100-80GB-HBM3``) or the first of ``PRODUCT_LABELS`` present —
and falls back to the resource name when the catalog cannot resolve it. State: ``down`` unless the
``Ready`` condition is ``True``; ``drained`` when ``spec.unschedulable`` or a ``NoSchedule`` /
``NoExecute`` taint is set (a cordoned or tainted node takes no new work).

``parse_job_state``: a Job (or ``None`` when the API no longer has it) and its pods → ``EngineJobState``:

- no Job → ``cancelled`` if this driver deleted it, else ``lost``;
- ``metadata.deletionTimestamp`` set → ``cancelled`` once no pod is active (``running`` until then);
- condition ``Complete=True`` → ``succeeded``;
- condition ``Failed=True`` → ``failed`` with the condition's reason (``DeadlineExceeded``,
  ``BackoffLimitExceeded`` …); the exit code is the first non-zero ``terminated.exitCode`` of the
  pods by completion index; ``platform_fault`` when a pod was evicted, lost its node or carries a
  ``DisruptionTarget`` condition (preempted, node drained, taint manager) — the tenant did not cause it;
- ``spec.suspend`` or no running pod → ``pending``; otherwise ``running``.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime
from typing import Any

from kubernetes.utils import parse_quantity

from zhisuan.catalog.loader import Catalog
from zhisuan.catalog.models import AcceleratorModel
from zhisuan.drivers.base import EngineJobState, ImportedDevice, ImportedNode
from zhisuan.drivers.kubernetes.manifests import COMPLETION_INDEX_ANNOTATION

PRODUCT_LABELS = (
    "nvidia.com/gpu.product",  # NVIDIA GPU feature discovery
    "node.kubernetes.io/npu.chip.name",  # Ascend NodeD / device plugin
    "accelerator",  # a common hand-set label (e.g. huawei-Ascend910)
)
MEMORY_LABELS = ("nvidia.com/gpu.memory",)  # MiB per device, from GPU feature discovery
PLATFORM_POD_REASONS = frozenset({"Evicted", "NodeLost", "Preempting", "NodeShutdown", "Terminated",
                                  "UnexpectedAdmissionError"})
Json = Mapping[str, Any]


def parse_nodes(node_list: Json, catalog: Catalog) -> list[ImportedNode]:
    """Every node of a ``NodeList`` response, sorted by name."""
    resources = {m.k8s_resource for m in catalog.all() if m.k8s_resource}
    return sorted((parse_node(node, catalog, resources) for node in node_list.get("items") or ()),
                  key=lambda n: n.name)


def parse_node(node: Json, catalog: Catalog, device_resources: Iterable[str]) -> ImportedNode:
    meta, status = node.get("metadata") or {}, node.get("status") or {}
    labels: dict[str, str] = dict(meta.get("labels") or {})
    amounts = status.get("allocatable") or status.get("capacity") or {}
    devices: list[ImportedDevice] = []
    for resource in sorted(set(device_resources) & set(amounts)):
        count = int(parse_quantity(amounts[resource]))
        model_key, memory_mib = _device_model(resource, labels, catalog)
        first = len(devices)
        devices.extend(ImportedDevice(index=first + i, model=model_key, memory_mib=memory_mib) for i in range(count))
    return ImportedNode(
        name=str(meta.get("name", "")),
        cpu_cores=int(parse_quantity(amounts.get("cpu", "0"))),
        memory_mib=int(parse_quantity(amounts.get("memory", "0")) / (1024 * 1024)),
        devices=tuple(devices), labels=labels, state=_node_state(node),
    )


def _device_model(resource: str, labels: Mapping[str, str], catalog: Catalog) -> tuple[str, int]:
    """(catalog key or the engine's own name, MiB per device) for a device-plugin resource."""
    model: AcceleratorModel | None = None
    for label in PRODUCT_LABELS:
        if labels.get(label):
            model = catalog.resolve(labels[label])
            if model is not None and model.k8s_resource == resource:
                break
            model = None
    label_mib = next((int(labels[lb]) for lb in MEMORY_LABELS if labels.get(lb, "").isdigit()), 0)
    if model is None:
        return resource, label_mib
    # usable MiB per device when a tool's figure is recorded (GDDR/LPDDR cards show less than nominal)
    per_device = model.per_device_memory_mib()
    return model.key, per_device if per_device is not None else label_mib


def _node_state(node: Json) -> str:
    status, spec = node.get("status") or {}, node.get("spec") or {}
    ready = any(c.get("type") == "Ready" and c.get("status") == "True" for c in status.get("conditions") or ())
    if not ready:
        return "down"
    blocking = [t for t in spec.get("taints") or () if t.get("effect") in ("NoSchedule", "NoExecute")]
    return "drained" if spec.get("unschedulable") or blocking else "ready"


def parse_job_state(job: Json | None, pods: Sequence[Json], *, deleted_by_us: bool = False) -> EngineJobState:
    """The engine's view of one Job from the Job object and its pods (see the module docstring)."""
    if job is None:
        if deleted_by_us:
            return EngineJobState(state="cancelled", reason="deleted by zhisuan")
        return EngineJobState(state="lost", reason="the API server has no such Job")
    meta, spec, status = job.get("metadata") or {}, job.get("spec") or {}, job.get("status") or {}
    started, ended = _started_at(status, pods), _ended_at(status)
    conditions = {c.get("type"): c for c in status.get("conditions") or () if c.get("status") == "True"}
    if "Complete" in conditions:
        return EngineJobState(state="succeeded", exit_code=0, started_at=started, ended_at=ended)
    if "Failed" in conditions:
        failed = conditions["Failed"]
        fault, why = _platform_fault(pods)
        reason = failed.get("reason") or "Failed"
        detail = failed.get("message") or ""
        return EngineJobState(
            state="failed", reason=f"{reason}: {why or detail}".rstrip(": "), exit_code=_exit_code(pods),
            started_at=started, ended_at=ended or _parse_time(failed.get("lastTransitionTime")),
            platform_fault=fault,
        )
    if meta.get("deletionTimestamp"):
        if any(_pod_active(p) for p in pods):
            return EngineJobState(state="running", reason="cancelling: pods are terminating", started_at=started)
        return EngineJobState(state="cancelled", reason="deleted", started_at=started,
                              ended_at=_parse_time(meta.get("deletionTimestamp")))
    if spec.get("suspend"):
        return EngineJobState(state="pending", reason="Job is suspended")
    if any((p.get("status") or {}).get("phase") == "Running" for p in pods) or status.get("ready"):
        return EngineJobState(state="running", started_at=started)
    return EngineJobState(state="pending", reason=_pending_reason(pods))


def _pod_active(pod: Json) -> bool:
    return (pod.get("status") or {}).get("phase") in ("Pending", "Running", None)


def completion_index(pod: Json) -> int:
    """The pod's rank: its completion-index annotation (0 for a NonIndexed Job's single pod)."""
    value = ((pod.get("metadata") or {}).get("annotations") or {}).get(COMPLETION_INDEX_ANNOTATION, "0")
    return int(value) if str(value).isdigit() else 0


def _terminated(pod: Json) -> Json | None:
    for cs in (pod.get("status") or {}).get("containerStatuses") or ():
        state = cs.get("state") or {}
        if state.get("terminated"):
            return dict(state["terminated"])
    return None


def _exit_code(pods: Sequence[Json]) -> int | None:
    """The first non-zero exit code by completion index, preferring pods that failed on their own: when
    one worker fails the Job controller deletes the others (``deletionTimestamp``), killed with 137/143."""
    def order(pod: Json) -> tuple[bool, int]:
        return (bool((pod.get("metadata") or {}).get("deletionTimestamp")), completion_index(pod))
    for pod in sorted(pods, key=order):
        code = (_terminated(pod) or {}).get("exitCode")
        if isinstance(code, int) and code != 0:
            return code
    return None


def _platform_fault(pods: Sequence[Json]) -> tuple[bool, str]:
    """(True, why) when a pod ended for a reason the tenant did not cause."""
    for pod in sorted(pods, key=completion_index):
        status = pod.get("status") or {}
        if status.get("reason") in PLATFORM_POD_REASONS:
            return True, f"pod {completion_index(pod)} {status['reason']}: {status.get('message', '')}".rstrip(": ")
        for cond in status.get("conditions") or ():
            if cond.get("type") == "DisruptionTarget" and cond.get("status") == "True":
                return True, f"pod {completion_index(pod)} disrupted ({cond.get('reason', '')})"
    return False, ""


def _pending_reason(pods: Sequence[Json]) -> str:
    """Why nothing runs yet: the scheduler's or kubelet's own words (Unschedulable, ImagePullBackOff …)."""
    for pod in pods:
        status = pod.get("status") or {}
        for cond in status.get("conditions") or ():
            if cond.get("type") == "PodScheduled" and cond.get("status") == "False":
                return f"{cond.get('reason', '')}: {cond.get('message', '')}".strip(": ")
        for cs in status.get("containerStatuses") or ():
            waiting = (cs.get("state") or {}).get("waiting")
            if waiting and waiting.get("reason"):
                return f"{waiting['reason']}: {waiting.get('message', '')}".strip(": ")
    return "waiting for pods"


def _started_at(status: Json, pods: Sequence[Json]) -> datetime | None:
    """When the first worker's container started (else when the Job controller started the Job)."""
    starts = []
    for pod in pods:
        for cs in (pod.get("status") or {}).get("containerStatuses") or ():
            state = cs.get("state") or {}
            when = (state.get("running") or state.get("terminated") or {}).get("startedAt")
            if when:
                starts.append(_parse_time(when))
    found = [s for s in starts if s is not None]
    return min(found) if found else _parse_time(status.get("startTime"))


def _ended_at(status: Json) -> datetime | None:
    return _parse_time(status.get("completionTime"))


def _parse_time(value: Any) -> datetime | None:
    """RFC 3339 as the API writes it (``2026-12-01T10:00:00Z``) → UTC-aware datetime."""
    if not value:
        return None
    return datetime.fromisoformat(str(value).replace("Z", "+00:00"))
