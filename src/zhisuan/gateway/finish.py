"""Finishing a forwarded request: its one usage event (committed to the spool before the response
completes), its limits settled, its metrics; the answer to the client. ``Metering`` is a part of
``proxy.Gateway`` (the metering rules are in ``proxy``'s doc)."""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

from zhisuan.gateway.exchanges import DONE, FAILED, UPSTREAM_HEAD, BufferedExchange, StreamExchange
from zhisuan.gateway.http import HttpConnection
from zhisuan.gateway.metrics import GatewayMetrics
from zhisuan.gateway.openai_body import error_body, estimate_prompt_tokens, extract_usage
from zhisuan.gateway.protocols import KeyGrant, RateLimiter, Reservation, UsageEvent
from zhisuan.gateway.router import ModelRoute, Replica
from zhisuan.gateway.usage import UsageSpool

TOKENIZE_TIMEOUT_S = 5.0


class Finish:
    """What finishing one forwarded request needs to know."""

    __slots__ = ("event_id", "grant", "model", "route", "replica", "endpoint", "reservation", "started", "wall")

    def __init__(self, event_id: str, grant: KeyGrant, model: str, route: ModelRoute, replica: Replica, endpoint: str,
                 reservation: Reservation | None, started: float, wall: float) -> None:
        self.event_id = event_id
        self.grant = grant
        self.model = model
        self.route = route
        self.replica = replica
        self.endpoint = endpoint
        self.reservation = reservation
        self.started = started
        self.wall = wall


class Metering:
    metrics: GatewayMetrics
    limiter: RateLimiter
    spool: UsageSpool
    in_flight: int

    def _event(self, f: Finish, p: int, c: int, stream: bool, status: str, estimated: bool = False) -> UsageEvent:
        return UsageEvent(f.event_id, f.grant.key_id, f.grant.tenant_id, f.model, f.replica.id, p, c, stream,
                          status, f.wall, time.time(), estimated, f.endpoint)

    async def _commit(self, event: UsageEvent, f: Finish, stats: Any) -> None:
        stats.prompt_tokens += event.prompt_tokens
        stats.completion_tokens += event.completion_tokens
        if f.reservation is not None and event.prompt_tokens and not event.estimated:
            f.route.observe_prompt(event.prompt_tokens, f.reservation.prompt_text)
        self.limiter.record(f.grant, event.model, event.prompt_tokens, event.completion_tokens, f.reservation)
        # Alone in the gateway: commit on the loop thread now (no group to wait for, nobody to stall).
        await self.spool.append(event, alone=self.in_flight == 1)

    async def _finish_buffered(self, conn: HttpConnection, f: Finish, bx: BufferedExchange, result: int) -> None:
        stats = self.metrics.of(f.replica.metric_model, f.replica.metric_id)
        if result == FAILED:
            stats.errors["upstream_failed"] = stats.errors.get("upstream_failed", 0) + 1
            await self._commit(self._event(f, 0, 0, False, "upstream_failed"), f, stats)
            conn.respond(502, error_body("The model replica failed while answering.", "server_error",
                                         "upstream_failed"))
            stats.requests["502"] = stats.requests.get("502", 0) + 1
            return
        data = b"".join(bx.chunks)
        if bx.status == 200:
            usage = extract_usage(data) or {}
            p = int(usage.get("prompt_tokens") or 0)
            c = int(usage.get("completion_tokens") or 0)
            event = self._event(f, p, c, False, "ok")
        else:
            stats.errors["upstream_status"] = stats.errors.get("upstream_status", 0) + 1
            event = self._event(f, 0, 0, False, "upstream_error")
        await self._commit(event, f, stats)
        conn.respond(bx.status, data, extra=b"x-request-id: %s\r\n" % f.event_id.encode())
        elapsed = time.monotonic() - f.started
        stats.ttft.observe(elapsed)
        stats.latency.observe(elapsed)
        key = str(bx.status)
        stats.requests[key] = stats.requests.get(key, 0) + 1

    async def _finish_stream(self, conn: HttpConnection, f: Finish, sx: StreamExchange, result: int,
                             body: dict[str, Any]) -> None:
        stats = self.metrics.of(f.replica.metric_model, f.replica.metric_id)
        if not sx.streaming:  # the engine answered with an error, not a stream
            status = "upstream_failed" if result == FAILED else "upstream_error"
            stats.errors[status] = stats.errors.get(status, 0) + 1
            await self._commit(self._event(f, 0, 0, True, status), f, stats)
            code = sx.status if result == DONE else 502
            conn.respond(code, b"".join(sx.error_chunks) if result == DONE else
                         error_body("The model replica failed while answering.", "server_error", "upstream_failed"))
            stats.requests[str(code)] = stats.requests.get(str(code), 0) + 1
            return
        usage = sx.usage
        if result == DONE and usage is not None:
            event = self._event(f, int(usage.get("prompt_tokens") or 0), int(usage.get("completion_tokens") or 0),
                                True, "ok")
        else:
            status = "client_disconnected" if sx.disconnected else ("upstream_failed" if result == FAILED else "ok")
            p = int(usage.get("prompt_tokens") or 0) if usage else await self.prompt_tokens(f.replica, f.endpoint, body)
            event = self._event(f, p, sx.content_chunks, True, status, estimated=True)
            if status != "ok":
                stats.errors[status] = stats.errors.get(status, 0) + 1
        await self._commit(event, f, stats)
        if result == DONE:
            conn.end_stream(b"".join(sx.held))
        else:
            conn.abort()
        elapsed = time.monotonic() - f.started
        stats.ttft.observe(sx.ttft if sx.ttft is not None else elapsed)
        stats.latency.observe(elapsed)
        key = "200" if result == DONE else ("499" if sx.disconnected else "502")
        stats.requests[key] = stats.requests.get(key, 0) + 1

    async def prompt_tokens(self, replica: Replica, endpoint: str, body: dict[str, Any]) -> int:
        """The prompt tokens of a stream the engine never reported usage for (it was cut off): counted by
        the replica's own tokenizer as the engine counts them (llama.cpp: ``/apply-template`` renders the
        chat template, ``/tokenize`` with special tokens), so an aborted stream bills the same prompt
        tokens as a completed one. Fallback when the engine cannot tell (no such endpoints, an error, no
        answer within ``TOKENIZE_TIMEOUT_S``): the estimate, characters / 4 (the event is ``estimated``)."""
        try:
            if endpoint == "chat.completions":
                rendered = await self._ask_replica(replica, b"/apply-template", {"messages": body.get("messages")})
                prompt = rendered.get("prompt")
            else:
                prompt = body.get("prompt")
            if isinstance(prompt, str):
                tokens = (await self._ask_replica(replica, b"/tokenize", {"content": prompt, "add_special": True,
                                                                          "parse_special": True})).get("tokens")
                if isinstance(tokens, list) and tokens:
                    return len(tokens)
        except (OSError, TimeoutError, ValueError):
            pass
        return estimate_prompt_tokens(body)

    async def _ask_replica(self, replica: Replica, path: bytes, request: dict[str, Any]) -> dict[str, Any]:
        """POST a small JSON request to ``replica`` (off the request path: metering a cut-off stream)."""
        up = await replica.pool.acquire()
        payload = json.dumps(request).encode()
        fut: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        x = BufferedExchange(fut)
        up.send(UPSTREAM_HEAD % (path, replica.pool.host_header, replica.auth_header, len(payload)) + payload, x,
                TOKENIZE_TIMEOUT_S)
        if await asyncio.wait_for(fut, TOKENIZE_TIMEOUT_S * 2) != DONE or x.status != 200:
            raise ValueError(f"replica answered {x.status} to {path.decode()}")
        answer = json.loads(b"".join(x.chunks))
        if not isinstance(answer, dict):
            raise ValueError(f"replica answered {path.decode()} with no object")
        return answer
