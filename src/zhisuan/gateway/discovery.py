"""Discovery: a gateway follows the control plane's routable replicas instead of a hand-made list.

A background task (``ReplicaDiscovery.run``) asks the control plane every ``interval_s`` for its
endpoints (``serving.fleet.endpoints``: replicas healthy or draining and recently reported, with
their address, port and engine key; the registered model names) and makes the router match:

- a new replica is added; one whose address, port or key changed (relaunched) is replaced;
- a replica listed as draining, or no longer listed, gets no new requests; it is removed once its
  in-flight requests have finished (a draining replica's engine keeps serving them meanwhile);
- the registered names become ``Router.registered``: a name with no visible replica then answers
  503 with ``Retry-After`` rather than 404 (``proxy``);
- replicas the discovery did not add (the control plane's own runtime registers its replicas
  itself; hand-listed upstreams) are never touched;
- requests for a registered model that found no replica (``Router.wanted``) are reported before
  each poll (``Demand``: ``POST /serving/demand``), so a deployment scaled to zero starts a replica;
  the client got 503 with ``Retry-After`` at once and its retry finds the replica once it is healthy.

Nothing of this runs per request: requests read the router only. The poll carries the last
version seen (``If-None-Match``): an unchanged set costs one 304. If the control plane cannot be
reached, the gateway keeps routing to the last replica set it knew (a replica that then fails to
connect is ejected and the request retried on another, as always) and logs once per outage.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any

import httpx

from zhisuan.gateway.router import Router

log = logging.getLogger("zhisuan.gateway.discovery")

# (last version seen or None) -> the endpoints, or None when unchanged since that version
Fetch = Callable[[str | None], Awaitable[dict[str, Any] | None]]
# Requests that found no replica ([{model, tenant_id, requests}]) -> reported to the control plane
Demand = Callable[[list[dict[str, Any]]], Awaitable[None]]


class ReplicaDiscovery:
    def __init__(self, router: Router, fetch: Fetch, interval_s: float = 1.0, demand: Demand | None = None) -> None:
        self.router, self.fetch, self.interval_s, self.demand = router, fetch, interval_s, demand
        self.owned: set[str] = set()  # replica ids this discovery added (the only ones it changes)
        self.leaving: set[str] = set()  # no longer listed: removed once idle
        self.version: str | None = None
        self.reachable = True
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
            same = current is not None and (current.host, current.port, current.secret, current.tenant_id,
                                            current.model) == (e["host"], e["port"], e["secret"],
                                                               e.get("tenant_id"), e["model"])
            if not same:
                self.router.add_replica(e["model"], rid, e["host"], int(e["port"]), tenant_id=e.get("tenant_id"),
                                        secret=e["secret"])
                self.owned.add(rid)
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

    async def report_demand(self) -> None:
        """Requests that found no replica since the last poll, to the control plane (scale from zero).
        Lost if it cannot be reached: the client retries after ``Retry-After`` and is counted again."""
        wanted = self.router.take_wanted()
        if wanted and self.demand is not None:
            try:
                await self.demand(wanted)
            except Exception as error:
                log.warning("could not report %d model(s) without replicas: %s", len(wanted), error)

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

    async def __call__(self, version: str | None) -> dict[str, Any] | None:
        headers = {"If-None-Match": f'"{version}"'} if version else {}
        response = await self.client.get("/serving/endpoints", headers=headers)
        if response.status_code == 304:
            return None
        response.raise_for_status()
        found: dict[str, Any] = response.json()
        return found

    async def report_demand(self, wanted: list[dict[str, Any]]) -> None:
        """``Demand`` over HTTP: ``POST /api/v1/serving/demand``."""
        response = await self.client.post("/serving/demand", json={"demand": wanted})
        response.raise_for_status()

    async def aclose(self) -> None:
        await self.client.aclose()
