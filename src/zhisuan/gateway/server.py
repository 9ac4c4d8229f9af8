"""Assembles and runs a gateway process.

    python -m zhisuan.gateway --config gateway.json

The config (JSON) names the listen address, the spool directory, the shared limit store
(``redis_url``; absent = this process only), static replicas per model and, for demos and
benchmarks, in-memory keys. In the platform the control plane supplies keys (``DbKeyAuthority``)
and replicas (the supervisor's health callbacks) instead.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import signal
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from zhisuan.gateway.admission import QueueBounds
from zhisuan.gateway.http import DEFAULT_LIMITS, HttpLimits, serve
from zhisuan.gateway.keys import InMemoryKeyAuthority
from zhisuan.gateway.limits import InMemoryLimitStore, LimitStore, PriceFn, RedisLimitStore, TokenBucketLimiter
from zhisuan.gateway.protocols import KeyAuthority, KeyGrant, Limits, UsageSink
from zhisuan.gateway.proxy import Gateway
from zhisuan.gateway.router import Router
from zhisuan.gateway.usage import InMemoryUsageSink, SpoolShipper, SqliteUsageSink, UsageSpool

if TYPE_CHECKING:  # redis-py is imported only where Redis is configured (it is slow to import)
    from zhisuan.gateway.redis_access import PipelinedRedis


@dataclass
class GatewayConfig:
    spool_dir: Path
    host: str = "127.0.0.1"
    port: int = 0
    fsync: bool = True
    redis_url: str | None = None
    gateway_id: str = "gw"
    # model → [{"id": ..., "host": ..., "port": ..., "tenant_id": owner or absent (public), "secret": ...,
    #           "slots": requests at once (absent: no cap, no gateway queue in front of it)}]
    models: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    # [{"token", "key_id", "tenant_id", "owner": platform tenant id | absent, "models": [...] | null,
    #   "key_limits": {...}, "tenant_limits": {...}}]
    keys: list[dict[str, Any]] = field(default_factory=list)
    # "memory" or "sqlite:<path>"
    sink: str = "memory"
    ship_interval_s: float = 0.2
    # A replica silent this long after a request counts as failed before its first byte and the
    # request moves to another replica (proxy.py). Streams get their head and first tokens early;
    # a non-streaming answer (and embeddings) comes in one piece when generation is done.
    first_byte_timeout_s: float = 30.0
    nonstream_first_byte_timeout_s: float = 600.0
    # ... unless the replica is busy, not hung: it sent a byte of another request within that window.
    # Such a request waits window after window, up to this long after its arrival (0: never waits on).
    max_queued_s: float = 600.0
    # The gateway's own queue per route, in front of replicas' slots (admission.py): at most this many
    # waiters (then 503, or 429 when they are all the caller's), each at most this long (then 503).
    queue_max_length: int = 1000
    queue_max_wait_s: float = 300.0
    # Request size and client timeout bounds of the HTTP server (http.py)
    http: HttpLimits = DEFAULT_LIMITS

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> GatewayConfig:
        d = dict(d)
        d["spool_dir"] = Path(d["spool_dir"])
        if "http" in d:
            d["http"] = HttpLimits(**d["http"])
        return cls(**d)


def grant_of(d: dict[str, Any]) -> KeyGrant:
    models = d.get("models")
    return KeyGrant(key_id=d["key_id"], tenant_id=str(d.get("tenant_id", "default")),
                    models=frozenset(models) if models is not None else None,
                    key_limits=Limits(**(d.get("key_limits") or {})),
                    tenant_limits=Limits(**(d.get("tenant_limits") or {})), owner=d.get("owner"))


class GatewayServer:
    def __init__(self, config: GatewayConfig, *, keys: KeyAuthority | None = None, sink: UsageSink | None = None,
                 store: LimitStore | None = None, price: PriceFn | None = None) -> None:
        self.config = config
        self.router = Router()
        for model, replicas in config.models.items():
            for r in replicas:
                self.router.add_replica(model, r["id"], r.get("host", "127.0.0.1"), int(r["port"]),
                                        tenant_id=r.get("tenant_id"), secret=r.get("secret"), slots=r.get("slots"))
        if keys is None:
            mem = InMemoryKeyAuthority()
            for k in config.keys:
                mem.add(k["token"], grant_of(k))
            keys = mem
        self.keys = keys
        self.redis: PipelinedRedis | None = None
        if store is None:
            if config.redis_url:
                from zhisuan.gateway.redis_access import PipelinedRedis

                self.redis = PipelinedRedis.from_url(config.redis_url)
                store = RedisLimitStore(self.redis)
            else:
                store = InMemoryLimitStore()
        self.limiter = TokenBucketLimiter(store, price=price)
        if sink is None:
            if config.sink.startswith("sqlite:"):
                sink = SqliteUsageSink(Path(config.sink[len("sqlite:") :]))
            else:
                sink = InMemoryUsageSink()
        self.sink = sink
        self.spool = UsageSpool(config.spool_dir, fsync=config.fsync)
        self.shipper = SpoolShipper(config.spool_dir, sink, interval_s=config.ship_interval_s)
        self.gateway = Gateway(self.router, keys, self.limiter, self.spool, gateway_id=config.gateway_id,
                               first_byte_timeout_s=config.first_byte_timeout_s,
                               nonstream_first_byte_timeout_s=config.nonstream_first_byte_timeout_s,
                               max_queued_s=config.max_queued_s,
                               queue_bounds=QueueBounds(config.queue_max_length, config.queue_max_wait_s))
        self._server: asyncio.Server | None = None
        self._ship_task: asyncio.Task[None] | None = None

    @property
    def port(self) -> int:
        assert self._server is not None
        return int(self._server.sockets[0].getsockname()[1])

    @property
    def base_url(self) -> str:
        return f"http://{self.config.host}:{self.port}/v1"

    async def start(self) -> None:
        self.spool.open()
        self._server = await serve(self.gateway.handle, self.config.host, self.config.port, limits=self.config.http)
        self._ship_task = asyncio.ensure_future(self.shipper.run())

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
        await self.spool.drain()
        self.shipper.stop()
        if self._ship_task is not None:
            self._ship_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._ship_task
        await self.shipper.ship_all()
        await self.limiter.aclose()
        self.spool.close()
        for r in self.router.all_replicas():
            r.pool.close()
            r.slots_probe.close()
        if self.redis is not None:
            await self.redis.close()


async def run(config: GatewayConfig) -> None:
    server = GatewayServer(config)
    await server.start()
    print(f"zhisuan gateway listening on {server.base_url}", flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    await server.stop()


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="python -m zhisuan.gateway")
    p.add_argument("--config", required=True, type=Path)
    args = p.parse_args(argv)
    config = GatewayConfig.from_dict(json.loads(args.config.read_text()))
    try:
        import uvloop  # type: ignore[import-not-found]

        uvloop.install()
    except ImportError:
        pass
    asyncio.run(run(config))
