"""Pure translate: a placed ``LaunchSpec`` → the Kubernetes objects that run it (no I/O, no clock).

Objects are built with the official client's models (``kubernetes.client``), so a field the API does
not have cannot be spelt; ``as_json`` renders them the way the client sends them (camelCase).

What a spec becomes:

- a ``Namespace`` per tenant, ``<prefix><tenant>`` (``zs-acme``); a tenant name that is not a DNS label
  is lower-cased, stripped of other characters and suffixed with 6 hex digits of its SHA-256 so two
  tenants never share a namespace;
- one worker → a ``batch/v1`` Job (NonIndexed, completions = parallelism = 1), pinned to its placed
  node with ``nodeSelector: {kubernetes.io/hostname: <node>}``;
- a gang (n > 1 workers) → ONE *indexed* Job (``completionMode: Indexed``, completions = parallelism = n)
  plus a headless Service named like the Job (``clusterIP: None``, ``publishNotReadyAddresses`` so the
  names resolve before any pod is Ready). Indexed pods get hostname ``<key>-<index>`` and, with
  ``subdomain: <key>``, the DNS name ``<key>-<index>.<key>``: ``MASTER_ADDR = <key>-0.<key>``.
  ``RANK``/``NODE_RANK`` come from the completion-index annotation through the downward API.

Pinning a gang (the choice, and why): a Job has one pod template, so index *i* cannot be pinned to node
*i*. We keep one indexed Job (the Job controller then fails the whole gang on the first failed pod,
``backoffLimit: 0``, which is the gang semantics we want) and pin the *set*: a required node affinity
``kubernetes.io/hostname In [placed nodes]`` plus, when the placed nodes are distinct, a required pod
anti-affinity (one worker per node); when the placement puts several workers on one node, an even
``topologySpreadConstraint`` (maxSkew 1) over those nodes instead. Which index lands on which of the
placed nodes is the scheduler's choice. The alternative (one Job per worker, each with a nodeSelector)
pins exactly but loses the gang's all-or-nothing failure. A gang's workers must therefore be uniform
(same CPU, memory, device resource and count): the template is shared.

Devices: the device plugin picks which devices a container gets (``nvidia.com/gpu: 8``) and sets the
visible-devices variable itself, numbered from 0 inside the container; the placement's device indices
are therefore NOT passed (they would name host devices the container does not see). Whole devices only:
a fractional share (``milli_per_device < 1000``) needs a sharing plugin (HAMi) and is refused.

Refused (``ManifestError``, which the driver turns into ``SubmitRejected``): no ``image`` (a Kubernetes
pod cannot run without one), no workers, non-uniform gang, fractional devices, a key that is not a DNS
label. ``workdir`` and ``checkpoint_dir`` are passed as environment variables only: no tenant volume
is mounted by this driver (a cluster-specific choice left to the operator).
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from typing import Any

from kubernetes import client as k8s

from zhisuan.drivers.base import LaunchSpec, WorkerAssignment, rendezvous_env

LABEL_JOB_ID = "zhisuan.io/job-id"
LABEL_TENANT = "zhisuan.io/tenant"
LABEL_JOB_KEY = "zhisuan.io/job-key"
LABEL_ATTEMPT = "zhisuan.io/attempt"
HOSTNAME_LABEL = "kubernetes.io/hostname"
COMPLETION_INDEX_ANNOTATION = "batch.kubernetes.io/job-completion-index"
CONTAINER_NAME = "worker"
DEFAULT_TTL_AFTER_FINISHED_S = 86400  # long enough for the control plane to see the end, then GC'd
_DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")


class ManifestError(ValueError):
    """The spec cannot be expressed as Kubernetes objects (refused for good, never retried)."""


@dataclass(frozen=True)
class Manifests:
    """The objects for one spec, in creation order: namespace, then Job, then (gang only) Service."""

    namespace: k8s.V1Namespace
    job: k8s.V1Job
    service: k8s.V1Service | None


def namespace_for(tenant: str, prefix: str = "zs-") -> str:
    """``<prefix><tenant>`` as a DNS label (≤ 63 chars); a rewritten name gets a hash suffix."""
    clean = re.sub(r"[^a-z0-9-]+", "-", tenant.lower()).strip("-")
    if f"{prefix}{clean}" != f"{prefix}{tenant}" or len(prefix) + len(clean) > 63:
        suffix = hashlib.sha256(tenant.encode()).hexdigest()[:6]
        clean = f"{clean[: 63 - len(prefix) - 7]}-{suffix}".strip("-")
    name = f"{prefix}{clean}"
    if not _DNS_LABEL.match(name):
        raise ManifestError(f"namespace prefix {prefix!r} does not make a DNS label: {name!r}")
    return name


def label_value(text: str) -> str:
    """A label value (≤ 63 chars of ``[A-Za-z0-9._-]``, alphanumeric at both ends)."""
    return re.sub(r"[^A-Za-z0-9._-]+", "_", text)[:63].strip("._-")


def build_manifests(spec: LaunchSpec, *, namespace_prefix: str = "zs-",
                    ttl_after_finished_s: int = DEFAULT_TTL_AFTER_FINISHED_S) -> Manifests:
    """The Namespace, Job and (for a gang) headless Service that run ``spec``."""
    _check_spec(spec)
    namespace = namespace_for(spec.tenant, namespace_prefix)
    labels = {LABEL_JOB_ID: str(spec.job_id), LABEL_TENANT: label_value(spec.tenant),
              LABEL_JOB_KEY: spec.key, LABEL_ATTEMPT: str(spec.attempt)}
    gang = len(spec.workers) > 1
    pod = k8s.V1PodTemplateSpec(
        metadata=k8s.V1ObjectMeta(labels=dict(labels)),
        spec=_pod_spec(spec, labels, gang),
    )
    job = k8s.V1Job(
        api_version="batch/v1", kind="Job",
        metadata=k8s.V1ObjectMeta(name=spec.key, namespace=namespace, labels=dict(labels)),
        spec=k8s.V1JobSpec(
            completion_mode="Indexed" if gang else "NonIndexed",
            completions=len(spec.workers), parallelism=len(spec.workers),
            backoff_limit=0, active_deadline_seconds=spec.max_run_s,
            ttl_seconds_after_finished=ttl_after_finished_s, template=pod,
        ),
    )
    ns = k8s.V1Namespace(api_version="v1", kind="Namespace",
                         metadata=k8s.V1ObjectMeta(name=namespace, labels={LABEL_TENANT: label_value(spec.tenant)}))
    return Manifests(namespace=ns, job=job, service=_headless_service(spec, namespace, labels) if gang else None)


def _check_spec(spec: LaunchSpec) -> None:
    if not spec.image:
        raise ManifestError("Kubernetes needs a container image: the spec has none")
    if not spec.workers:
        raise ManifestError("a job needs at least one worker")
    if not _DNS_LABEL.match(spec.key) or len(spec.key) > 56:  # pod hostnames add "-<index>"
        raise ManifestError(f"job key {spec.key!r} is not a DNS label of at most 56 characters")
    if spec.max_run_s <= 0:
        raise ManifestError("max_run_s must be positive (it becomes activeDeadlineSeconds)")
    shapes = {_shape(w) for w in spec.workers}
    if len(shapes) > 1:
        raise ManifestError(f"a gang's workers must be uniform (one pod template): got {sorted(map(str, shapes))}")
    if any(w.device_indices and w.milli_per_device < 1000 for w in spec.workers):
        raise ManifestError("fractional devices need a sharing device plugin (e.g. HAMi); whole devices only")
    if any(w.device_indices and not w.device_plugin_resource for w in spec.workers):
        raise ManifestError("a worker with devices needs a device-plugin resource name (catalog k8s_resource)")


def _shape(worker: WorkerAssignment) -> tuple[int, int, str | None, int]:
    return (worker.cpu_milli, worker.memory_mib, worker.device_plugin_resource, len(worker.device_indices))


def _pod_spec(spec: LaunchSpec, labels: dict[str, str], gang: bool) -> k8s.V1PodSpec:
    worker = spec.workers[0]
    return k8s.V1PodSpec(
        restart_policy="Never",
        automount_service_account_token=False,  # tenant code gets no credentials for the API server
        enable_service_links=False,  # no environment variables for every Service in the namespace
        subdomain=spec.key if gang else None,
        node_selector=None if gang else {HOSTNAME_LABEL: worker.node},
        affinity=_gang_affinity(spec) if gang else None,
        topology_spread_constraints=_gang_spread(spec) if gang else None,
        containers=[k8s.V1Container(
            name=CONTAINER_NAME, image=spec.image,
            command=["/bin/sh", "-c", spec.script] if spec.script else list(spec.command),
            env=_env(spec, gang), resources=_resources(worker),
            ports=[k8s.V1ContainerPort(name="rendezvous", container_port=spec.rendezvous_port)] if gang else None,
        )],
    )


def _env(spec: LaunchSpec, gang: bool) -> list[k8s.V1EnvVar]:
    """Tenant variables first, then ours (later wins in Kubernetes, so ours cannot be overridden)."""
    master = f"{spec.key}-0.{spec.key}" if gang else "127.0.0.1"
    ours = rendezvous_env(spec, spec.workers[0], master)
    if spec.workdir:
        ours["ZHISUAN_WORKDIR"] = spec.workdir
    env = [k8s.V1EnvVar(name=k, value=v) for k, v in sorted(spec.env.items()) if k not in ours]
    for name, value in ours.items():
        if gang and name in ("RANK", "NODE_RANK"):
            path = f"metadata.annotations['{COMPLETION_INDEX_ANNOTATION}']"
            env.append(k8s.V1EnvVar(name=name, value_from=k8s.V1EnvVarSource(
                field_ref=k8s.V1ObjectFieldSelector(field_path=path))))
        else:
            env.append(k8s.V1EnvVar(name=name, value=value))
    return env


def _resources(worker: WorkerAssignment) -> k8s.V1ResourceRequirements:
    """requests = limits (Guaranteed QoS): ``cpu: <milli>m``, ``memory: <MiB>Mi``, ``<plugin>: <count>``."""
    amounts = {"cpu": f"{worker.cpu_milli}m", "memory": f"{worker.memory_mib}Mi"}
    if worker.device_indices and worker.device_plugin_resource:
        amounts[worker.device_plugin_resource] = str(len(worker.device_indices))
    return k8s.V1ResourceRequirements(requests=dict(amounts), limits=dict(amounts))


def _placed_nodes(spec: LaunchSpec) -> list[str]:
    return sorted({w.node for w in spec.workers})


def _gang_affinity(spec: LaunchSpec) -> k8s.V1Affinity:
    on_placed_nodes = k8s.V1NodeAffinity(
        required_during_scheduling_ignored_during_execution=k8s.V1NodeSelector(node_selector_terms=[
            k8s.V1NodeSelectorTerm(match_expressions=[
                k8s.V1NodeSelectorRequirement(key=HOSTNAME_LABEL, operator="In", values=_placed_nodes(spec))])]))
    anti = None
    if len(_placed_nodes(spec)) == len(spec.workers):
        anti = k8s.V1PodAntiAffinity(required_during_scheduling_ignored_during_execution=[k8s.V1PodAffinityTerm(
            topology_key=HOSTNAME_LABEL,
            label_selector=k8s.V1LabelSelector(match_labels={LABEL_JOB_KEY: spec.key}))])
    return k8s.V1Affinity(node_affinity=on_placed_nodes, pod_anti_affinity=anti)


def _gang_spread(spec: LaunchSpec) -> list[k8s.V1TopologySpreadConstraint] | None:
    if len(_placed_nodes(spec)) == len(spec.workers):
        return None  # the anti-affinity already puts one worker per node
    return [k8s.V1TopologySpreadConstraint(
        max_skew=1, topology_key=HOSTNAME_LABEL, when_unsatisfiable="DoNotSchedule",
        label_selector=k8s.V1LabelSelector(match_labels={LABEL_JOB_KEY: spec.key}))]


def _headless_service(spec: LaunchSpec, namespace: str, labels: dict[str, str]) -> k8s.V1Service:
    return k8s.V1Service(
        api_version="v1", kind="Service",
        metadata=k8s.V1ObjectMeta(name=spec.key, namespace=namespace, labels=dict(labels)),
        spec=k8s.V1ServiceSpec(
            cluster_ip="None", publish_not_ready_addresses=True, selector={LABEL_JOB_KEY: spec.key},
            ports=[k8s.V1ServicePort(name="rendezvous", port=spec.rendezvous_port,
                                     target_port=spec.rendezvous_port, protocol="TCP")],
        ),
    )


def owned_by(service: k8s.V1Service, job_name: str, job_uid: str) -> k8s.V1Service:
    """The Service with an ownerReference to its Job, so deleting the Job garbage-collects it."""
    meta = service.metadata
    assert meta is not None
    ref = k8s.V1OwnerReference(api_version="batch/v1", kind="Job", name=job_name, uid=job_uid,
                               controller=False, block_owner_deletion=True)
    return service.model_copy(update={"metadata": meta.model_copy(update={"owner_references": [ref]})})


def as_json(obj: Any) -> Any:
    """The object as the client sends it (camelCase keys, ``None`` fields left out)."""
    return k8s.ApiClient().sanitize_for_serialization(obj)
