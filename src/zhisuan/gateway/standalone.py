"""A gateway process of its own, beside the control plane (``zhisuan gateway``).

Several of them may share one database and one Redis, each on its own port behind a load balancer:

- keys: the platform's (``keys.DbKeyAuthority`` over the shared database, ``inference`` scope), with each
  key's and tenant's model scope, RPM/TPM and token and money budgets (``db_limits``), cached ``key_ttl_s``;
  with Redis, a revocation committed by the control plane (run with the same ``ZHISUAN_REDIS_URL``) is
  seen before the next request (``revocation``), without it within ``key_ttl_s``;
- limits: counted in Redis (``limits.RedisLimitStore``) under ``limits_prefix``, so they hold jointly over
  every process using the same Redis and prefix (without Redis: per process, which a warning says);
- money budgets: priced by the default price book (``db_prices``);
- usage: spooled durably in ``spool_dir`` before each response completes, then shipped in batches by
  ``http_sink.HttpUsageSink`` to the control plane's ``POST /api/v1/usage/token-events`` with the
  operator key ``token`` (a re-sent batch counts once; refused events land in the spool directory).

Replicas are discovered: the gateway follows the control plane's routable replicas (``discovery``:
``GET /api/v1/serving/endpoints`` every ``discovery_interval_s`` with the same operator key, 304 while
nothing changed; the last known set is kept while the control plane is unreachable). Each gets at most
its engine's slots of this process's requests at once; the rest wait in a queue per model, fair across
tenants (``admission``; ``queue_max_length``, ``queue_max_wait_s``). Hand-listed upstreams are not capped.

Engines the platform does not run can still be hand-listed: ``--upstream MODEL=http://HOST:PORT`` is a
public model, callable by every tenant;
``--upstream MODEL@TENANT=http://HOST:PORT`` is tenant TENANT's private model (TENANT is a tenant name, looked
up once at start), visible only to that tenant's keys (``router.Router.resolve``). An engine started with an
API key takes it as the URL's user part, ``http://ENGINE_KEY@HOST:PORT``: the gateway presents it upstream.

Each process needs its own spool directory: it is locked, so a second process pointed at it refuses to
start. The gateway never migrates the database; the control plane (``zhisuan up``) does.
"""

from __future__ import annotations

import asyncio
import fcntl
import logging
import os
import signal
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx

from zhisuan.config import redact_url_passwords
from zhisuan.gateway.db_limits import limits_from_db
from zhisuan.gateway.db_prices import DbPrices
from zhisuan.gateway.discovery import ControlPlaneEndpoints, ReplicaDiscovery
from zhisuan.gateway.http_sink import HttpUsageSink
from zhisuan.gateway.keys import DbKeyAuthority
from zhisuan.gateway.limits import InMemoryLimitStore, LimitStore, RedisLimitStore
from zhisuan.gateway.redis_access import PipelinedRedis
from zhisuan.gateway.revocation import RedisRevocationWatch
from zhisuan.gateway.server import GatewayConfig, GatewayServer

log = logging.getLogger("zhisuan.gateway")


class StandaloneError(Exception):
    """A configuration the gateway cannot start with; the message says what to fix."""


@dataclass
class StandaloneConfig:
    database_url: str
    server: str  # control plane base URL, e.g. http://127.0.0.1:8420
    token: str  # an operator API key with the 'write' scope: it posts usage
    spool_dir: Path
    # "model" or "model@tenant" → ["http://[engine-key@]host:port", …]
    upstreams: dict[str, list[str]] = field(default_factory=dict)
    redis_url: str | None = None
    limits_prefix: str = "zs:lim:"
    host: str = "127.0.0.1"
    port: int = 8422
    provider: str = "local"  # the provider credited with the tokens (owner of the replicas)
    gateway_id: str = "gw"
    key_ttl_s: float = 5.0
    price_ttl_s: float = 30.0
    fsync: bool = True
    # Follow the control plane's routable replicas (gateway.discovery), every this many seconds.
    discovery: bool = True
    discovery_interval_s: float = 1.0
    # Ship usage summed per key × model × second (exact; ``http_sink``): what lets one control plane keep
    # up with many gateways. The per-request lines stay in the spool until shipped.
    usage_rollup: bool = True
    # The gateway's own queue per model route in front of replicas' slots (``admission``).
    queue_max_length: int = 1000
    queue_max_wait_s: float = 300.0


def parse_upstreams(specs: list[str]) -> dict[str, list[str]]:
    """``["m=http://h:1", "m=http://h:2", "p@acme=http://h:3"]`` →
    ``{"m": ["http://h:1", "http://h:2"], "p@acme": ["http://h:3"]}`` (validated)."""
    out: dict[str, list[str]] = {}
    for spec in specs:
        name, sep, url = spec.partition("=")
        model, _, tenant = name.partition("@")
        if not sep or not model or not url or (name.endswith("@") or "@" in tenant):
            raise StandaloneError(f"--upstream '{spec}' is not MODEL[@TENANT]=http://[ENGINE_KEY@]HOST:PORT")
        replica_address(url)
        out.setdefault(name, []).append(url)
    return out


def replica_address(url: str) -> tuple[str, int]:
    """(host, port) of an engine's base URL; only plain http://[key@]host:port (the gateway speaks HTTP/1.1
    to replicas on a trusted network and adds the ``/v1`` paths itself)."""
    parts = urlsplit(url)
    if parts.scheme != "http" or not parts.hostname or parts.port is None or parts.path not in ("", "/") \
            or parts.password is not None:
        raise StandaloneError(f"upstream '{url}' must look like http://HOST:PORT or http://ENGINE_KEY@HOST:PORT")
    return parts.hostname, parts.port


def tenant_ids(sessions: Any, names: set[str]) -> dict[str, int]:
    """Tenant name → id for the owners named in ``--upstream MODEL@TENANT`` (one query at start)."""
    from sqlalchemy import select

    from zhisuan.identity.models import Tenant

    if not names:
        return {}
    with sessions() as session:
        found = dict(session.execute(select(Tenant.name, Tenant.id).where(Tenant.name.in_(names))).tuples().all())
    unknown = sorted(names - set(found))
    if unknown:
        raise StandaloneError(f"--upstream names unknown tenant(s) {unknown}")
    return found


def replica_entries(upstreams: dict[str, list[str]], owners: dict[str, int]) -> dict[str, list[dict[str, Any]]]:
    """``GatewayConfig.models`` for the hand-listed upstreams: owner and engine key per replica."""
    models: dict[str, list[dict[str, Any]]] = {}
    for name, urls in upstreams.items():
        model, _, tenant = name.partition("@")
        for url in urls:
            host, port = replica_address(url)
            entries = models.setdefault(model, [])
            entries.append({"id": f"{model}-{len(entries)}" if not tenant else f"{tenant}-{model}-{len(entries)}",
                            "host": host, "port": port, "tenant_id": owners[tenant] if tenant else None,
                            "secret": urlsplit(url).username or None})
    return models


def lock_spool(spool_dir: Path) -> int:
    """Hold an exclusive lock on the spool directory for the life of the process (two writers of one
    spool would interleave segments and ship each other's position)."""
    spool_dir.mkdir(parents=True, exist_ok=True)
    fd = os.open(spool_dir / "gateway.lock", os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError as exc:
        os.close(fd)
        raise StandaloneError(f"spool directory {spool_dir} is in use by another gateway; give each its own"
                              " --spool-dir") from exc
    return fd


async def check_control_plane(server: str, token: str) -> None:
    """Fail fast on a token the control plane refuses; an unreachable control plane is only a warning
    (usage waits in the spool until it answers)."""
    try:
        async with httpx.AsyncClient(timeout=10) as client:
            response = await client.get(server.rstrip("/") + "/api/v1/auth/whoami",
                                        headers={"Authorization": f"Bearer {token}"})
    except httpx.HTTPError as exc:
        log.warning("control plane %s unreachable (%r); usage stays spooled until it answers", server, exc)
        return
    if response.status_code in (401, 403):
        raise StandaloneError(f"the control plane {server} refuses --token ({response.status_code})")
    if not response.is_success:
        raise StandaloneError(f"{server} answered {response.status_code} to GET /api/v1/auth/whoami: is it a "
                              "zhisuan control plane?")
    me = response.json()
    if me.get("role") != "operator" or "write" not in me.get("scopes", []):
        raise StandaloneError("--token must be an operator key with the 'write' scope: it posts usage events")


class StandaloneGateway:
    """The assembled process: ``await start()``, serve, ``await stop()`` (drains and ships usage)."""

    def __init__(self, config: StandaloneConfig) -> None:
        self.config = config
        self.server: GatewayServer | None = None
        self.sink: HttpUsageSink | None = None
        self._engine: Any = None
        self._redis: PipelinedRedis | None = None
        self._keys: DbKeyAuthority | None = None
        self._lock_fd = -1
        self.discovery: ReplicaDiscovery | None = None
        self._endpoints: ControlPlaneEndpoints | None = None

    @property
    def base_url(self) -> str:
        assert self.server is not None
        return self.server.base_url

    async def start(self) -> None:
        from zhisuan.config import normalise_database_url
        from zhisuan.store.base import make_engine, make_session_factory

        cfg = self.config
        self._lock_fd = lock_spool(cfg.spool_dir)
        await check_control_plane(cfg.server, cfg.token)
        self._engine = make_engine(normalise_database_url(cfg.database_url))
        sessions = make_session_factory(self._engine)
        prices = DbPrices(sessions, ttl_s=cfg.price_ttl_s)
        await prices.load()
        keys = DbKeyAuthority(sessions, limits_for=limits_from_db(sessions), ttl_s=cfg.key_ttl_s)
        self.sink = HttpUsageSink(cfg.server, cfg.token, dead_letter_dir=cfg.spool_dir, provider=cfg.provider,
                                  rollup=cfg.usage_rollup)
        owners = tenant_ids(sessions, {n.partition("@")[2] for n in cfg.upstreams} - {""})
        store = await self._limit_store()
        if self._redis is not None:  # revocations committed anywhere reach this process before its next request
            keys.watch = RedisRevocationWatch(self._redis, keys.revoked_many, keys.forget_all)
            await keys.watch.start()
        self._keys = keys
        self.server = GatewayServer(self._gateway_config(owners), keys=keys, sink=self.sink, store=store,
                                    price=prices)
        await self.server.start()
        if cfg.discovery:
            self._endpoints = ControlPlaneEndpoints(cfg.server, cfg.token)
            self.discovery = ReplicaDiscovery(self.server.router, self._endpoints, cfg.discovery_interval_s,
                                              demand=self._endpoints.report_demand)
            await self.discovery.poll_once()  # route from the first request on
            self.discovery.start()

    def _gateway_config(self, owners: dict[str, int]) -> GatewayConfig:
        cfg = self.config
        return GatewayConfig(spool_dir=cfg.spool_dir, host=cfg.host, port=cfg.port, fsync=cfg.fsync,
                             gateway_id=cfg.gateway_id, models=replica_entries(cfg.upstreams, owners),
                             queue_max_length=cfg.queue_max_length, queue_max_wait_s=cfg.queue_max_wait_s)

    async def _limit_store(self) -> LimitStore:
        if not self.config.redis_url:
            log.warning("no --redis: limits are counted in this process only, not across gateways")
            return InMemoryLimitStore()
        self._redis = PipelinedRedis.from_url(self.config.redis_url)
        try:
            await self._redis.execute("PING")
        except Exception as exc:  # connection refused, or an error reply
            shown = redact_url_passwords(self.config.redis_url)
            raise StandaloneError(f"Redis {shown} does not answer: {redact_url_passwords(str(exc))}") from exc
        return RedisLimitStore(self._redis, prefix=self.config.limits_prefix)

    async def stop(self) -> None:
        if self.discovery is not None:
            await self.discovery.stop()
        if self._endpoints is not None:
            await self._endpoints.aclose()
        if self.server is not None:
            try:
                await self.server.stop()  # drains the spool and ships what it can
            except Exception:  # e.g. the control plane is down: the spool keeps the rest for the next start
                log.exception("usage not fully shipped at shutdown; it stays in %s", self.config.spool_dir)
        if self._keys is not None:
            self._keys.close()
        if self.sink is not None:
            await self.sink.aclose()
        if self._redis is not None:
            await self._redis.close()
        if self._engine is not None:
            self._engine.dispose()
        if self._lock_fd >= 0:
            os.close(self._lock_fd)
            self._lock_fd = -1


async def serve_forever(config: StandaloneConfig, ready: Any = print) -> None:
    """Run until SIGTERM or SIGINT; ``ready(line)`` announces the listening address."""
    gateway = StandaloneGateway(config)
    try:
        await gateway.start()
        ready(f"zhisuan gateway listening on {gateway.base_url}")
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        await stop.wait()
    finally:
        await gateway.stop()


def run(config: StandaloneConfig) -> None:
    try:
        import uvloop  # type: ignore[import-not-found]

        uvloop.install()
    except ImportError:
        pass
    asyncio.run(serve_forever(config))
