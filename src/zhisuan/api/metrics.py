"""Prometheus metrics: request counters and latencies, and fleet gauges read at scrape time."""

from __future__ import annotations

import ipaddress
import time
from collections.abc import Iterator

from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector
from sqlalchemy.orm import Session, sessionmaker
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from zhisuan.api.deps import AppContext
from zhisuan.errors import Unauthenticated
from zhisuan.identity.access import require_role, require_scope
from zhisuan.inventory import fleet_counts
from zhisuan.store.base import transaction


class FleetCollector(Collector):
    """Nodes and accelerators per site, status, model and health, from the counts the database keeps
    (``inventory.fleet_counts``)."""

    def __init__(self, sessions: sessionmaker[Session]) -> None:
        self.sessions = sessions

    def collect(self) -> Iterator[GaugeMetricFamily]:
        nodes = GaugeMetricFamily("zhisuan_nodes", "Nodes under management", labels=["site", "status"])
        devices = GaugeMetricFamily(
            "zhisuan_accelerators", "Accelerators under management", labels=["site", "model", "health", "available"]
        )
        with transaction(self.sessions) as session:  # a read may fold the counts' rows: committed
            node_rows, device_rows = fleet_counts.exported_gauges(session)
        for site, status, count in node_rows:
            nodes.add_metric([site, status], count)
        for site, model, health, available, count in device_rows:
            devices.add_metric([site, model, health, str(available).lower()], count)
        yield nodes
        yield devices


class HttpMetrics:
    """The request counter and latency histogram, shared by ``RequestMetrics`` and the known-beat
    shortcut (``api.beat_shortcut``), which answers outside the middleware stack."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.requests = Counter("zhisuan_http_requests", "HTTP requests", ["method", "route", "status"],
                                registry=registry)
        self.latency = Histogram("zhisuan_http_request_seconds", "HTTP request latency", ["method", "route"],
                                 registry=registry)
        self._shortcut: dict[str, tuple[Counter, Histogram]] = {}

    def answered_early(self, route: str, seconds: float) -> None:
        """A ``POST route`` answered 200 before routing: counted as the full stack would count it, its
        label children looked up once (an increment and an observation, ~2 µs, per beat)."""
        children = self._shortcut.get(route)
        if children is None:
            children = self._shortcut.setdefault(route, (self.requests.labels("POST", route, "200"),
                                                         self.latency.labels("POST", route)))
        children[0].inc()
        children[1].observe(seconds)


class RequestMetrics:
    """ASGI middleware counting requests by route template (not raw path, to bound cardinality)."""

    def __init__(self, app: ASGIApp, metrics: HttpMetrics) -> None:
        self.app = app
        self.requests, self.latency = metrics.requests, metrics.latency

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500

        async def capture(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, capture)
        finally:
            route = scope.get("route")
            template = getattr(route, "path", "unmatched")
            self.requests.labels(scope["method"], template, str(status)).inc()
            self.latency.labels(scope["method"], template).observe(time.perf_counter() - started)


def is_loopback(address: str | None) -> bool:
    try:
        return address is not None and ipaddress.ip_address(address).is_loopback
    except ValueError:
        return False


def check_metrics_access(ctx: AppContext, session: Session, address: str | None, authorization: str | None) -> None:
    """/metrics is for Prometheus, not the world: fleet gauges name every site and the request
    counters show traffic. Loopback callers may read it (a local Prometheus or node exporter);
    others need an operator key with the 'metrics' scope, unless the operator made it public."""
    if ctx.settings.metrics_public or is_loopback(address):
        return
    if not authorization or not authorization.lower().startswith("bearer "):
        raise Unauthenticated("metrics: send 'Authorization: Bearer <key with the metrics scope>' "
                              "(or scrape from the same host)")
    principal = ctx.verifier.authenticate(session, authorization[7:].strip(), ctx.clock(), address)
    require_role(principal, "operator")
    require_scope(principal, "metrics")
