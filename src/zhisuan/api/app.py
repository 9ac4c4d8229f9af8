"""Assembles one control-plane process: REST API, console, metrics, health and background loops."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import os
import socket
import threading
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import anyio.to_thread
from fastapi import APIRouter, FastAPI, Request, Response
from fastapi.responses import HTMLResponse
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from sqlalchemy import Engine, select, text
from sqlalchemy.orm import Session, sessionmaker

from zhisuan import __version__
from zhisuan.api.admission import Admission, AdmissionLimits
from zhisuan.api.beat_shortcut import BeatShortcut
from zhisuan.api.browser_headers import BrowserHeaders
from zhisuan.api.deps import AppContext, ContextDep, SessionDep
from zhisuan.api.errors import install_error_handlers
from zhisuan.api.limits import RequestBounds
from zhisuan.api.local_agent import heartbeat_local_node, local_job_sync, register_local_node
from zhisuan.api.metrics import FleetCollector, HttpMetrics, RequestMetrics, check_metrics_access
from zhisuan.api.register_shortcut import RegisterShortcut
from zhisuan.api.swagger_ui import install_offline_docs
from zhisuan.billing.gateway_sink import LedgerUsageSink
from zhisuan.billing.loop import metering_pass
from zhisuan.billing.router import router as billing_router
from zhisuan.bootstrap import LOCAL_SITE, ensure_local_site
from zhisuan.catalog.loader import Catalog, load_catalog
from zhisuan.catalog.router import router as catalog_router
from zhisuan.config import Settings
from zhisuan.console.assets import console_asset, console_page
from zhisuan.console.playground import router as playground_router
from zhisuan.core.liveness import listening_since
from zhisuan.errors import NotFound
from zhisuan.exchange.router import router as exchange_router
from zhisuan.gateway.discovery import ReplicaDiscovery
from zhisuan.gateway.onebox import OneBox, start_onebox
from zhisuan.identity.keys import KeyVerifier
from zhisuan.identity.router import router as identity_router
from zhisuan.inventory.beats import BeatBuffer, mark_flushed
from zhisuan.inventory.models import Node
from zhisuan.inventory.registrar import Registrar
from zhisuan.inventory.router import router as inventory_router
from zhisuan.loops.count_fold import fold_pass
from zhisuan.loops.heartbeat_monitor import monitor_pass
from zhisuan.loops.warm_freeze import freeze_after
from zhisuan.market.router import router as market_router
from zhisuan.placement.router import router as placement_router
from zhisuan.serving.autoscaler import autoscale_pass
from zhisuan.serving.defaults import ensure_onebox_model
from zhisuan.serving.fleet import ReplicaKeys, demand_report, endpoints_fetch
from zhisuan.serving.router import router as serving_router
from zhisuan.serving.runtime import ServingRuntime
from zhisuan.store.base import make_engine, make_session_factory, transaction
from zhisuan.utilisation.loop import utilisation_pass
from zhisuan.utilisation.router import router as utilisation_router
from zhisuan.workloads.engines import site_engine_of
from zhisuan.workloads.router import router as workloads_router
from zhisuan.workloads.scheduler import JobScheduler, Wakeups
from zhisuan.workloads.site_sync import push_drain

log = logging.getLogger("zhisuan")


async def every(seconds: float, work: Callable[[], object], name: str, wake: threading.Event | None = None) -> None:
    """Run blocking ``work`` in a thread every ``seconds`` — or as soon as ``wake`` is set (a job was
    submitted, an agent saw a worker start): a failing pass is logged, not fatal."""
    while True:
        try:
            await asyncio.to_thread(work)
        except Exception:
            log.exception("background loop %s failed; retrying in %.0f s", name, seconds)
        if wake is None:
            await asyncio.sleep(seconds)
        else:
            await asyncio.to_thread(wake.wait, seconds)
            wake.clear()


def freeze_startup_objects() -> None:
    """Everything built before serving (routes, models, the catalog) lives as long as the process:
    moved out of the collector's reach, a full collection walks only what requests allocate (one
    gen-2 pause of 366 ms per ~1,000 beats before, ~6 ms after; BENCHMARKS.md "Control plane at
    scale"). Called by ``zhisuan up`` only: a process that builds many apps (the tests) would keep
    every frozen one alive."""
    gc.collect()
    gc.freeze()


def process_holder() -> str:
    """This process's name on a loop lease: host *and* pid, so two API processes on one machine
    (``zhisuan up --workers N``) are different holders and only one of them runs each loop."""
    return f"{socket.gethostname()[:48]}:{os.getpid()}"


def background_tasks(app: FastAPI) -> list[asyncio.Task[None]]:
    ctx: AppContext = app.state.ctx
    settings, catalog = ctx.settings, app.state.catalog
    loops: sessionmaker[Session] = app.state.loop_sessions  # their own pool: requests cannot starve them
    timeout = timedelta(seconds=settings.heartbeat_timeout_s)
    holder = app.state.holder
    beats = start_beat_buffer(ctx, loops, holder)
    # Start-up grace: a node's silence counts from one interval after this process began serving.
    heard_since = listening_since(ctx.clock(), timedelta(seconds=settings.heartbeat_interval_s))
    fold_lease = timedelta(seconds=max(60.0, 3 * settings.count_fold_interval_s))
    tasks = [
        asyncio.create_task(every(
            settings.monitor_interval_s,
            lambda: monitor_pass(loops, ctx.clock(), timeout, holder, beats, heard_since), "monitor"
        )),
        # Usage records accrue from the allocation ledger continuously; invoice runs also meter
        # their period first, so billing does not depend on this loop's timing.
        asyncio.create_task(every(
            settings.metering_interval_s, lambda: metering_pass(loops, catalog, ctx.clock(), holder=holder),
            "metering"
        )),
        asyncio.create_task(every(settings.job_interval_s, app.state.job_scheduler.run_pass, "jobs",
                                  app.state.wakeups.scheduler)),
        # The console's utilisation charts: the fleet sampled each minute, rolled up by hour and day.
        asyncio.create_task(every(
            settings.utilisation_interval_s, lambda: utilisation_pass(loops, ctx.clock(), holder), "utilisation")),
        asyncio.create_task(every(
            settings.autoscale_interval_s, lambda: autoscale_pass(loops, catalog, ctx.clock(), holder), "autoscaler"
        )),
        # The fleet's count rows folded as they come, not by the first reader after a quiet day.
        asyncio.create_task(every(
            settings.count_fold_interval_s, lambda: fold_pass(loops, ctx.clock(), holder, fold_lease), "count-fold")),
    ]
    if beats is not None:
        tasks.append(asyncio.create_task(every(
            settings.beat_flush_interval_s, lambda: beats.flush(loops, ctx.clock()), "beat-flush")))
    # Once the start-up grace is over, what the first beats built is frozen too (loops.warm_freeze).
    tasks.append(asyncio.create_task(freeze_after(settings.heartbeat_interval_s + settings.heartbeat_timeout_s)))
    if settings.register_local_site:
        site_id = ensure_local_site(ctx.sessions)
        name = register_local_node(ctx, catalog, site_id)
        app.state.local_node = (site_id, name)
        tasks.append(asyncio.create_task(every(
            settings.heartbeat_interval_s,
            lambda: heartbeat_local_node(loops, ctx, catalog, site_id, name), "local-heartbeat",
        )))
        sync = local_job_sync(ctx, site_id, name, on_change=app.state.wakeups.scheduler.set)
        tasks.append(asyncio.create_task(every(settings.job_interval_s, sync.step, "local-jobs",
                                               app.state.wakeups.agent)))
    return tasks


def start_beat_buffer(ctx: AppContext, loops: sessionmaker[Session], holder: str) -> BeatBuffer | None:
    """Heartbeats that change nothing are buffered and written once a second (inventory.beats). The
    process counts as flushed up to now before it serves: no beat has been buffered yet."""
    if ctx.settings.beat_flush_interval_s <= 0:
        return None
    # Beats answered from memory need a sweep at least this often, or they take the full path again.
    max_unswept_s = max(5.0, 5 * ctx.settings.beat_flush_interval_s)
    beats = BeatBuffer(holder, timedelta(seconds=ctx.settings.cordon_clear_after_s), max_unswept_s,
                       timedelta(seconds=ctx.settings.heartbeat_timeout_s))
    with transaction(loops) as session:
        mark_flushed(session, holder, ctx.clock())
    ctx.beats = beats
    return beats


async def close_beat_buffer(app: FastAPI) -> None:
    ctx: AppContext = app.state.ctx
    if ctx.beats is None:
        return
    try:
        await asyncio.to_thread(ctx.beats.close, app.state.loop_sessions, ctx.clock())
    except Exception:
        log.exception("could not write the last buffered heartbeats")
    ctx.beats = None


@dataclass
class Maas:
    """The one-box MaaS: the gateway server plus this machine's serving runtime."""

    box: OneBox
    runtime: ServingRuntime | None
    task: asyncio.Task[None] | None
    discovery: ReplicaDiscovery | None = None  # the replicas node agents run elsewhere

    async def stop(self) -> None:
        if self.discovery is not None:
            await self.discovery.stop()
        if self.task is not None:
            self.task.cancel()
            await asyncio.gather(self.task, return_exceptions=True)
        if self.runtime is not None:
            await self.runtime.shutdown()
        await self.box.stop()


def local_node_id(app: FastAPI) -> int | None:
    where = getattr(app.state, "local_node", None)
    if where is None:
        return None
    site_id, name = where
    with app.state.ctx.sessions() as session:
        node_id: int | None = session.execute(
            select(Node.id).where(Node.site_id == site_id, Node.name == name)).scalar_one_or_none()
        return node_id


async def start_maas(app: FastAPI) -> Maas:
    """The gateway on its own fast server (port + 1), and the runtime that runs this machine's
    replicas (on a first start: SmolLM2 on the CPU, registered and deployed like any model)."""
    ctx: AppContext = app.state.ctx
    settings, catalog = ctx.settings, app.state.catalog
    port = settings.gateway_port or settings.port + 1
    box = await start_onebox(ctx.sessions, settings.data_dir, host=settings.host, port=port, deploy_smollm2=False,
                             sink=LedgerUsageSink(ctx.sessions, provider=LOCAL_SITE))
    app.state.gateway_url = box.base_url  # the console's playground streams through it (console.playground)
    node_id = local_node_id(app)
    discovery = ReplicaDiscovery(box.server.router, endpoints_fetch(ctx.sessions, app.state.replica_keys, ctx.clock,
                                                                    exclude_node_id=node_id),
                                 demand=demand_report(ctx.sessions, ctx.clock))
    discovery.start()
    if node_id is None:
        log.info("OpenAI-compatible gateway at %s (no local node: no replicas run here)", box.base_url)
        return Maas(box, None, None, discovery)
    done = await asyncio.to_thread(ensure_onebox_model, ctx.sessions, catalog, ctx.clock())
    if done:
        log.info("model service: %s", done)
    runtime = ServingRuntime(ctx.sessions, catalog, box.server.router, settings.data_dir / "logs", node_id,
                             clock=ctx.clock, keys=app.state.replica_keys)
    await runtime.reconcile()
    task = asyncio.create_task(runtime.run(settings.serving_interval_s))
    log.info("OpenAI-compatible gateway at %s", box.base_url)
    return Maas(box, runtime, task, discovery)


@contextlib.asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    settings = app.state.ctx.settings
    # Sync endpoints and dependencies run on anyio's thread limiter: more threads than request
    # connections (Settings), so an admitted request always finds both.
    anyio.to_thread.current_default_thread_limiter().total_tokens = settings.worker_threads
    tasks = background_tasks(app) if settings.run_background_loops else []
    maas = await start_maas(app) if settings.maas else None
    yield
    if maas is not None:
        await maas.stop()
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    await close_beat_buffer(app)
    app.state.engine.dispose()
    app.state.loop_engine.dispose()


def service_routes(app: FastAPI, registry: CollectorRegistry) -> APIRouter:
    router = APIRouter()

    @router.get("/health", tags=["health"])
    def health() -> dict[str, str]:
        with app.state.ctx.sessions() as session:
            session.execute(text("SELECT 1"))
        return {"status": "ok", "version": __version__}

    @router.get("/metrics", tags=["health"], response_class=Response,
                responses={401: {"description": "not loopback and no key with the 'metrics' scope"}})
    def metrics(request: Request, session: SessionDep, ctx: ContextDep) -> Response:
        check_metrics_access(ctx, session, request.client.host if request.client else None,
                             request.headers.get("authorization"))
        return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)

    @router.get("/", response_class=HTMLResponse, include_in_schema=False)
    def console() -> str:
        return console_page()

    @router.get("/console/{asset:path}", include_in_schema=False)
    def console_file(asset: str) -> Response:
        found = console_asset(asset)
        if found is None:
            raise NotFound(f"no console asset '{asset[:64]}'", field="asset")
        return Response(found[0], media_type=found[1])

    return router


def create_app(settings: Settings, *, clock: Callable[[], datetime] | None = None,
               catalog: Catalog | None = None) -> FastAPI:
    """Build the ASGI app. The database must already be migrated (``bootstrap.migrate``)."""
    engine, loop_engine = request_and_loop_engines(settings)
    ctx = AppContext(settings=settings, sessions=make_session_factory(engine),
                     verifier=KeyVerifier(), clock=clock or (lambda: datetime.now(UTC)))
    app = FastAPI(title="zhisuan", version=__version__, lifespan=lifespan, docs_url=None, redoc_url=None,
                  description="AI compute cloud platform (智算云平台): inventory, tenancy and access.")
    app.state.ctx, app.state.engine = ctx, engine
    app.state.loop_engine, app.state.loop_sessions = loop_engine, make_session_factory(loop_engine)
    app.state.holder = process_holder()
    app.state.catalog = catalog or load_catalog()
    registry = CollectorRegistry()
    registry.register(FleetCollector(ctx.sessions))
    install_error_handlers(app)
    app.state.wakeups = Wakeups()
    app.state.replica_keys = ReplicaKeys()  # engine keys agents report, handed to gateways (serving.fleet)
    app.state.job_scheduler = JobScheduler(app.state.loop_sessions, app.state.catalog, settings.resolved_jobs_dir(),
                                           ctx.clock, holder=app.state.holder, wake_agents=app.state.wakeups.agent.set)
    app.state.driver_book = app.state.job_scheduler.book
    # A drain or resume of an engine-managed node is pushed to its engine (inventory knows no drivers).
    app.state.on_node_drain = lambda site, node, drained, reason: push_drain(
        app.state.driver_book, site_engine_of(site), node, drained, reason)
    for router in (identity_router, inventory_router, catalog_router, placement_router, market_router,
                   billing_router, serving_router, workloads_router, exchange_router, utilisation_router,
                   playground_router):
        app.include_router(router, prefix="/api/v1")
    app.include_router(service_routes(app, registry))
    install_offline_docs(app)
    http_metrics = HttpMetrics(registry)
    app.add_middleware(RequestMetrics, metrics=http_metrics)
    app.add_middleware(BrowserHeaders)
    app.add_middleware(RequestBounds, max_body_bytes=settings.max_body_bytes,
                       max_header_bytes=settings.max_header_bytes, max_headers=settings.max_headers,
                       max_json_depth=settings.max_json_depth)
    # Outermost: a request beyond capacity is shed before it is parsed, measured or touches the database.
    app.add_middleware(Admission, limits=AdmissionLimits(
        agent=settings.max_inflight_agent, api=settings.max_inflight_api, wait_s=settings.admission_wait_s,
        retry_after_s=settings.retry_after_s))
    # Outside admission, inside the beat shortcut: a plain registration queued for the registrar's next batch
    # (api.register_shortcut); the route uses the same registrar.
    app.state.registrar = Registrar(ctx, app.state.catalog)
    app.add_middleware(RegisterShortcut, registrar=app.state.registrar, handlers=app.exception_handlers,
                       max_body_bytes=settings.max_body_bytes, max_header_bytes=settings.max_header_bytes,
                       max_headers=settings.max_headers, metrics=http_metrics)
    # Outside admission: a repeated heartbeat is answered from memory, no connection, no slot (api.beat_shortcut).
    app.add_middleware(BeatShortcut, ctx=ctx, max_body_bytes=settings.max_body_bytes, metrics=http_metrics)
    return app


def request_and_loop_engines(settings: Settings) -> tuple[Engine, Engine]:
    """The requests' pool, sized to the admission limits (one connection per admitted request,
    a few spare for a handler that opens a second session), and the background loops' own."""
    url = settings.resolved_database_url()
    requests = make_engine(url, pool_size=settings.db_pool_size, max_overflow=0,
                           pool_timeout_s=settings.db_pool_timeout_s)
    loops = make_engine(url, pool_size=settings.loop_pool_size, max_overflow=2, pool_timeout_s=30.0)
    return requests, loops
