"""The ``/v1`` gateway: OpenAI request and error shapes, routing, retries, limits and metering.

Per request: bearer key → grant (cached) → JSON body → model route and key scope → limits →
a slot: the least-outstanding healthy replica with a free slot (a counter), or a wait in the route's
fair queue (``admission``: round-robin over tenants, bounded; full → 503 ``queue_full``, or 429 when
the queue holds only the caller's own requests; too long → 503 ``queue_timeout``; both with
``retry-after: 2``) → forward on a pooled keep-alive connection. A replica that fails before sending
its first byte is retried on another one (up to ``max_attempts``); its slot is given back first.

First-byte timeout: a replica that sends no byte of its response within ``first_byte_timeout_s``
(streams, default 30 s: room for a CPU engine's prompt processing) or
``nonstream_first_byte_timeout_s`` (non-streaming requests and embeddings, default 600 s: their
first byte comes only when the whole answer is generated) is judged, busy or hung:
- queued, not hung: llama-server queues requests beyond its slots, and a queued request gets no byte
  until a slot frees. If the replica sent a byte of any other request during the window (seen on
  any of this gateway's connections to it), or — when it sent none — its engine answers ``GET
  /slots`` with a processing slot (``slots_probe``: work this gateway does not see, e.g. another
  gateway's), the request waits one more window. Each such window counts in
  ``zhisuan_gateway_queued_windows_total``; a request waits so at most ``max_queued_s`` (default
  600 s) after its arrival (0: never, the rule before);
- hung otherwise (no byte and no such answer): the request counts as failed before the first byte
  (metric ``errors{kind="first_byte_timeout"}``): its connection is closed (the engine stops), the
  replica is ejected for a moment, and the request is retried on another healthy replica.
So a burst beyond a replica's slots waits in the engine's queue instead of ejecting healthy replicas
one after the other. A replica with ``slots`` gets at most that many requests of this gateway at once,
so its engine queues only what other gateways send it; one without (hand-listed, not said) is not capped.
When no replica answers, the client gets an OpenAI-shaped error:
- 504 ``server_error`` / ``upstream_timeout`` if a replica was reached but stalled past the timeout
  (the SDKs retry 5xx by default);
- 503 ``service_unavailable`` / ``no_healthy_replica`` (``retry-after: 1``) if none could be reached.
Neither writes a usage event: no replica produced anything the gateway could meter. A model in the
control plane's registry (``Router.registered``, from ``discovery``) with no replica the caller may
call answers 503 ``service_unavailable`` / ``model_not_running`` (``retry-after: 5``); any other
unknown name 404 ``model_not_found``.

Metering rules (exactly one ``UsageEvent`` per forwarded request):
- tokens are the engine's own counts: ``usage`` of a response; for streams the gateway asks the
  engine for a final usage chunk (``stream_options.include_usage``) and hides that chunk from a
  client that did not ask for it;
- the event is committed to the local spool *before* the response is acknowledged: the body of a
  non-streaming response, the final ``data: [DONE]`` of a stream, are held back until then;
- a client that disconnects mid-stream is billed for what was generated so far: the engine is
  stopped (its connection is closed), completion tokens = content chunks the engine had sent (one
  token per chunk in llama.cpp and vLLM), prompt tokens = the engine's count when it sent one, else
  the count of the replica's own tokenizer (``Gateway.prompt_tokens``: the same number a completed
  request reports), else an estimate (characters / 4); such events carry ``estimated=True`` and status
  ``client_disconnected``;
- an engine that dies mid-stream: same counting, status ``upstream_failed``;
- engine errors (4xx/5xx) are forwarded as they are, with a zero-token event (``upstream_error``).
"""

from __future__ import annotations

import asyncio
import json
import math
import os
import time
from typing import Any

from zhisuan.gateway.admission import NO_REPLICA, QueueBounds, acquire, answer_refusal
from zhisuan.gateway.exchanges import RETRY, UPSTREAM_HEAD, BufferedExchange, StreamExchange
from zhisuan.gateway.finish import Finish, Metering
from zhisuan.gateway.http import HttpConnection, Request
from zhisuan.gateway.metrics import GatewayMetrics
from zhisuan.gateway.openai_body import (
    completion_limit,
    error_body,
    metric_label,
    model_card,
    model_not_found,
    model_not_running,
    prompt_text_bytes,
)
from zhisuan.gateway.protocols import Denial, KeyAuthority, KeyGrant, KeyRejected, RateLimiter, Reservation
from zhisuan.gateway.router import ModelRoute, Replica, Router
from zhisuan.gateway.upstream import UpstreamConnection
from zhisuan.gateway.usage import UsageSpool

ENDPOINTS = {
    b"/v1/chat/completions": "chat.completions",
    b"/v1/completions": "completions",
    b"/v1/embeddings": "embeddings",
}
# Reservations against budgets (limits.py): prompt = its text's bytes + the route's template overhead
# (router.ModelRoute.prompt_overhead); completion = max_tokens. A request under a budget that sets no
# max_tokens is forwarded with max_tokens = DEFAULT_COMPLETION_BOUND, so what it reserved bounds its use.
DEFAULT_COMPLETION_BOUND = 1024
# Refusals of names no route has: the caller's own string, not a label worth a time series each.
UNKNOWN_LABEL = "unknown"
# Retry-After of a registered model with no running replica (a replica starts within seconds to a minute).
NOT_RUNNING_RETRY_S = 5
TOO_DEEP = error_body("The JSON body of your request is nested too deeply.", "invalid_request_error", "json_too_deep")


def parse_body(conn: HttpConnection, raw: bytes) -> dict[str, Any] | None:
    """The request's JSON object, or None after answering 400 (never a 500: every parse failure is the
    client's, including nesting deeper than the parser recurses)."""
    try:
        body = json.loads(raw)
    except RecursionError:
        conn.respond(400, TOO_DEEP)
        return None
    except ValueError:  # includes a body that is not UTF-8
        body = None
    if not isinstance(body, dict):
        conn.respond(400, error_body("We could not parse the JSON body of your request as a JSON object.",
                                     "invalid_request_error"))
        return None
    return body


Admitted = tuple[KeyGrant, dict[str, Any], str, ModelRoute, Reservation | None]  # grant, body, model, route, held


class Tries:
    """The replicas one request has tried, and how the failed tries failed."""

    __slots__ = ("tried", "reuse_retried", "timed_out")

    def __init__(self) -> None:
        self.tried: set[str] = set()
        self.reuse_retried = False
        self.timed_out = False


class Gateway(Metering):
    def __init__(self, router: Router, keys: KeyAuthority, limiter: RateLimiter, spool: UsageSpool,
                 *, metrics: GatewayMetrics | None = None, max_attempts: int = 3, gateway_id: str = "gw",
                 first_byte_timeout_s: float = 30.0, nonstream_first_byte_timeout_s: float = 600.0,
                 max_queued_s: float = 600.0, queue_bounds: QueueBounds | None = None) -> None:
        self.router = router
        self.keys = keys
        self.limiter = limiter
        self.spool = spool
        self.metrics = metrics or GatewayMetrics()
        self.metrics.outstanding = router.gauges
        self.max_attempts = max_attempts
        self.first_byte_timeout_s = first_byte_timeout_s
        self.nonstream_first_byte_timeout_s = nonstream_first_byte_timeout_s
        self.max_queued_s = max_queued_s  # 0: every first-byte timeout fails (no queued/hung judgement)
        self.queue_bounds = queue_bounds or QueueBounds()  # the gateway's own queue per route (admission.py)
        self.metrics.queue_lengths = router.queue_lengths
        self._id_prefix = f"{gateway_id}-{os.urandom(6).hex()}-"
        self._seq = 0
        self.in_flight = 0  # forwarded requests not yet answered (decides inline spool commits)

    def next_event_id(self) -> str:
        self._seq += 1
        return f"{self._id_prefix}{self._seq:x}"

    async def handle(self, conn: HttpConnection, req: Request) -> None:
        endpoint = ENDPOINTS.get(req.path)
        if endpoint is not None:
            if req.method != b"POST":
                conn.respond(405, error_body("Use POST.", "invalid_request_error"))
                return
            await self.forward(conn, req, endpoint)
            return
        if req.method == b"GET":
            if req.path == b"/v1/models" or req.path.startswith(b"/v1/models/"):
                await self.models(conn, req)
                return
            if req.path == b"/metrics":
                conn.respond(200, self.metrics.render(), b"text/plain; version=0.0.4")
                return
            if req.path in (b"/health", b"/healthz"):
                conn.respond(200, b'{"status":"ok"}')
                return
        conn.respond(404, error_body(f"Unknown request URL: {req.method.decode()} {req.path.decode()}.",
                                     "invalid_request_error", "unknown_url"))

    async def _grant(self, conn: HttpConnection, req: Request) -> KeyGrant | None:
        auth = req.headers.get(b"authorization", b"")
        if not auth.startswith(b"Bearer ") or len(auth) < 8:
            conn.respond(401, error_body("You didn't provide an API key. Use the header Authorization: Bearer <key>.",
                                         "invalid_request_error", "missing_api_key"))
            self.metrics.reject("", "unauthenticated")
            return None
        try:
            return await self.keys.authenticate(auth[7:].decode(errors="replace"), conn.peer)
        except KeyRejected as exc:
            if exc.retry_after is not None:
                conn.respond(429, error_body(exc.message, "rate_limit_error", exc.code),
                             extra=b"retry-after: %d\r\n" % max(1, math.ceil(exc.retry_after)))
            else:
                conn.respond(401, error_body(exc.message, "invalid_request_error", exc.code))
            self.metrics.reject("", "unauthenticated")
            return None

    async def models(self, conn: HttpConnection, req: Request) -> None:
        grant = await self._grant(conn, req)
        if grant is None:
            return
        if req.path.startswith(b"/v1/models/"):
            name = req.path[len(b"/v1/models/") :].decode(errors="replace")
            route = self.router.resolve(name, grant.owner)
            if route is None or not grant.may_use(name):
                conn.respond(404, model_not_found(name))
                return
            conn.respond(200, json.dumps(model_card(route)).encode())
            return
        data = [model_card(r) for r in self.router.visible(grant.owner) if grant.may_use(r.name)]
        conn.respond(200, json.dumps({"object": "list", "data": data}).encode())

    def _limit_response(self, conn: HttpConnection, model: str, d: Denial) -> None:
        retry = max(1, math.ceil(d.retry_after))
        code = "insufficient_quota" if d.kind == "budget" else "rate_limit_exceeded"
        type_ = "insufficient_quota" if d.kind == "budget" else d.kind
        conn.respond(429, error_body(d.message + f" Retry after {retry} s.", type_, code),
                     extra=b"retry-after: %d\r\nx-ratelimit-scope: %s\r\n" % (retry, d.scope.encode()))
        self.metrics.reject(model, f"{d.kind}_{d.scope}")

    async def forward(self, conn: HttpConnection, req: Request, endpoint: str) -> None:
        self.in_flight += 1
        try:
            await self._forward(conn, req, endpoint)
        finally:
            self.in_flight -= 1

    async def _forward(self, conn: HttpConnection, req: Request, endpoint: str) -> None:
        admitted = await self._admit(conn, req, endpoint)
        if admitted is None:
            return
        grant, body, model, route, reservation = admitted
        try:
            await self._serve(conn, req, endpoint, grant, body, model, route, reservation)
        finally:
            if reservation is not None and reservation.held:  # not served after all: nothing to settle
                self.limiter.release(reservation)

    async def _serve(self, conn: HttpConnection, req: Request, endpoint: str, grant: KeyGrant, body: dict[str, Any],
                     model: str, route: ModelRoute, reservation: Reservation | None) -> None:
        stream = bool(body.get("stream")) and endpoint != "embeddings"
        rewrite = reservation is not None and reservation.sets_max_tokens
        try:
            payload, client_wants_usage = self._payload(req.body, body, stream, rewrite)
        except RecursionError:  # parsed at the edge of the parser's depth, too deep to write back
            conn.respond(400, TOO_DEEP)
            return
        timeout = self.first_byte_timeout_s if stream else self.nonstream_first_byte_timeout_s
        started = time.monotonic()
        wall = time.time()
        event_id = self.next_event_id()
        tries = Tries()
        loop = asyncio.get_running_loop()
        party = grant.tenant_id if route.tenant_id is None else grant.key_id  # fair between tenants / keys
        for _ in range(self.max_attempts + 1):
            replica = route.take_free(party, tries.tried)  # the fast path: a free slot and nobody waiting
            if replica is None:
                got = await self._queued_slot(conn, party, model, route, tries, started)
                if got == NO_REPLICA:
                    break
                if not isinstance(got, Replica):
                    return  # refused (answered) or the client left
                replica = got
            try:
                up = await self._connect(model, replica, tries)
                if up is None:
                    continue
                head = UPSTREAM_HEAD % (req.path, replica.pool.host_header, replica.auth_header, len(payload))
                fut: asyncio.Future[int] = loop.create_future()
                x = StreamExchange(fut, conn, up, client_wants_usage, started, event_id) if stream \
                    else BufferedExchange(fut)
                x.waiting = (replica, started)
                x.queue_limit_s = self.max_queued_s
                replica.wait_began(started)
                up.send(head + payload, x, timeout)
                try:
                    result = await fut
                finally:
                    x.abandon_wait()
                    if x.extended:
                        self.metrics.of(replica.metric_model, replica.metric_id).queued_windows += x.extended
                if result == RETRY:
                    self._retry_bookkeeping(model, replica, up, tries)
                    continue
                done = Finish(event_id, grant, model, route, replica, endpoint, reservation, started, wall)
                if isinstance(x, StreamExchange):
                    await self._finish_stream(conn, done, x, result, body)
                else:
                    await self._finish_buffered(conn, done, x, result)
                return
            finally:
                route.release(replica)  # the slot goes to the next waiter, if any
        self._unavailable(conn, model, metric_label(route, model), timeout if tries.timed_out else None)

    async def _queued_slot(self, conn: HttpConnection, party: str, model: str, route: ModelRoute,
                           tries: Tries, started: float) -> Replica | int:
        """A slot through the gateway's queue (``admission``), or why not: ``NO_REPLICA`` (the caller
        answers 503/504 as without a queue), else refused (answered here) or the client left."""
        label = metric_label(route, model)
        got = await acquire(route, party, tries.tried, conn, self.queue_bounds, started)
        if isinstance(got, Replica):
            self.metrics.queue_waited(label, time.monotonic() - started)
            return got
        if got != NO_REPLICA:
            answer_refusal(conn, self.metrics, model, label, got, self.queue_bounds)
        return got

    async def _admit(self, conn: HttpConnection, req: Request, endpoint: str) -> Admitted | None:
        """Key, JSON body, model route and scope, limits; answers the client itself on a refusal."""
        grant = await self._grant(conn, req)
        if grant is None:
            return None
        body = parse_body(conn, req.body)
        if body is None:
            return None
        model = body.get("model")
        if not isinstance(model, str) or not model:
            conn.respond(400, error_body("You must provide a model parameter.", "invalid_request_error",
                                         None, "model"))
            return None
        route = self.router.resolve(model, grant.owner)
        if route is None or not grant.may_use(model):
            if route is None and model in self.router.registered and grant.may_use(model):
                # Registered, but no replica this caller may call runs now (the same answer whether or
                # not another tenant runs a private one): it may start soon.
                conn.respond(503, model_not_running(model), extra=b"retry-after: %d\r\n" % NOT_RUNNING_RETRY_S)
                self.router.want(model, grant.owner)  # a deployment scaled to zero starts a replica
                self.metrics.reject(UNKNOWN_LABEL, "model_not_running")
                return None
            # The same answer for a name that never existed and another tenant's private model.
            conn.respond(404, model_not_found(model))
            self.metrics.reject(UNKNOWN_LABEL, "model_not_found")
            return None
        reservation = self._reservation(conn, grant, body, endpoint, route)
        if reservation is False:
            return None
        held = reservation if isinstance(reservation, Reservation) else None
        denial = await self.limiter.admit(grant, model, held)
        if denial is not None:
            self._limit_response(conn, metric_label(route, model), denial)
            return None
        return grant, body, model, route, held

    @staticmethod
    def _reservation(conn: HttpConnection, grant: KeyGrant, body: dict[str, Any], endpoint: str,
                     route: ModelRoute) -> Reservation | None | bool:  # bool: only False
        """What the request may use, when a budget applies (else None); False after answering a 400."""
        limit = completion_limit(body)
        if limit is False:
            conn.respond(400, error_body("max_tokens must be a positive integer.", "invalid_request_error",
                                         "invalid_value", "max_tokens"))
            return False
        if not (grant.key_limits.has_budget or grant.tenant_limits.has_budget):
            return None
        text = prompt_text_bytes(body)
        prompt = text + route.prompt_overhead
        if endpoint == "embeddings":
            return Reservation(prompt, 0, prompt_text=text)
        if limit is None:  # bound it, so that the reservation bounds the use
            body["max_tokens"] = DEFAULT_COMPLETION_BOUND
            return Reservation(prompt, DEFAULT_COMPLETION_BOUND, sets_max_tokens=True, prompt_text=text)
        return Reservation(prompt, int(limit), prompt_text=text)

    @staticmethod
    def _payload(raw: bytes, body: dict[str, Any], stream: bool, rewrite: bool) -> tuple[bytes, bool]:
        """The body to send upstream (streams ask the engine for a final usage chunk; ``rewrite``: the
        gateway changed ``body``) and whether the client asked for that chunk itself."""
        if not stream:
            return (json.dumps(body, separators=(",", ":")).encode() if rewrite else raw), False
        so = body.get("stream_options")
        so = so if isinstance(so, dict) else {}
        if so.get("include_usage"):
            return (json.dumps(body, separators=(",", ":")).encode() if rewrite else raw), True
        body["stream_options"] = {**so, "include_usage": True}
        return json.dumps(body, separators=(",", ":")).encode(), False

    async def _connect(self, model: str, replica: Replica, tries: Tries) -> UpstreamConnection | None:
        try:
            return await replica.pool.acquire()
        except (TimeoutError, OSError):
            replica.eject()
            tries.tried.add(replica.id)
            stats = self.metrics.of(replica.metric_model, replica.metric_id)
            stats.errors["connect"] = stats.errors.get("connect", 0) + 1
            return None

    def _unavailable(self, conn: HttpConnection, model: str, label: str, timed_out_after: float | None) -> None:
        """No replica answered: 504 if one was reached but sent nothing in time, else 503."""
        if timed_out_after is not None:
            conn.respond(504, error_body(f"No replica of model '{model}' started answering within "
                                         f"{timed_out_after:g} s; try again later.", "server_error",
                                         "upstream_timeout"))
            self.metrics.reject(label, "upstream_timeout")
            return
        conn.respond(503, error_body(f"No healthy replica of model '{model}' is available; try again later.",
                                     "service_unavailable", "no_healthy_replica"), extra=b"retry-after: 1\r\n")
        self.metrics.reject(label, "no_healthy_replica")

    def _retry_bookkeeping(self, model: str, replica: Replica, up: UpstreamConnection, tries: Tries) -> None:
        stats = self.metrics.of(replica.metric_model, replica.metric_id)
        kind = "first_byte_timeout" if up.timed_out else "before_first_byte"
        stats.errors[kind] = stats.errors.get(kind, 0) + 1
        if up.timed_out:
            tries.timed_out = True
        elif up.reused and not tries.reuse_retried:
            tries.reuse_retried = True  # a stale keep-alive connection: the replica itself may be fine
            return
        replica.eject()
        tries.tried.add(replica.id)
