"""``KubernetesDriver``: the ``Driver`` interface over the Kubernetes API, through the official client.

Handles are ``<namespace>/<job name>`` (the job name is ``spec.key``). Calls:

- ``submit``: create the tenant's Namespace (409 = exists; 403 = no right to, assumed to exist — the
  Job's create then tells), the Job, then (gang) the headless Service with an ownerReference to the
  Job so deleting the Job collects it (pods may start before the Service: the rendezvous retries
  until the DNS name resolves, as torchrun does). Every create is sent with
  ``fieldValidation=Strict`` (an unknown field is an error, not silently dropped). A 409 on the Job
  means a previous submit of the same key got through: the same handle is returned and nothing new
  starts. 400/403/422 (invalid, forbidden, quota exceeded) → ``SubmitRejected`` with the API's words.
- ``poll``: per namespace, ONE Job list and ONE Pod list by label ``zhisuan.io/job-key in (…)``.
- ``logs``: ``read_namespaced_pod_log`` of the worker's pod with ``stream=Stdout|Stderr`` (the API's
  split streams, feature gate ``PodLogsQuerySplitStreams``, alpha in 1.32: on a cluster without it the
  API answers 4xx and stdout falls back to the interleaved log, stderr to nothing). The API has no byte
  offset: ``limitBytes = offset + limit`` is fetched and sliced here — each page re-reads the prefix, so
  paging a long log is quadratic in transfer. A page ends on a UTF-8 character boundary (limit ≥ 4).
- ``cancel``: ``DELETE`` the Job with ``propagationPolicy: Foreground`` (its pods and Service go first);
  an ended Job is left alone (the TTL collects it), 404 is a no-op. Once the API has forgotten a Job we
  deleted, poll says ``cancelled`` only while this driver object remembers the deletion (in memory);
  a fresh driver says ``lost`` — the control plane knows it cancelled.
- ``import_inventory``: list nodes, parsed against the catalog.

Connection refused, timeouts, 5xx, 429, 401, an RBAC 403 and any status a call does not expect →
``EngineUnavailable`` (nothing changed, retry later); only ``submit`` turns the API's refusal of the
objects themselves into ``SubmitRejected``.

Not tested against a live cluster here: the manifests are schema-validated (kubernetes-validate,
strict) and the call sequence runs against an in-process FAKE API server (tests/drivers/kubernetes).
"""

from __future__ import annotations

import contextlib
import json
from collections import defaultdict
from collections.abc import Callable, Sequence
from typing import Any, ClassVar, TypeVar

import urllib3
from kubernetes import client as k8s
from kubernetes.client.exceptions import ApiException

from zhisuan.catalog.loader import Catalog, default_catalog
from zhisuan.drivers.base import (
    STREAMS,
    EngineJobState,
    EngineUnavailable,
    ImportedNode,
    LaunchSpec,
    LogChunk,
    SubmitRejected,
)
from zhisuan.drivers.kubernetes.manifests import (
    CONTAINER_NAME,
    DEFAULT_TTL_AFTER_FINISHED_S,
    LABEL_JOB_KEY,
    ManifestError,
    build_manifests,
    owned_by,
)
from zhisuan.drivers.kubernetes.parse import completion_index, parse_job_state, parse_nodes

T = TypeVar("T")
REQUEST_TIMEOUT_S = 10.0
ENDED_PHASES = ("Succeeded", "Failed")


class KubernetesDriver:
    kind: ClassVar[str] = "kubernetes"

    def __init__(self, api_client: k8s.ApiClient | None = None, *, base_url: str | None = None,
                 token: str | None = None, namespace_prefix: str = "zs-", catalog: Catalog | None = None,
                 ttl_after_finished_s: int = DEFAULT_TTL_AFTER_FINISHED_S, verify_ssl: bool = True,
                 request_timeout_s: float = REQUEST_TIMEOUT_S) -> None:
        if api_client is None:
            if not base_url:
                raise ValueError("KubernetesDriver needs an api_client or a base_url")
            api_client = k8s.ApiClient(_configuration(base_url, token, verify_ssl))
        self.api_client = api_client
        self.core = k8s.CoreV1Api(api_client)
        self.batch = k8s.BatchV1Api(api_client)
        self.namespace_prefix = namespace_prefix
        self.catalog = catalog or default_catalog()
        self.ttl_after_finished_s = ttl_after_finished_s
        self.request_timeout_s = request_timeout_s
        self._deleted: set[str] = set()

    # ---- inventory -------------------------------------------------------------------------------
    def import_inventory(self) -> list[ImportedNode]:
        return parse_nodes(self._json(lambda: self.core.list_node(**self._raw())), self.catalog)

    # ---- submit ----------------------------------------------------------------------------------
    def submit(self, spec: LaunchSpec) -> str:
        try:
            objects = build_manifests(spec, namespace_prefix=self.namespace_prefix,
                                      ttl_after_finished_s=self.ttl_after_finished_s)
        except ManifestError as exc:
            raise SubmitRejected(str(exc)) from exc
        ns, name = _name(objects.namespace), spec.key
        with contextlib.suppress(ApiException):  # exists (409), or no right to (403): the Job's create will tell
            self._call(lambda: self.core.create_namespace(objects.namespace, field_validation="Strict",
                                                          **self._raw()), expected=frozenset({403, 409}))
        job = self._create(lambda: self.batch.create_namespaced_job(ns, objects.job, field_validation="Strict",
                                                                    **self._raw()))
        if job is None:  # 409: submitted before; the existing Job's uid owns the Service
            job = self._json(lambda: self.batch.read_namespaced_job(name, ns, **self._raw()))
        if objects.service is not None:
            service = owned_by(objects.service, name, str(job["metadata"]["uid"]))
            self._create(lambda: self.core.create_namespaced_service(ns, service, field_validation="Strict",
                                                                     **self._raw()))
        return f"{ns}/{name}"

    def _create(self, call: Callable[[], Any]) -> dict[str, Any] | None:
        """The created object, or None when it already exists (409). The API's refusals of the object
        itself (400 bad request, 403 quota or admission webhook, 404 no namespace, 422 invalid) are
        ``SubmitRejected``; a 403 for missing RBAC rights ("cannot create resource") is the operator's
        to fix, so ``EngineUnavailable``: the job stays queued."""
        try:
            return self._json(call, expected=frozenset({400, 403, 404, 409, 422}))
        except ApiException as exc:
            if exc.status == 409:
                return None
            if exc.status == 403 and "cannot create resource" in _api_words(exc):
                raise EngineUnavailable(_api_words(exc)) from exc
            raise SubmitRejected(_api_words(exc)) from exc

    # ---- poll ------------------------------------------------------------------------------------
    def poll(self, handles: Sequence[str]) -> dict[str, EngineJobState]:
        by_namespace: dict[str, list[str]] = defaultdict(list)
        out: dict[str, EngineJobState] = {}
        for handle in handles:
            parsed = _split(handle)
            if parsed is None:
                out[handle] = parse_job_state(None, [])
            else:
                by_namespace[parsed[0]].append(parsed[1])
        for ns, names in by_namespace.items():
            jobs, pods = self._jobs_and_pods(ns, names)
            by_name = {j["metadata"]["name"]: j for j in jobs}
            for name in names:
                handle = f"{ns}/{name}"
                mine = [p for p in pods if (p["metadata"].get("labels") or {}).get(LABEL_JOB_KEY) == name]
                out[handle] = parse_job_state(by_name.get(name), mine, deleted_by_us=handle in self._deleted)
        return out

    def _jobs_and_pods(self, ns: str, names: Sequence[str]) -> tuple[list[Any], list[Any]]:
        selector = f"{LABEL_JOB_KEY} in ({','.join(sorted(set(names)))})"
        jobs = self._json(lambda: self.batch.list_namespaced_job(ns, label_selector=selector, **self._raw()))
        pods = self._json(lambda: self.core.list_namespaced_pod(ns, label_selector=selector, **self._raw()))
        return list(jobs.get("items") or ()), list(pods.get("items") or ())

    # ---- logs ------------------------------------------------------------------------------------
    def logs(self, handle: str, rank: int, stream: str, offset: int = 0, limit: int = 65536) -> LogChunk:
        if stream not in STREAMS:
            raise ValueError(f"unknown stream {stream!r}; expected one of {STREAMS}")
        parsed = _split(handle)
        pod = self._worker_pod(parsed, rank) if parsed else None
        if parsed is None or pod is None:
            return LogChunk(data="", next_offset=offset, complete=parsed is None)
        ended = (pod.get("status") or {}).get("phase") in ENDED_PHASES
        if (pod.get("status") or {}).get("phase") == "Pending":
            return LogChunk(data="", next_offset=offset)
        data = self._read_log(parsed[0], pod["metadata"]["name"], stream, offset + limit)
        page = data[offset:offset + limit]
        if len(data) >= offset + limit:  # more may follow: end the page on a character boundary
            page = whole_characters(page)
        return LogChunk(data=page.decode("utf-8", errors="replace"), next_offset=offset + len(page),
                        complete=ended and len(data) < offset + limit)

    def _worker_pod(self, parsed: tuple[str, str], rank: int) -> dict[str, Any] | None:
        ns, name = parsed
        pods = self._json(lambda: self.core.list_namespaced_pod(
            ns, label_selector=f"{LABEL_JOB_KEY}={name}", **self._raw()))["items"]
        mine = [p for p in pods if completion_index(p) == rank]
        # a retried index leaves an older pod: the newest one is the worker's current life
        return max(mine, key=lambda p: p["metadata"].get("creationTimestamp") or "", default=None)

    def _read_log(self, ns: str, pod: str, stream: str, limit_bytes: int) -> bytes:
        def read(split: str | None) -> bytes:
            response: Any = self.core.read_namespaced_pod_log(pod, ns, container=CONTAINER_NAME, stream=split,
                                                              limit_bytes=limit_bytes, **self._raw())
            return bytes(response.data)  # the raw urllib3 response: bytes, not the client's str
        try:
            return self._call(lambda: read("Stdout" if stream == "stdout" else "Stderr"),
                              expected=frozenset({400, 404, 422}))
        except ApiException as exc:
            if exc.status == 404:  # the pod went away between the list and the read
                return b""
            # split streams not enabled on this cluster: stdout is the interleaved log, stderr nothing
            return self._call(lambda: read(None)) if stream == "stdout" else b""

    # ---- cancel ----------------------------------------------------------------------------------
    def cancel(self, handle: str) -> None:
        parsed = _split(handle)
        if parsed is None:
            return
        ns, name = parsed
        try:
            job = self._json(lambda: self.batch.read_namespaced_job(name, ns, **self._raw()),
                             expected=frozenset({404}))
            if parse_job_state(job, []).ended:
                return  # an ended Job is left for its TTL: deleting it would turn "succeeded" into "cancelled"
            self._call(lambda: self.batch.delete_namespaced_job(
                name, ns, propagation_policy="Foreground", **self._raw()), expected=frozenset({404}))
        except ApiException:  # 404: unknown or already gone
            return
        self._deleted.add(handle)

    # ---- plumbing --------------------------------------------------------------------------------
    def _json(self, call: Callable[[], Any], expected: frozenset[int] = frozenset()) -> dict[str, Any]:
        response = self._call(call, expected)
        try:
            return dict(json.loads(response.data or b"{}"))
        except ValueError as exc:  # a proxy's HTML error page, a truncated body
            raise EngineUnavailable(f"Kubernetes API answered something that is not JSON: {exc}") from exc

    def _call(self, call: Callable[[], T], expected: frozenset[int] = frozenset()) -> T:
        """Run one API call. An ``ApiException`` whose status the caller handles (``expected``) is
        re-raised; every other failure — refused, timed out, 5xx, 429, 401, an RBAC 403 — means "cannot
        use the engine now" and becomes ``EngineUnavailable``."""
        try:
            return call()
        except ApiException as exc:
            if exc.status in expected:
                raise
            raise EngineUnavailable(_api_words(exc)) from exc
        except (urllib3.exceptions.HTTPError, OSError) as exc:
            raise EngineUnavailable(f"Kubernetes API unreachable: {exc}") from exc

    def _raw(self) -> dict[str, Any]:
        """Keep the API's own JSON (parse.py reads it) and never wait long on a hung server."""
        return {"_preload_content": False, "_request_timeout": self.request_timeout_s}


def _configuration(base_url: str, token: str | None, verify_ssl: bool) -> k8s.Configuration:
    config = k8s.Configuration(host=base_url.rstrip("/"), retries=0)
    config.verify_ssl = verify_ssl
    if token:
        config.api_key = {"BearerToken": token}
        config.api_key_prefix = {"BearerToken": "Bearer"}
    return config


def whole_characters(page: bytes) -> bytes:
    """``page`` without a UTF-8 sequence cut at its end (so a page boundary never splits a character),
    unless that would leave nothing (a limit smaller than one character)."""
    for back in range(1, min(4, len(page)) + 1):
        byte = page[-back]
        if byte < 0x80:
            return page  # ASCII: nothing is cut
        if byte >= 0xC0:  # the lead byte: 110xxxxx needs 2 bytes, 1110xxxx 3, 11110xxx 4
            needed = 2 if byte < 0xE0 else 3 if byte < 0xF0 else 4
            return page if back >= needed or back == len(page) else page[:-back]
    return page


def _split(handle: str) -> tuple[str, str] | None:
    ns, sep, name = handle.partition("/")
    return (ns, name) if sep and ns and name else None


def _name(obj: Any) -> str:
    return str(obj.metadata.name)


def _api_words(exc: ApiException) -> str:
    """The API's message (a Status object's ``message``) or, failing that, the HTTP reason."""
    try:
        return f"{exc.status}: {json.loads(exc.body or '{}').get('message') or exc.reason}"
    except (ValueError, AttributeError):
        return f"{exc.status}: {exc.reason}"
