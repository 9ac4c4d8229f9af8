"""Model name → replicas; picks the healthy replica with the fewest outstanding requests that has a free slot.

Slots: a replica takes at most ``slots`` requests from this gateway at once (the engine's parallel
slots, from discovery; None = no cap, e.g. a hand-listed upstream that does not say). When no routable
replica of a route has a free slot, requests wait in the route's ``queue`` (``core.fair_queue``: round-
robin over tenants on a public route, over keys on a private one) and a freed slot is handed to the
next waiter (``ModelRoute.release`` → ``hand_over``); ``gateway.admission`` does the waiting.

Visibility: a replica registered with ``tenant_id=None`` serves a *public* (platform) model, callable by
every tenant; one registered with a tenant id serves that tenant's *private* model, which only that
tenant's keys may see or call. Routes are keyed by (model, owner): two tenants may each deploy a model
of the same name and stay apart. ``resolve(model, tenant)`` picks, for the caller's tenant, its own
private route first, then the public one; a name the caller may not see resolves to None exactly like
a name that does not exist. Private replicas carry an opaque metric label (``metric_model`` /
``metric_id``) so ``/metrics`` never names a tenant's model or deployment.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import time
from collections.abc import Hashable, Iterator
from typing import Any

from zhisuan.core.fair_queue import FairQueue
from zhisuan.gateway.slots_probe import SlotsProbe
from zhisuan.gateway.upstream import UpstreamPool

EJECT_S = 2.0
PRIVATE_LABEL = "private"
# Prompt tokens a chat template may add to a prompt's text (role markers, a default system prompt),
# assumed until a route has served a request under a budget and learnt its own (ModelRoute.observe_prompt).
INITIAL_PROMPT_OVERHEAD = 32
# Keys the opaque metric ids of private replicas: stable in one process, meaningless outside it.
_LABEL_SALT = os.urandom(16)


def opaque_id(replica_id: str) -> str:
    return "p-" + hashlib.blake2b(replica_id.encode(), key=_LABEL_SALT, digest_size=6).hexdigest()


class Replica:
    __slots__ = ("id", "model", "host", "port", "pool", "outstanding", "healthy", "draining", "ejected_until",
                 "tenant_id", "secret", "auth_header", "metric_model", "metric_id", "waiting", "waiting_since",
                 "wait_total", "wait_count", "slots_probe", "slots")

    def __init__(self, replica_id: str, model: str, host: str, port: int, *, tenant_id: int | None = None,
                 secret: str | None = None, slots: int | None = None) -> None:
        """``tenant_id``: the owning tenant of a private service (None = public, every tenant may call it);
        ``secret``: the per-replica key the engine was started with, presented upstream by the gateway;
        ``slots``: requests it may have from this gateway at once (None: no cap)."""
        self.id = replica_id
        self.slots = slots
        self.tenant_id = tenant_id
        self.secret = secret
        self.model = model
        self.host = host
        self.port = port
        self.pool = UpstreamPool(host, port)
        self.slots_probe = SlotsProbe(host, port, secret)  # busy or hung? (proxy: first-byte timeout)
        self.outstanding = 0
        self.healthy = True
        self.draining = False
        self.ejected_until = 0.0
        # Sent upstream with every forwarded request: the engine refuses callers without its key.
        self.auth_header = b"authorization: Bearer %s\r\n" % secret.encode() if secret else b""
        self.metric_model = model if tenant_id is None else PRIVATE_LABEL
        self.metric_id = replica_id if tenant_id is None else opaque_id(replica_id)
        # Queue wait (arrival at this gateway → the replica's response head), for the autoscaler:
        # requests waiting now and the sum of their arrival times (their ages without a list), and
        # the waits that ended since the last ``take_load``.
        self.waiting = 0
        self.waiting_since = 0.0
        self.wait_total = 0.0
        self.wait_count = 0

    def wait_began(self, arrived: float) -> None:
        self.waiting += 1
        self.waiting_since += arrived

    def wait_ended(self, arrived: float, at: float | None) -> None:
        """The head came at ``at`` (a wait measured), or never (``at`` None)."""
        self.waiting -= 1
        self.waiting_since = self.waiting_since - arrived if self.waiting else 0.0  # no float drift at rest
        if at is not None:
            self.wait_total += at - arrived
            self.wait_count += 1

    def take_load(self, now: float, gateway_queued: int = 0, gateway_ages: float = 0.0) -> dict[str, object]:
        """In flight, queued, and the mean queue wait since the last call: ended waits plus the ages
        of requests still waiting (so a stuck queue shows before its requests are answered).
        ``gateway_queued`` requests waiting in the route's gateway queue (ages summing to
        ``gateway_ages``) are counted here as if sent: in flight, queued, and in the wait."""
        ages = self.waiting * now - self.waiting_since + gateway_ages
        waits = self.wait_count + self.waiting + gateway_queued
        mean = (self.wait_total + ages) / waits if waits else 0.0
        self.wait_total, self.wait_count = 0.0, 0
        return {"replica": self.id, "in_flight": self.outstanding + gateway_queued,
                "queued": self.waiting + gateway_queued, "queue_wait_s": round(max(0.0, mean), 4), "waits": waits}

    def routable(self, now: float) -> bool:
        return self.healthy and not self.draining and self.ejected_until <= now

    def eject(self) -> None:
        """Passive health: a replica that refused a connection gets no traffic for a moment."""
        self.ejected_until = time.monotonic() + EJECT_S


class Waiter:
    """A request in a route's gateway queue: handed a replica (with its slot taken) through ``future``."""

    __slots__ = ("future", "arrived", "party", "exclude")

    def __init__(self, future: asyncio.Future[Replica | None], arrived: float, party: Hashable,
                 exclude: set[str]) -> None:
        self.future = future
        self.arrived = arrived
        self.party = party
        self.exclude = exclude


class ModelRoute:
    def __init__(self, name: str, tenant_id: int | None = None) -> None:
        self.name = name
        self.tenant_id = tenant_id
        self.prompt_overhead = INITIAL_PROMPT_OVERHEAD
        self._overhead_seen = False
        self.replicas: list[Replica] = []
        self._next = 0
        self.created = int(time.time())
        self.queue: FairQueue[Waiter] = FairQueue()

    def observe_prompt(self, prompt_tokens: int, text_bytes: int) -> None:
        """Learn the template overhead from an engine's own count: the largest (tokens − text bytes) seen."""
        overhead = max(0, prompt_tokens - text_bytes)
        if not self._overhead_seen or overhead > self.prompt_overhead:
            self.prompt_overhead, self._overhead_seen = overhead, True

    def pick(self, exclude: set[str] | None = None) -> Replica | None:
        """The routable replica with a free slot and the fewest outstanding requests (not in
        ``exclude``), or None. Does not take the slot."""
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
            if (best is None or r.outstanding < best.outstanding) and (r.slots is None or r.outstanding < r.slots):
                best = r
        return best

    def take_free(self, party: Hashable, exclude: set[str] | None = None) -> Replica | None:
        """The fast path: when nobody waits, take a slot of ``pick(exclude)`` for ``party`` (stamping its
        turn, should a queue form) and return that replica; None when someone waits or no slot is free."""
        if self.queue.length:
            return None
        replica = self.pick(exclude)
        if replica is not None:
            replica.outstanding += 1
            self.queue.admitted(party)
        return replica

    def any_routable(self, exclude: set[str] | None = None) -> bool:
        """Some replica (not in ``exclude``) takes requests, free slot or not: worth waiting for."""
        now = time.monotonic()
        return any(r.routable(now) and not (exclude and r.id in exclude) for r in self.replicas)

    def may_come_back(self) -> bool:
        """Some replica is still the route's and not draining: ejected or unhealthy now, it may take
        requests again (what a waiter keeps waiting for, within its longest wait)."""
        return any(not r.draining for r in self.replicas)

    def release(self, replica: Replica) -> None:
        """A request left ``replica`` (answered, failed, client gone): its slot goes to the next waiter."""
        replica.outstanding -= 1
        if self.queue.length:
            self.hand_over()

    def hand_over(self) -> None:
        """Free slots to waiters, in the queue's fair order; each waiter gets the least-loaded free
        replica it has not tried, else (every free one tried, e.g. back from ejection) any free one."""
        while self.queue.length:
            free = self.pick()
            if free is None:
                return
            waiter = self.queue.pop()
            assert waiter is not None
            chosen = (self.pick(waiter.exclude) or free) if waiter.exclude else free
            chosen.outstanding += 1
            waiter.future.set_result(chosen)


class Router:
    def __init__(self) -> None:
        self.routes: dict[str, ModelRoute] = {}  # public models, by name
        self.private: dict[tuple[int, str], ModelRoute] = {}  # (owner tenant, model) → route
        self.by_id: dict[str, Replica] = {}
        # Names in the control plane's model registry (gateway.discovery): one with no replica the
        # caller may call answers 503 + Retry-After (it may start soon), any other name 404.
        self.registered: frozenset[str] = frozenset()
        # (model, caller's tenant) → requests for a registered model that found no replica since
        # discovery last reported them: a deployment scaled to zero starts one (serving.autoscaler).
        self.wanted: dict[tuple[str, int | None], int] = {}

    def want(self, model: str, tenant_id: int | None) -> None:
        key = (model, tenant_id)
        if len(self.wanted) < 4096 or key in self.wanted:  # bounded: names come from clients
            self.wanted[key] = self.wanted.get(key, 0) + 1

    def take_wanted(self) -> list[dict[str, object]]:
        taken, self.wanted = self.wanted, {}
        return [{"model": m, "tenant_id": t, "requests": n} for (m, t), n in taken.items()]

    def take_load(self) -> list[dict[str, object]]:
        """Each replica's load (``Replica.take_load``) for discovery's report to the control plane."""
        now = time.monotonic()
        queued: dict[str, tuple[int, float]] = {}  # replica id → gateway-queued requests and their ages
        for route in (*self.routes.values(), *self.private.values()):
            if route.queue.length and route.replicas:
                # Spread over the route's replicas: the autoscaler sums them per deployment anyway.
                for i, waiter in enumerate(route.queue):
                    rid = route.replicas[i % len(route.replicas)].id
                    n, ages = queued.get(rid, (0, 0.0))
                    queued[rid] = (n + 1, ages + now - waiter.arrived)
        return [r.take_load(now, *queued.get(r.id, (0, 0.0))) for r in self.by_id.values()]

    def add_replica(self, model: str, replica_id: str, host: str, port: int, *, healthy: bool = True,
                    tenant_id: int | None = None, secret: str | None = None, slots: int | None = None) -> Replica:
        self.remove_replica(replica_id)
        r = Replica(replica_id, model, host, port, tenant_id=tenant_id, secret=secret, slots=slots)
        r.healthy = healthy
        if tenant_id is None:
            route = self.routes.setdefault(model, ModelRoute(model))
        else:
            route = self.private.setdefault((tenant_id, model), ModelRoute(model, tenant_id))
        route.replicas.append(r)
        self.by_id[replica_id] = r
        route.hand_over()  # waiters get its slots at once
        return r

    def set_healthy(self, replica_id: str, healthy: bool) -> None:
        r = self.by_id.get(replica_id)
        if r is not None:
            r.healthy = healthy
            if healthy:
                r.ejected_until = 0.0
                route = self.route_of(r)
                if route is not None:
                    route.hand_over()

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
        routes: dict[Any, ModelRoute] = self.routes if r.tenant_id is None else self.private
        key = r.model if r.tenant_id is None else (r.tenant_id, r.model)
        route = routes.get(key)
        if route is not None:
            route.replicas = [x for x in route.replicas if x.id != replica_id]
            if not route.replicas:  # its waiters see no routable replica at their next check (503)
                del routes[key]
        r.pool.close()
        r.slots_probe.close()

    def route_of(self, r: Replica) -> ModelRoute | None:
        return self.routes.get(r.model) if r.tenant_id is None else self.private.get((r.tenant_id, r.model))

    def get(self, model: str) -> ModelRoute | None:
        """The public route of ``model`` (what every tenant may call)."""
        return self.routes.get(model)

    def resolve(self, model: str, tenant_id: int | None) -> ModelRoute | None:
        """The route ``model`` names for a caller of ``tenant_id``: its own private service wins over
        a public one of the same name; None when the caller can see no such model."""
        if tenant_id is not None:
            route = self.private.get((tenant_id, model))
            if route is not None and route.replicas:
                return route
        route = self.routes.get(model)
        return route if route is not None and route.replicas else None

    def visible(self, tenant_id: int | None) -> list[ModelRoute]:
        """Every model a caller of ``tenant_id`` may call, one route per name (``resolve``'s choice)."""
        names = {name for name, route in self.routes.items() if route.replicas}
        if tenant_id is not None:
            names.update(m for (t, m), route in self.private.items() if t == tenant_id and route.replicas)
        return [r for r in (self.resolve(n, tenant_id) for n in sorted(names)) if r is not None]

    def all_replicas(self) -> Iterator[Replica]:
        return iter(list(self.by_id.values()))

    def gauges(self) -> Iterator[tuple[str, str, int, bool]]:
        now = time.monotonic()
        for r in self.by_id.values():
            yield r.metric_model, r.metric_id, r.outstanding, r.routable(now)

    def queue_lengths(self) -> dict[str, int]:
        """Requests waiting in the gateway's queues by metric model label (private routes summed
        under ``PRIVATE_LABEL``: no tenant's model is named)."""
        lengths: dict[str, int] = {}
        for route in self.routes.values():
            lengths[route.name] = route.queue.length
        for route in self.private.values():
            lengths[PRIVATE_LABEL] = lengths.get(PRIVATE_LABEL, 0) + route.queue.length
        return lengths
