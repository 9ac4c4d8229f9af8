"""Discovery: a gateway follows the control plane's routable replicas instead of a hand-made list.

A background task (``ReplicaDiscovery.run``) asks the control plane every ``interval_s`` for its
endpoints (``serving.fleet.endpoints``: replicas healthy or draining and recently reported, with
their address, port and engine key; the registered model names) and makes the router match:

- a new replica is added; one whose address, port or key changed (relaunched) is replaced; its
  ``slots`` (the engine's parallel slots; 1 when the control plane does not say) cap what this gateway
  sends it at once, the rest waits in the gateway's fair queue (``admission``);
- a replica listed as draining, or no longer listed, gets no new requests; it is removed once its
  in-flight requests have finished (a draining replica's engine keeps serving them meanwhile);
- the registered names become ``Router.registered``: a name with no visible replica then answers
  503 with ``Retry-After`` rather than 404 (``proxy``);
- replicas the discovery did not add (the control plane's own runtime registers its replicas
  itself; hand-listed upstreams) are never touched;
- requests for a registered model that found no replica (``Router.wanted``) are reported before
  each poll (``Demand``: ``POST /serving/demand``), so a deployment scaled to zero starts a replica;
  the client got 503 with ``Retry-After`` at once and its retry finds the replica once it is healthy;
- with them, this gateway's load per replica (``Router.take_load``: requests sent and not yet
  answered, those still awaiting the response head, their mean queue wait since the last report),
  the autoscaler's in-flight and queue-time measures — sent while any replica is busy, and once
  more when all went idle (an idle gateway reports nothing; the control plane ignores reports
  older than 10 s).

Nothing of this runs per request: requests read the router only. The poll carries the last
version seen (``If-None-Match``): an unchanged set costs one 304. If the control plane cannot be
reached, the gateway keeps routing to the last replica set it knew (a replica that then fails to
connect is ejected and the request retried on another, as always) and logs once per outage.
"""

from __future__ import annotations

import asyncio
import logging
import os
import secrets
import socket
from collections.abc import Awaitable, Callable
from typing import Any

import httpx

from zhisuan.gateway.router import Router

log = logging.getLogger("zhisuan.gateway.discovery")

# (last version seen or None) -> the endpoints, or None when unchanged since that version
Fetch = Callable[[str | None], Awaitable[dict[str, Any] | None]]
# Requests that found no replica ([{model, tenant_id, requests}]) and this gateway's load
# ({gateway, replicas: [{replica, in_flight, queued, queue_wait_s, waits}]} or None) -> the control plane
Demand = Callable[[list[dict[str, Any]], dict[str, Any] | None], Awaitable[None]]


def gateway_id() -> str:
    """This gateway process's id in its load reports (one row per gateway and replica)."""
    return f"{socket.gethostname()[:40]}-{os.getpid()}-{secrets.token_hex(3)}"


class ReplicaDiscovery:
    def __init__(self, router: Router, fetch: Fetch, interval_s: float = 1.0, demand: Demand | None = None) -> None:
        self.router, self.fetch, self.interval_s, self.demand = router, fetch, interval_s, demand
        self.owned: set[str] = set()  # replica ids this discovery added (the only ones it changes)
        self.leaving: set[str] = set()  # no longer listed: removed once idle
        self.version: str | None = None
        self.reachable = True
        self.gateway = gateway_id()
        self.reported_busy = False  # the last load report had a busy replica: report the idle one
        self._task: asyncio.Task[None] | None = None

    def apply(self, snapshot: dict[str, Any]) -> None:
        listed: set[str] = set()
        for e in snapshot.get("replicas", []):
            rid = e["id"]
            current = self.router.by_id.get(rid)
            if current is not None and rid not in self.owned:
                continue  # registered by someone else (this machine's own runtime)
            listed.add(rid)
            self.leaving.discard(rid)
            slots = max(1, int(e.get("slots") or 1))  # an engine that does not say takes one at a time
            same = current is not None and (current.host, current.port, current.secret, current.tenant_id,
                                            current.model) == (e["host"], e["port"], e["secret"],
                                                               e.get("tenant_id"), e["model"])
            if not same:
                self.router.add_replica(e["model"], rid, e["host"], int(e["port"]), tenant_id=e.get("tenant_id"),
                                        secret=e["secret"], slots=slots)
                self.owned.add(rid)
            elif current is not None and current.slots != slots:
                current.slots = slots  # relaunched with another --parallel at the same address
                route = self.router.route_of(current)
                if route is not None:
                    route.hand_over()
            replica = self.router.by_id[rid]
            replica.draining = bool(e.get("draining"))
        for rid in self.owned - listed:
            self.router.drain(rid)
            self.leaving.add(rid)
        self.router.registered = frozenset(snapshot.get("models", []))
        self.version = snapshot.get("version")
        self.remove_idle()

    def remove_idle(self) -> None:
        for rid in list(self.leaving):
            replica = self.router.by_id.get(rid)
            if replica is None or replica.outstanding == 0:
                self.router.remove_replica(rid)
                self.leaving.discard(rid)
                self.owned.discard(rid)

    def load_report(self) -> dict[str, Any] | None:
        """This gateway's load per replica, or None when there is nothing new to say (all idle, and
        the control plane was told so already)."""
        replicas = self.router.take_load()
        busy = any(r["in_flight"] or r["waits"] for r in replicas)
        if not busy and not self.reported_busy:
            return None
        self.reported_busy = busy
        return {"gateway": self.gateway, "replicas": replicas}

    async def report_demand(self) -> None:
        """Requests that found no replica since the last poll (scale from zero) and the load, to the
        control plane. Lost if it cannot be reached: the client retries after ``Retry-After`` and is
        counted again; the next report carries the load again."""
        wanted = self.router.take_wanted()
        load = self.load_report() if self.demand is not None else None
        if (wanted or load is not None) and self.demand is not None:
            try:
                await self.demand(wanted, load)
            except Exception as error:
                self.reported_busy = True  # say it again next time
                log.warning("could not report load and %d model(s) without replicas: %s", len(wanted), error)

    async def poll_once(self) -> bool:
        """One poll; False when the control plane could not be asked (the last set stays)."""
        await self.report_demand()
        try:
            snapshot = await self.fetch(self.version)
        except Exception as error:  # unreachable, 5xx, a bad answer: keep serving what we know
            if self.reachable:
                log.warning("control plane unreachable for discovery (%s); routing to the last %d known "
                            "replica(s)", error, len(self.owned))
            self.reachable = False
            return False
        if not self.reachable:
            log.info("control plane reachable again: following its replicas")
        self.reachable = True
        if snapshot is not None and snapshot.get("version") != self.version:
            self.apply(snapshot)
        else:
            self.remove_idle()
        return True

    async def run(self) -> None:
        while True:
            await self.poll_once()
            await asyncio.sleep(self.interval_s)

    def start(self) -> None:
        self._task = asyncio.ensure_future(self.run())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None


class ControlPlaneEndpoints:
    """``Fetch`` over HTTP: ``GET /api/v1/serving/endpoints`` with an operator key (standalone gateways)."""

    def __init__(self, server: str, token: str, timeout_s: float = 5.0) -> None:
        self.client = httpx.AsyncClient(base_url=server.rstrip("/") + "/api/v1", timeout=timeout_s,
                                        headers={"Authorization": f"Bearer {token}"})
        self.load_refused = False

    async def __call__(self, version: str | None) -> dict[str, Any] | None:
        headers = {"If-None-Match": f'"{version}"'} if version else {}
        response = await self.client.get("/serving/endpoints", headers=headers)
        if response.status_code == 304:
            return None
        response.raise_for_status()
        found: dict[str, Any] = response.json()
        return found

    async def report_demand(self, wanted: list[dict[str, Any]], load: dict[str, Any] | None = None) -> None:
        """``Demand`` over HTTP: ``POST /api/v1/serving/demand``. A control plane older than load
        reports refuses the field (422): the demand is re-sent without it and load is not sent again."""
        body: dict[str, Any] = {"demand": wanted}
        if load is not None and not self.load_refused:
            body["load"] = load
        response = await self.client.post("/serving/demand", json=body)
        if response.status_code == 422 and "load" in body:
            log.warning("the control plane does not take gateway load reports (upgrade it); not sending them")
            self.load_refused = True
            body.pop("load")
            response = await self.client.post("/serving/demand", json=body)
        response.raise_for_status()

    async def aclose(self) -> None:
        await self.client.aclose()
