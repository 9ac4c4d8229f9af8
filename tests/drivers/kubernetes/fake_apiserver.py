"""A FAKE Kubernetes API server (in-process HTTP) with a FAKE kubelet — for tests only.

No kube-apiserver, kubelet, k3s or kind can run here, so the driver's call sequence is tested against
this stand-in. It implements just what the driver calls, with the real paths, verbs, status codes and
JSON shapes (409 AlreadyExists, 404 NotFound as ``Status`` objects; list responses with ``items``):

    GET  /api/v1/nodes
    POST /api/v1/namespaces                      GET /api/v1/namespaces/{ns}
    POST /api/v1/namespaces/{ns}/services        GET /api/v1/namespaces/{ns}/services/{name}
    POST /apis/batch/v1/namespaces/{ns}/jobs     GET (list, ?labelSelector=) …/jobs, GET/DELETE …/jobs/{name}
    GET  /api/v1/namespaces/{ns}/pods (?labelSelector=)   GET …/pods/{name}/log (?stream=&limitBytes=)

Every POSTed body is validated with ``kubernetes-validate`` (strict, ``VALIDATE_VERSION``): an invalid
one is answered 400 and kept in ``rejected`` so a test can assert the driver never sent one. ``calls``
records (method, path, query) of every request, in order; ``inject`` makes chosen requests fail.

The FAKE kubelet runs each Job's pods as local subprocesses (the image is ignored; ``command`` runs on
this host), with the pod's environment resolved (values and the completion-index ``fieldRef``, plus
``JOB_COMPLETION_INDEX``), and reflects pod phase, exit code, stdout/stderr and the Job's status and
conditions (Complete; Failed with BackoffLimitExceeded or DeadlineExceeded) back into the store. It does
NOT schedule (a pod goes to its nodeSelector node or the n-th node of its affinity list), pull images,
enforce resources or garbage-collect anything but a deleted Job's pods and owned Services.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import secrets
import shutil
import signal
import subprocess
import tempfile
import threading
import time
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import kubernetes_validate

VALIDATE_VERSION = "1.33"
INDEX_ANNOTATION = "batch.kubernetes.io/job-completion-index"
Obj = dict[str, Any]


def now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def status_body(code: int, reason: str, message: str) -> Obj:
    return {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
            "message": message, "reason": reason, "code": code}


def gpu_node(name: str, gpus: int, product: str = "NVIDIA-H100-80GB-HBM3", resource: str = "nvidia.com/gpu") -> Obj:
    """A Ready node with ``gpus`` devices of a device plugin, as the API would return it."""
    amounts = {"cpu": "64", "memory": "527958580Ki", "pods": "110", resource: str(gpus)}
    return {"metadata": {"name": name, "labels": {"kubernetes.io/hostname": name, "nvidia.com/gpu.product": product}},
            "spec": {}, "status": {"capacity": amounts, "allocatable": amounts,
                                   "conditions": [{"type": "Ready", "status": "True"}]}}


def matches(labels: dict[str, str], selector: str | None) -> bool:
    """Equality (``k=v``) and set (``k in (a,b)``) label selectors, comma-joined."""
    if not selector:
        return True
    for term in re.findall(r"[^,(]+(?:\([^)]*\))?", selector):
        term = term.strip()
        if m := re.fullmatch(r"(\S+)\s+in\s+\(([^)]*)\)", term):
            if labels.get(m[1]) not in {v.strip() for v in m[2].split(",")}:
                return False
        elif m := re.fullmatch(r"(\S+?)==?(\S*)", term):
            if labels.get(m[1]) != m[2]:
                return False
        elif term:
            raise ValueError(f"FAKE apiserver does not understand selector term {term!r}")
    return True


@dataclass
class RunningPod:
    process: subprocess.Popen[bytes]
    stdout: Path
    stderr: Path


@dataclass
class FakeApiServer:
    """FAKE: see the module docstring. ``with FakeApiServer(nodes) as api: api.url …``."""

    nodes: list[Obj]
    calls: list[tuple[str, str, dict[str, str]]] = field(default_factory=list)
    rejected: list[tuple[str, str]] = field(default_factory=list)
    accepted: list[Obj] = field(default_factory=list)
    store: dict[tuple[str, str, str], Obj] = field(default_factory=dict)  # (kind, namespace, name)
    lock: threading.RLock = field(default_factory=threading.RLock)
    faults: list[tuple[str, str, str | None, int, Any]] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.workdir = Path(tempfile.mkdtemp(prefix="fake-kubelet-"))
        self.running: dict[tuple[str, str], RunningPod] = {}
        self._stop = threading.Event()
        handler = type("Handler", (_Handler,), {"api": self})
        self.http = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.url = f"http://127.0.0.1:{self.http.server_address[1]}"

    def __enter__(self) -> FakeApiServer:
        threading.Thread(target=self.http.serve_forever, daemon=True).start()
        self.kubelet = threading.Thread(target=self._kubelet_loop, daemon=True)
        self.kubelet.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self.http.shutdown()
        self.http.server_close()
        with self.lock:
            for pod in self.running.values():
                _kill(pod.process)
                pod.process.wait()
        shutil.rmtree(self.workdir, ignore_errors=True)

    # ---- the API ---------------------------------------------------------------------------------
    def handle(self, method: str, path: str, query: dict[str, str], body: Obj | None) -> tuple[int, Any]:
        with self.lock:
            self.calls.append((method, path, query))
            for verb, pattern, with_param, code, payload in self.faults:
                if verb == method and re.fullmatch(pattern, path) and (with_param is None or with_param in query):
                    return code, payload
            for pattern, verb, action in ROUTES:
                m = re.fullmatch(pattern, path)
                if m and verb == method:
                    return action(self, *m.groups(), query=query, body=body)
        return 404, status_body(404, "NotFound", f"FAKE apiserver: no route {method} {path}")

    def inject(self, method: str, path_pattern: str, code: int, payload: Any, with_param: str | None = None) -> None:
        """Fault injection: answer matching requests (with query parameter ``with_param``, if given) with
        ``code``/``payload`` (bytes are sent as they are)."""
        self.faults.append((method, path_pattern, with_param, code, payload))

    def _create(self, kind: str, ns: str, body: Obj | None, query: dict[str, str]) -> tuple[int, Any]:
        assert body is not None
        try:
            kubernetes_validate.validate(body, VALIDATE_VERSION, strict=True)
        except Exception as exc:  # the library raises several kinds; all mean "invalid"
            self.rejected.append((kind, str(exc)))
            return 400, status_body(400, "BadRequest", f"{kind} is invalid: {exc}")
        self.accepted.append(json.loads(json.dumps(body)))  # as sent, before the server adds fields
        meta = body.setdefault("metadata", {})
        name = meta.get("name", "")
        if ns and ("Namespace", "", ns) not in self.store:
            return 404, status_body(404, "NotFound", f'namespaces "{ns}" not found')
        if meta.get("namespace", ns) != ns:
            return 400, status_body(400, "BadRequest", "the namespace of the object does not match the URL")
        if (kind, ns, name) in self.store:
            return 409, status_body(409, "AlreadyExists", f'{kind.lower()}s "{name}" already exists')
        meta.update(uid=str(uuid.uuid4()), creationTimestamp=now(), resourceVersion="1")
        if ns:
            meta["namespace"] = ns
        body.setdefault("status", {})
        self.store[(kind, ns, name)] = body
        return 201, body

    def _get(self, kind: str, ns: str, name: str) -> tuple[int, Any]:
        obj = self.store.get((kind, ns, name))
        if obj is None:
            return 404, status_body(404, "NotFound", f'{kind.lower()}s "{name}" not found')
        return 200, obj

    def _list(self, kind: str, ns: str | None, selector: str | None) -> tuple[int, Any]:
        items = [o for (k, n, _), o in sorted(self.store.items(), key=lambda kv: kv[0])
                 if k == kind and (ns is None or n == ns) and matches(o["metadata"].get("labels") or {}, selector)]
        return 200, {"kind": f"{kind}List", "apiVersion": "v1", "metadata": {"resourceVersion": "1"}, "items": items}

    def _delete_job(self, ns: str, name: str, query: dict[str, str], body: Obj | None) -> tuple[int, Any]:
        job = self.store.get(("Job", ns, name))
        if job is None:
            return 404, status_body(404, "NotFound", f'jobs.batch "{name}" not found')
        policy = query.get("propagationPolicy") or (body or {}).get("propagationPolicy") or "Background"
        job["metadata"].setdefault("deletionTimestamp", now())
        job["metadata"]["finalizers"] = ["foregroundDeletion"] if policy == "Foreground" else []
        for pod in self._pods_of(ns, name):
            pod["metadata"].setdefault("deletionTimestamp", now())
            if (ns, pod["metadata"]["name"]) in self.running:
                _kill(self.running[(ns, pod["metadata"]["name"])].process)
        return 200, job

    def _pod_log(self, ns: str, name: str, query: dict[str, str]) -> tuple[int, Any]:
        running = self.running.get((ns, name))
        if ("Pod", ns, name) not in self.store or running is None:
            return 404, status_body(404, "NotFound", f'pods "{name}" not found')
        stream = query.get("stream", "All")
        data = b""
        if stream in ("All", "Stdout"):
            data += running.stdout.read_bytes()
        if stream in ("All", "Stderr"):
            data += running.stderr.read_bytes()
        if "limitBytes" in query:
            data = data[: int(query["limitBytes"])]
        return 200, data

    # ---- the FAKE kubelet and job controller ------------------------------------------------------
    def _pods_of(self, ns: str, job: str) -> list[Obj]:
        return [o for (k, n, _), o in self.store.items()
                if k == "Pod" and n == ns and o["metadata"]["labels"].get("job-name") == job]

    def _kubelet_loop(self) -> None:
        while not self._stop.is_set():
            with self.lock:
                for (kind, ns, name), job in list(self.store.items()):
                    if kind == "Job":
                        self._sync_job(ns, name, job)
            time.sleep(0.05)

    def _sync_job(self, ns: str, name: str, job: Obj) -> None:
        status = job.setdefault("status", {})
        if "startTime" not in status and not job["metadata"].get("deletionTimestamp"):
            status["startTime"] = now()
            for index in range(job["spec"].get("completions", 1)):
                self._start_pod(ns, job, index)
        pods = self._pods_of(ns, name)
        for pod in pods:
            self._reap(ns, pod)
        phases = [p["status"]["phase"] for p in pods]
        status.update(active=sum(ph in ("Pending", "Running") for ph in phases),
                      ready=phases.count("Running"), succeeded=phases.count("Succeeded"),
                      failed=phases.count("Failed"))
        if job["metadata"].get("deletionTimestamp"):
            if not status["active"]:
                self._collect(ns, name, job)
            return
        if any(c["status"] == "True" for c in status.get("conditions", [])):
            return
        deadline = job["spec"].get("activeDeadlineSeconds")
        started = datetime.fromisoformat(status["startTime"].replace("Z", "+00:00"))
        if deadline and (datetime.now(UTC) - started).total_seconds() > deadline:
            self._finish(ns, job, pods, "Failed", "DeadlineExceeded", "Job was active longer than specified deadline")
        elif status["failed"] > job["spec"].get("backoffLimit", 6):
            self._finish(ns, job, pods, "Failed", "BackoffLimitExceeded", "Job has reached the specified backoff limit")
        elif status["succeeded"] == job["spec"].get("completions", 1):
            self._finish(ns, job, pods, "Complete", None, None)

    def _finish(self, ns: str, job: Obj, pods: list[Obj], kind: str, reason: str | None, message: str | None) -> None:
        for pod in pods:  # the job controller deletes the gang's other pods
            if (ns, pod["metadata"]["name"]) in self.running and pod["status"]["phase"] == "Running":
                pod["metadata"]["deletionTimestamp"] = now()
                _kill(self.running[(ns, pod["metadata"]["name"])].process)
        condition: Obj = {"type": kind, "status": "True", "lastProbeTime": now(), "lastTransitionTime": now()}
        if reason:
            condition.update(reason=reason, message=message)
        job["status"]["conditions"] = [condition]
        if kind == "Complete":
            job["status"]["completionTime"] = now()

    def _collect(self, ns: str, name: str, job: Obj) -> None:
        """Foreground deletion done: the Job, its pods and the Services it owns go away."""
        uid = job["metadata"]["uid"]
        for key, obj in list(self.store.items()):
            owned = any(ref.get("uid") == uid for ref in obj["metadata"].get("ownerReferences") or ())
            pod_of_job = key[0] == "Pod" and obj["metadata"]["labels"].get("job-name") == name
            if key[1] == ns and (owned or pod_of_job):
                del self.store[key]
        del self.store[("Job", ns, name)]

    def _start_pod(self, ns: str, job: Obj, index: int) -> None:
        template = json.loads(json.dumps(job["spec"]["template"]))
        indexed = job["spec"].get("completionMode") == "Indexed"
        name = f"{job['metadata']['name']}-{index}-{secrets.token_hex(3)}" if indexed \
            else f"{job['metadata']['name']}-{secrets.token_hex(3)}"
        labels = {**template["metadata"].get("labels", {}), "job-name": job["metadata"]["name"],
                  "batch.kubernetes.io/job-name": job["metadata"]["name"],
                  "batch.kubernetes.io/controller-uid": job["metadata"]["uid"]}
        annotations = {}
        if indexed:
            labels[INDEX_ANNOTATION] = annotations[INDEX_ANNOTATION] = str(index)
        spec = template["spec"]
        spec["nodeName"] = _fake_schedule(spec, index)
        pod = {"apiVersion": "v1", "kind": "Pod", "spec": spec,
               "metadata": {"name": name, "namespace": ns, "labels": labels, "annotations": annotations,
                            "uid": str(uuid.uuid4()), "creationTimestamp": now()},
               "status": {"phase": "Pending"}}
        self.store[("Pod", ns, name)] = pod
        container = spec["containers"][0]
        env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOSTNAME": f"{job['metadata']['name']}-{index}"}
        if indexed:
            env["JOB_COMPLETION_INDEX"] = str(index)
        for var in container.get("env", []):
            env[var["name"]] = var["value"] if "value" in var else _field_ref(pod, var["valueFrom"]["fieldRef"])
        out, err = self.workdir / f"{ns}-{name}.out", self.workdir / f"{ns}-{name}.err"
        with out.open("wb") as stdout, err.open("wb") as stderr:
            process = subprocess.Popen([*container.get("command", []), *container.get("args", [])], env=env,
                                       stdout=stdout, stderr=stderr, cwd=self.workdir, start_new_session=True)
        self.running[(ns, name)] = RunningPod(process, out, err)
        pod["status"] = {"phase": "Running", "startTime": now(), "containerStatuses": [
            {"name": container["name"], "ready": True, "restartCount": 0, "image": container["image"],
             "state": {"running": {"startedAt": now()}}}]}

    def _reap(self, ns: str, pod: Obj) -> None:
        running = self.running.get((ns, pod["metadata"]["name"]))
        if running is None or pod["status"]["phase"] != "Running" or running.process.poll() is None:
            return
        code = running.process.returncode
        code = 128 - code if code < 0 else code  # killed by a signal: the runtime reports 128 + signal
        started = pod["status"]["containerStatuses"][0]["state"]["running"]["startedAt"]
        pod["status"]["phase"] = "Succeeded" if code == 0 else "Failed"
        pod["status"]["containerStatuses"][0].update(ready=False, state={"terminated": {
            "exitCode": code, "reason": "Completed" if code == 0 else "Error", "startedAt": started,
            "finishedAt": now()}})


def _fake_schedule(spec: Obj, index: int) -> str:
    """FAKE scheduling: the nodeSelector's node, or the index-th node of the affinity's list."""
    if spec.get("nodeSelector"):
        return str(spec["nodeSelector"]["kubernetes.io/hostname"])
    terms = spec["affinity"]["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]["nodeSelectorTerms"]
    values = terms[0]["matchExpressions"][0]["values"]
    return str(values[index % len(values)])


def _field_ref(pod: Obj, ref: Obj) -> str:
    m = re.fullmatch(r"metadata\.annotations\['([^']+)'\]", ref["fieldPath"])
    if m:
        return str(pod["metadata"]["annotations"].get(m[1], ""))
    m = re.fullmatch(r"metadata\.labels\['([^']+)'\]", ref["fieldPath"])
    if m:
        return str(pod["metadata"]["labels"].get(m[1], ""))
    return str({"metadata.name": pod["metadata"]["name"], "metadata.namespace": pod["metadata"]["namespace"],
                "spec.nodeName": pod["spec"]["nodeName"]}[ref["fieldPath"]])


def _kill(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)


_NS = r"/api/v1/namespaces/([^/]+)"
_JOBS = r"/apis/batch/v1/namespaces/([^/]+)/jobs"
ROUTES: list[tuple[str, str, Any]] = [
    (r"/api/v1/nodes", "GET", lambda api, query, body: (200, {"kind": "NodeList", "apiVersion": "v1",
                                                               "metadata": {}, "items": api.nodes})),
    (r"/api/v1/namespaces", "POST", lambda api, query, body: api._create("Namespace", "", body, query)),
    (_NS, "GET", lambda api, ns, query, body: api._get("Namespace", "", ns)),
    (_NS + r"/services", "POST", lambda api, ns, query, body: api._create("Service", ns, body, query)),
    (_NS + r"/services/([^/]+)", "GET", lambda api, ns, name, query, body: api._get("Service", ns, name)),
    (_JOBS, "POST", lambda api, ns, query, body: api._create("Job", ns, body, query)),
    (_JOBS, "GET", lambda api, ns, query, body: api._list("Job", ns, query.get("labelSelector"))),
    (_JOBS + r"/([^/]+)", "GET", lambda api, ns, name, query, body: api._get("Job", ns, name)),
    (_JOBS + r"/([^/]+)", "DELETE", lambda api, ns, name, query, body: api._delete_job(ns, name, query, body)),
    (_NS + r"/pods", "GET", lambda api, ns, query, body: api._list("Pod", ns, query.get("labelSelector"))),
    (_NS + r"/pods/([^/]+)/log", "GET", lambda api, ns, name, query, body: api._pod_log(ns, name, query)),
]


class _Handler(BaseHTTPRequestHandler):
    api: FakeApiServer
    protocol_version = "HTTP/1.1"

    def _serve(self, method: str) -> None:
        url = urlsplit(self.path)
        query = {k: v[-1] for k, v in parse_qs(url.query).items()}
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        code, payload = self.api.handle(method, url.path, query, json.loads(raw) if raw else None)
        data = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
        self.send_response(code)
        self.send_header("Content-Type", "text/plain" if isinstance(payload, bytes) else "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
        self._serve("GET")

    def do_POST(self) -> None:  # noqa: N802
        self._serve("POST")

    def do_DELETE(self) -> None:  # noqa: N802
        self._serve("DELETE")

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 (keep test output quiet)
        pass
