"""The KubernetesDriver against the in-process FAKE API server (tests/drivers/kubernetes/fake_apiserver.py).

No real API server can run here: these tests check the driver's call sequence, idempotency, status
mapping and error handling against a FAKE that answers like the API (paths, 409/404 Status objects)
and a FAKE kubelet that runs the container command as a local process. They do not prove the driver
works on a live cluster. Every manifest the driver sends is validated strictly by the FAKE
(kubernetes-validate) and re-checked here.
"""

from __future__ import annotations

import socket
from collections.abc import Iterator, Sequence
from dataclasses import replace

import kubernetes_validate
import pytest

from tests.drivers.conformance import check_driver, unique_key, wait_for
from tests.drivers.kubernetes.fake_apiserver import FakeApiServer, gpu_node
from zhisuan.drivers.base import EngineUnavailable, LaunchSpec, LogChunk, SubmitRejected, WorkerAssignment
from zhisuan.drivers.kubernetes import KubernetesDriver

NODES = ("gpu-a", "gpu-b")
# The FAKE validates every manifest against the API schema in-process (kubernetes-validate, slow to
# load): beside the whole suite on a loaded 2-core machine one answer took over the driver's 10 s
# production timeout. The hung-server test below checks the timeout itself with its own short one.
FAKE_REQUEST_TIMEOUT_S = 60.0


def driver_of(fake_api: FakeApiServer, token: str | None = None) -> KubernetesDriver:
    return KubernetesDriver(base_url=fake_api.url, token=token, request_timeout_s=FAKE_REQUEST_TIMEOUT_S)


@pytest.fixture
def fake_api() -> Iterator[FakeApiServer]:
    with FakeApiServer(nodes=[gpu_node(name, 8) for name in NODES]) as api:
        yield api


def make_spec(key: str, command: Sequence[str], workers: int) -> LaunchSpec:
    placed = tuple(WorkerAssignment(rank=r, node=NODES[r % len(NODES)], device_indices=(0, 1), model="h100-sxm",
                                    visible_devices_env="CUDA_VISIBLE_DEVICES",
                                    device_plugin_resource="nvidia.com/gpu", cpu_milli=500, memory_mib=256)
                   for r in range(workers))
    return LaunchSpec(key=key, job_id=int(key.split("-")[1]), attempt=1, tenant="acme", command=tuple(command),
                      workers=placed, max_run_s=600, image="busybox:1.36")


def test_conformance_against_the_fake_apiserver(fake_api: FakeApiServer) -> None:
    driver = driver_of(fake_api, token="fake-token")
    check_driver(driver, make_spec, expect_nodes=2, expect_devices_per_node=8, gang_workers=2)
    assert fake_api.rejected == []
    kinds = {body["kind"] for body in fake_api.accepted}
    assert kinds == {"Namespace", "Job", "Service"}
    for body in fake_api.accepted:  # the FAKE validated them; say so again at the newest and oldest schema
        for version in ("1.25", "1.37"):
            kubernetes_validate.validate(body, version, strict=True)


def test_submit_call_sequence_and_idempotency(fake_api: FakeApiServer) -> None:
    driver = driver_of(fake_api)
    spec = make_spec(unique_key(), ["true"], 2)
    handle = driver.submit(spec)
    assert handle == f"zs-acme/{spec.key}"
    first = [(m, p) for m, p, _ in fake_api.calls]
    assert first == [("POST", "/api/v1/namespaces"), ("POST", "/apis/batch/v1/namespaces/zs-acme/jobs"),
                     ("POST", "/api/v1/namespaces/zs-acme/services")]
    assert all(q.get("fieldValidation") == "Strict" for _, _, q in fake_api.calls)
    fake_api.calls.clear()
    assert driver.submit(spec) == handle
    assert [(m, p) for m, p, _ in fake_api.calls] == [
        ("POST", "/api/v1/namespaces"), ("POST", "/apis/batch/v1/namespaces/zs-acme/jobs"),
        ("GET", f"/apis/batch/v1/namespaces/zs-acme/jobs/{spec.key}"),
        ("POST", "/api/v1/namespaces/zs-acme/services")]
    jobs = [o for (kind, _, _), o in fake_api.store.items() if kind == "Job"]
    assert len(jobs) == 1, "a second submit must start nothing new"
    service = fake_api.store[("Service", "zs-acme", spec.key)]
    assert service["metadata"]["ownerReferences"][0]["uid"] == jobs[0]["metadata"]["uid"]


def test_poll_is_one_job_list_and_one_pod_list_per_namespace(fake_api: FakeApiServer) -> None:
    driver = driver_of(fake_api)
    handles = [driver.submit(make_spec(unique_key(), ["true"], 1)) for _ in range(3)]
    other = driver.submit(replace(make_spec(unique_key(), ["true"], 1), tenant="beta"))
    fake_api.calls.clear()
    states = driver.poll([*handles, other, "not-a-handle"])
    assert set(states) == {*handles, other, "not-a-handle"}
    assert states["not-a-handle"].state == "lost"
    assert sorted((m, p) for m, p, _ in fake_api.calls) == [
        ("GET", "/api/v1/namespaces/zs-acme/pods"), ("GET", "/api/v1/namespaces/zs-beta/pods"),
        ("GET", "/apis/batch/v1/namespaces/zs-acme/jobs"), ("GET", "/apis/batch/v1/namespaces/zs-beta/jobs")]


def test_gang_failure_reports_the_failing_workers_exit_code(fake_api: FakeApiServer) -> None:
    driver = driver_of(fake_api)
    handle = driver.submit(make_spec(unique_key(), ["sh", "-c", 'if [ "$RANK" = 1 ]; then exit 7; fi; sleep 60'], 2))
    state = wait_for(driver, handle, {"failed", "succeeded", "lost"})
    assert (state.state, state.exit_code, state.platform_fault) == ("failed", 7, False)
    assert state.reason.startswith("BackoffLimitExceeded")


def test_deadline_exceeded_is_a_failure_with_that_reason(fake_api: FakeApiServer) -> None:
    driver = driver_of(fake_api)
    spec = replace(make_spec(unique_key(), ["sleep", "60"], 1), max_run_s=1)
    state = wait_for(driver, driver.submit(spec), {"failed", "succeeded", "lost"})
    assert state.state == "failed" and state.reason.startswith("DeadlineExceeded"), state


def test_cancel_of_an_ended_job_leaves_it_alone(fake_api: FakeApiServer) -> None:
    driver = driver_of(fake_api)
    handle = driver.submit(make_spec(unique_key(), ["true"], 1))
    wait_for(driver, handle, {"succeeded"})
    driver.cancel(handle)
    assert not any(m == "DELETE" for m, _, _ in fake_api.calls)
    assert driver.poll([handle])[handle].state == "succeeded"


def test_cancel_deletes_in_the_foreground(fake_api: FakeApiServer) -> None:
    driver = driver_of(fake_api)
    handle = driver.submit(make_spec(unique_key(), ["sleep", "60"], 1))
    wait_for(driver, handle, {"running"})
    driver.cancel(handle)
    deletes = [q for m, _, q in fake_api.calls if m == "DELETE"]
    assert deletes == [{"propagationPolicy": "Foreground"}]
    assert wait_for(driver, handle, {"cancelled", "lost"}).state == "cancelled"
    assert driver_of(fake_api).poll([handle])[handle].state == "lost", \
        "a driver that did not delete it cannot tell a cancelled Job from a lost one"


def test_manifest_errors_are_rejected_before_any_call(fake_api: FakeApiServer) -> None:
    driver = driver_of(fake_api)
    without_image = replace(make_spec(unique_key(), ["true"], 1), image=None)
    with pytest.raises(SubmitRejected, match="image"):
        driver.submit(without_image)
    assert fake_api.calls == []


def status(code: int, reason: str, message: str) -> dict[str, object]:
    return {"kind": "Status", "apiVersion": "v1", "status": "Failure", "code": code, "reason": reason,
            "message": message}


@pytest.mark.parametrize(("code", "message", "outcome"), [
    (403, 'jobs "x" is forbidden: exceeded quota: gpu-quota, requested: requests.nvidia.com/gpu=2', SubmitRejected),
    (403, 'admission webhook "policy.example" denied the request: images must come from registry.example',
     SubmitRejected),
    (422, 'Job.batch "x" is invalid: spec.template.spec.containers[0].image: Required value', SubmitRejected),
    (403, 'jobs.batch is forbidden: User "system:serviceaccount:zhisuan:driver" cannot create resource "jobs" '
          'in API group "batch" in the namespace "zs-acme"', EngineUnavailable),
    (500, "etcdserver: request timed out", EngineUnavailable),
    (429, "too many requests, please try again later", EngineUnavailable),
])
def test_the_apiservers_refusals(fake_api: FakeApiServer, code: int, message: str, outcome: type[Exception]) -> None:
    fake_api.inject("POST", r"/apis/batch/v1/namespaces/[^/]+/jobs", code, status(code, "Forbidden", message))
    with pytest.raises(outcome, match=message.split(":")[0][:20]):
        driver_of(fake_api).submit(make_spec(unique_key(), ["true"], 1))


def test_no_right_to_create_namespaces_is_fine_when_the_namespace_exists(fake_api: FakeApiServer) -> None:
    driver = driver_of(fake_api)
    driver.submit(make_spec(unique_key(), ["true"], 1))  # creates zs-acme
    fake_api.inject("POST", r"/api/v1/namespaces", 403, status(403, "Forbidden", "cannot create resource"))
    handle = driver.submit(make_spec(unique_key(), ["true"], 1))
    assert wait_for(driver, handle, {"succeeded", "failed"}).state == "succeeded"


@pytest.mark.parametrize(("code", "payload"), [
    (500, status(500, "InternalError", "etcd leader changed")), (503, b"<html>503 Service Unavailable</html>"),
    (401, status(401, "Unauthorized", "Unauthorized")), (403, status(403, "Forbidden", "cannot list resource")),
    (200, b"<html>a proxy's login page</html>"),
])
def test_poll_and_inventory_never_leak_api_errors(fake_api: FakeApiServer, code: int, payload: object) -> None:
    driver = driver_of(fake_api)
    fake_api.inject("GET", r".*", code, payload)
    with pytest.raises(EngineUnavailable):
        driver.poll(["zs-acme/zs-1-1"])
    with pytest.raises(EngineUnavailable):
        driver.import_inventory()


def test_a_hung_apiserver_is_engine_unavailable() -> None:
    with socket.socket() as listener:  # accepts connections, never answers
        listener.bind(("127.0.0.1", 0))
        listener.listen(8)
        driver = KubernetesDriver(base_url=f"http://127.0.0.1:{listener.getsockname()[1]}", request_timeout_s=0.3)
        with pytest.raises(EngineUnavailable):
            driver.poll(["zs-acme/zs-1-1"])


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.mark.parametrize("call", ["import_inventory", "submit", "poll", "logs", "cancel"])
def test_unreachable_apiserver_is_engine_unavailable(call: str) -> None:
    driver = KubernetesDriver(base_url=f"http://127.0.0.1:{_closed_port()}")
    actions = {
        "import_inventory": lambda: driver.import_inventory(),
        "submit": lambda: driver.submit(make_spec(unique_key(), ["true"], 2)),
        "poll": lambda: driver.poll(["zs-acme/zs-1-1"]),
        "logs": lambda: driver.logs("zs-acme/zs-1-1", 0, "stdout"),
        "cancel": lambda: driver.cancel("zs-acme/zs-1-1"),
    }
    with pytest.raises(EngineUnavailable):
        actions[call]()


def test_driver_needs_a_client_or_a_url() -> None:
    with pytest.raises(ValueError):
        KubernetesDriver()


def read_in_pages(driver: KubernetesDriver, handle: str, stream: str, limit: int) -> str:
    text, offset = "", 0
    while (chunk := driver.logs(handle, 0, stream, offset, limit)).next_offset != offset:
        text, offset = text + chunk.data, chunk.next_offset
    return text


def test_log_pages_chain_by_byte_offset_without_splitting_characters(fake_api: FakeApiServer) -> None:
    driver = driver_of(fake_api)
    handle = driver.submit(make_spec(unique_key(), ["sh", "-c", "printf 'héllo 世界 🚀 done'; printf 'ошибка' >&2"], 1))
    wait_for(driver, handle, {"succeeded"})
    for limit in (4, 5, 6, 7, 64):  # a limit under 4 bytes may have to cut a 4-byte character
        assert read_in_pages(driver, handle, "stdout", limit) == "héllo 世界 🚀 done", limit
        assert read_in_pages(driver, handle, "stderr", limit) == "ошибка", limit
    last = driver.logs(handle, 0, "stdout", 0, 1000)
    assert last.complete and last.next_offset == len("héllo 世界 🚀 done".encode())
    reads = [q for m, p, q in fake_api.calls if p.endswith("/log")]
    assert reads and all(q["limitBytes"] == str(int(q["limitBytes"])) for q in reads)


def test_without_split_log_streams_stdout_is_the_interleaved_log(fake_api: FakeApiServer) -> None:
    driver = driver_of(fake_api)
    handle = driver.submit(make_spec(unique_key(), ["sh", "-c", "echo out; echo err >&2"], 1))
    wait_for(driver, handle, {"succeeded"})
    fake_api.inject("GET", r".*/log", 400, status(400, "BadRequest", "stream: Forbidden: feature gate disabled"),
                    with_param="stream")
    assert read_in_pages(driver, handle, "stdout", 100) == "out\nerr\n"
    assert read_in_pages(driver, handle, "stderr", 100) == ""


def test_logs_of_unknown_handles_and_ranks_are_empty(fake_api: FakeApiServer) -> None:
    driver = driver_of(fake_api)
    assert driver.logs("nonsense", 0, "stdout") == LogChunk(data="", next_offset=0, complete=True)
    assert driver.logs("zs-acme/zs-404-1", 3, "stderr", 10).next_offset == 10
    with pytest.raises(ValueError):
        driver.logs("zs-acme/zs-404-1", 0, "stdin")
