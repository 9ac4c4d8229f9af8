"""Scale from zero at the gateway: a request for a registered model with no replica gets 503 with
Retry-After at once, and the gateway reports it (model, caller's tenant, how many) with its next
discovery poll, so the control plane's autoscaler starts a replica (tests/api/test_deployment_scaling.py
covers that side). The control plane is a function here, as in test_discovery."""

from __future__ import annotations

import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
import pytest

from tests.gateway.recording_upstream import RecordingUpstream
from tests.gateway.test_discovery import ALICE, BOB, ControlPlane, chat
from tests.gateway.test_visibility import KEYS
from zhisuan.gateway.discovery import ReplicaDiscovery


class DemandSink:
    """What POST /serving/demand would receive: demand reports and load reports, apart."""

    def __init__(self) -> None:
        self.reports: list[list[dict[str, Any]]] = []
        self.loads: list[dict[str, Any]] = []
        self.down = False

    async def __call__(self, wanted: list[dict[str, Any]], load: dict[str, Any] | None) -> None:
        if self.down:
            raise httpx.ConnectError("control plane down")
        if wanted:
            self.reports.append(wanted)
        if load is not None:
            self.loads.append(load)


def test_requests_that_find_no_replica_are_reported_once_each(gateway: Any) -> None:
    plane, sink = ControlPlane(), DemandSink()
    server = gateway({}, KEYS)
    discovery = ReplicaDiscovery(server.router, plane.fetch, demand=sink)

    def poll() -> None:
        server.loop_thread.run(discovery.poll_once())

    plane.models = ["m"]
    poll()
    answers = [chat(server), chat(server), chat(server, token=BOB), chat(server, "never-was")]
    assert [a.status_code for a in answers] == [503, 503, 503, 404]
    assert answers[0].headers["retry-after"]  # not held: the client retries when a replica may be up
    poll()
    assert sorted(sink.reports[0], key=lambda w: w["tenant_id"]) == [
        {"model": "m", "tenant_id": 1, "requests": 2}, {"model": "m", "tenant_id": 2, "requests": 1}]
    poll()
    assert len(sink.reports) == 1  # reported once, not on every poll

    sink.down = True  # a report that fails is dropped (the client's retry is counted again), polling goes on
    chat(server, token=ALICE)
    poll()
    assert discovery.reachable and server.router.wanted == {}
    sink.down = False
    chat(server, token=ALICE)
    poll()
    assert sink.reports[-1] == [{"model": "m", "tenant_id": 1, "requests": 1}]


def test_names_clients_invent_cannot_grow_the_report_without_bound(gateway: Any) -> None:
    server = gateway({}, KEYS)
    for n in range(5000):
        server.router.want(f"m{n}", 1)
    assert len(server.router.take_wanted()) == 4096 and server.router.wanted == {}


@pytest.fixture
def slow() -> Iterator[RecordingUpstream]:
    upstream = RecordingUpstream("slow", secret="key-of-slow-0123456789")
    upstream.delay_s = 0.6
    yield upstream
    upstream.close()


def test_the_gateway_reports_in_flight_queued_and_queue_wait_per_replica(gateway: Any, slow: RecordingUpstream) -> None:
    """Requests a slow replica has not answered yet are in flight and queued (no response head), their
    queue wait is measured to the head and reported with the next poll; an idle gateway says so once."""
    plane, sink = ControlPlane(), DemandSink()
    plane.models = ["m"]
    plane.list("dep-0", slow)
    server = gateway({}, KEYS)
    discovery = ReplicaDiscovery(server.router, plane.fetch, demand=sink)

    def poll() -> None:
        server.loop_thread.run(discovery.poll_once())

    poll()
    assert sink.loads == []  # idle from the start: nothing to say
    with ThreadPoolExecutor(3) as pool:
        answers = [pool.submit(chat, server) for _ in range(3)]
        deadline = time.monotonic() + 5
        while server.router.by_id["dep-0"].outstanding < 3 and time.monotonic() < deadline:
            time.sleep(0.02)
        time.sleep(0.2)
        poll()
        assert [a.result().status_code for a in answers] == [200, 200, 200]
    [waiting] = sink.loads[-1]["replicas"]
    assert (waiting["replica"], waiting["in_flight"], waiting["queued"], waiting["waits"]) == ("dep-0", 3, 3, 3)
    assert 0.15 <= waiting["queue_wait_s"] < 0.6  # their ages so far
    poll()
    [answered] = sink.loads[-1]["replicas"]
    assert (answered["in_flight"], answered["queued"], answered["waits"]) == (0, 0, 3)
    assert answered["queue_wait_s"] >= 0.6  # arrival to the response head, each
    poll()
    assert sink.loads[-1]["replicas"] == [{"replica": "dep-0", "in_flight": 0, "queued": 0, "queue_wait_s": 0.0,
                                           "waits": 0}]  # idle: said once
    reports = len(sink.loads)
    poll()
    assert len(sink.loads) == reports
    assert len({load["gateway"] for load in sink.loads}) == 1
