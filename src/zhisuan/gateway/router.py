"""Model name → replicas; picks the healthy replica with the fewest outstanding requests."""

from __future__ import annotations

import time
from collections.abc import Iterator

from zhisuan.gateway.upstream import UpstreamPool

EJECT_S = 2.0


class Replica:
    __slots__ = ("id", "model", "host", "port", "pool", "outstanding", "healthy", "draining", "ejected_until",
                 "tenant_id", "secret")

    def __init__(self, replica_id: str, model: str, host: str, port: int, *, tenant_id: int | None = None,
                 secret: str | None = None) -> None:
        """``tenant_id``: the owning tenant of a private service (None = public, every tenant may call it);
        ``secret``: the per-replica key the engine was started with, presented upstream by the gateway."""
        self.id = replica_id
        self.tenant_id = tenant_id
        self.secret = secret
        self.model = model
        self.host = host
        self.port = port
        self.pool = UpstreamPool(host, port)
        self.outstanding = 0
        self.healthy = True
        self.draining = False
        self.ejected_until = 0.0

    def routable(self, now: float) -> bool:
        return self.healthy and not self.draining and self.ejected_until <= now

    def eject(self) -> None:
        """Passive health: a replica that refused a connection gets no traffic for a moment."""
        self.ejected_until = time.monotonic() + EJECT_S


class ModelRoute:
    def __init__(self, name: str) -> None:
        self.name = name
        self.replicas: list[Replica] = []
        self._next = 0
        self.created = int(time.time())

    def pick(self, exclude: set[str] | None = None) -> Replica | None:
        n = len(self.replicas)
        if n == 0:
            return None
        now = time.monotonic() if any(r.ejected_until for r in self.replicas) else 0.0
        start = self._next = (self._next + 1) % n
        best: Replica | None = None
        for i in range(n):
            r = self.replicas[(start + i) % n]
            if not r.routable(now) or (exclude and r.id in exclude):
                continue
            if best is None or r.outstanding < best.outstanding:
                best = r
        return best


class Router:
    def __init__(self) -> None:
        self.routes: dict[str, ModelRoute] = {}
        self.by_id: dict[str, Replica] = {}

    def add_replica(self, model: str, replica_id: str, host: str, port: int, *, healthy: bool = True,
                    tenant_id: int | None = None, secret: str | None = None) -> Replica:
        self.remove_replica(replica_id)
        r = Replica(replica_id, model, host, port, tenant_id=tenant_id, secret=secret)
        r.healthy = healthy
        self.routes.setdefault(model, ModelRoute(model)).replicas.append(r)
        self.by_id[replica_id] = r
        return r

    def set_healthy(self, replica_id: str, healthy: bool) -> None:
        r = self.by_id.get(replica_id)
        if r is not None:
            r.healthy = healthy
            if healthy:
                r.ejected_until = 0.0

    def drain(self, replica_id: str) -> Replica | None:
        """Stop routing new requests to a replica; its in-flight ones finish."""
        r = self.by_id.get(replica_id)
        if r is not None:
            r.draining = True
        return r

    def remove_replica(self, replica_id: str) -> None:
        r = self.by_id.pop(replica_id, None)
        if r is None:
            return
        route = self.routes.get(r.model)
        if route is not None:
            route.replicas = [x for x in route.replicas if x.id != replica_id]
        r.pool.close()

    def get(self, model: str) -> ModelRoute | None:
        return self.routes.get(model)

    def gauges(self) -> Iterator[tuple[str, str, int, bool]]:
        now = time.monotonic()
        for route in self.routes.values():
            for r in route.replicas:
                yield route.name, r.id, r.outstanding, r.routable(now)
