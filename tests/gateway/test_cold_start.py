"""Scale from zero at the gateway: a request for a registered model with no replica gets 503 with
Retry-After at once, and the gateway reports it (model, caller's tenant, how many) with its next
discovery poll, so the control plane's autoscaler starts a replica (tests/api/test_deployment_scaling.py
covers that side). The control plane is a function here, as in test_discovery."""

from __future__ import annotations

from typing import Any

import httpx

from tests.gateway.test_discovery import ALICE, BOB, ControlPlane, chat
from tests.gateway.test_visibility import KEYS
from zhisuan.gateway.discovery import ReplicaDiscovery


class DemandSink:
    def __init__(self) -> None:
        self.reports: list[list[dict[str, Any]]] = []
        self.down = False

    async def __call__(self, wanted: list[dict[str, Any]]) -> None:
        if self.down:
            raise httpx.ConnectError("control plane down")
        self.reports.append(wanted)


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
