"""HTTP routes of the inventory domain: thin wrappers over inventory.service."""

from __future__ import annotations

import asyncio
import threading
from datetime import timedelta
from typing import Annotated

import anyio.to_thread
from fastapi import APIRouter, Depends, Query, Request, Response, status
from fastapi.security import HTTPAuthorizationCredentials
from pydantic import Field

from zhisuan.api.deps import AppContext, ContextDep, Reader, SessionDep, Writer, bearer, client_address
from zhisuan.catalog.loader import Catalog
from zhisuan.errors import Unauthenticated
from zhisuan.identity.router import key_issued
from zhisuan.identity.schemas import KeyIssued, Strict
from zhisuan.inventory import beats, fleet, fleet_counts, listing, registrar, service
from zhisuan.inventory.models import Node, Site
from zhisuan.inventory.schemas import (
    DeviceOut,
    FleetSummary,
    Heartbeat,
    HeartbeatAck,
    NodeDeclare,
    NodeOut,
    NodePatch,
    NodeRegister,
    ProviderCreate,
    ProviderOut,
    SiteCreate,
    SiteOut,
)

router = APIRouter()


class AgentKeyCreate(Strict):
    expires_in_days: float | None = Field(default=None, gt=0, le=3650)


def catalog_of(request: Request) -> Catalog:
    catalog: Catalog = request.app.state.catalog
    return catalog


def site_out(site: Site, counts: fleet_counts.SiteCounts) -> SiteOut:
    return SiteOut(id=site.id, name=site.name, engine=site.engine, region=site.region, provider=site.provider.name,
                   nodes=counts.nodes, accelerators=counts.accelerators,
                   accelerators_available=counts.available, accelerators_unhealthy=counts.unhealthy,
                   created_at=site.created_at,
                   engine_config=dict(site.engine_config or {}))


def node_out(node: Node) -> NodeOut:
    return NodeOut(
        id=node.id, site=node.site.name, name=node.name, status=node.status, drained=node.drained,
        cpu_cores=node.cpu_cores, memory_mib=node.memory_mib, labels=dict(node.labels), managed_by=node.managed_by,
        agent_version=node.agent_version, registered_at=node.registered_at, last_heartbeat_at=node.last_heartbeat_at,
        cordon_reason=node.cordon_reason, cordoned_at=node.cordoned_at,
        devices=[DeviceOut.model_validate(device) for device in node.devices],
    )


@router.post("/providers", response_model=ProviderOut, status_code=status.HTTP_201_CREATED, tags=["inventory"])
def create_provider(body: ProviderCreate, session: SessionDep, principal: Writer) -> object:
    return service.create_provider(session, principal, body)


@router.get("/providers", response_model=list[ProviderOut], tags=["inventory"])
def list_providers(session: SessionDep, principal: Reader) -> object:
    return service.list_providers(session, principal)


@router.get("/providers/{ref}", response_model=ProviderOut, tags=["inventory"])
def get_provider(ref: str, session: SessionDep, principal: Reader) -> object:
    return service.get_provider(session, principal, ref)


@router.post("/sites", response_model=SiteOut, status_code=status.HTTP_201_CREATED, tags=["inventory"])
def create_site(body: SiteCreate, session: SessionDep, principal: Writer) -> SiteOut:
    site = service.create_site(session, principal, body)
    return site_out(site, fleet_counts.SiteCounts())


@router.get("/sites", response_model=list[SiteOut], tags=["inventory"])
def list_sites(session: SessionDep, principal: Reader) -> list[SiteOut]:
    sites = service.list_sites(session, principal)
    counts = fleet_counts.site_counts(session, [site.id for site in sites])
    return [site_out(site, counts[site.id]) for site in sites]


@router.get("/sites/{ref}", response_model=SiteOut, tags=["inventory"])
def get_site(ref: str, session: SessionDep, principal: Reader) -> SiteOut:
    site = service.get_site(session, principal, ref)
    return site_out(site, fleet_counts.site_counts(session, [site.id])[site.id])


@router.post("/sites/{ref}/agent-keys", response_model=KeyIssued, status_code=status.HTTP_201_CREATED,
             tags=["inventory"])
def create_agent_key(ref: str, body: AgentKeyCreate, session: SessionDep, principal: Writer,
                     ctx: ContextDep) -> KeyIssued:
    now = ctx.clock()
    expires = now + timedelta(days=body.expires_in_days) if body.expires_in_days else None
    return key_issued(service.issue_agent_key(session, principal, ref, now, expires))


# A page holds at most this many nodes; without ``limit`` a caller gets DEFAULT_PAGE (fleets up to that
# size fit in one answer, as before pagination) and follows ``X-Next-Cursor`` for the rest.
DEFAULT_PAGE, MAX_PAGE = 1000, 1000


@router.get("/nodes", response_model=list[NodeOut], tags=["inventory"],
            responses={200: {"headers": {"X-Next-Cursor": {"description": "cursor of the next page (absent "
                                                                          "on the last)"},
                                         "Link": {"description": 'rel="next": the next page\'s URL'}}}})
def list_nodes(request: Request, response: Response, session: SessionDep, principal: Reader,
               site: str | None = None, status: str | None = None, drained: bool | None = None,
               model: Annotated[str | None, Query(max_length=64, description="nodes with a device of this model")]
               = None,
               limit: Annotated[int, Query(ge=1, le=MAX_PAGE)] = DEFAULT_PAGE,
               cursor: Annotated[str | None, Query(pattern=r"^[0-9]{1,10}$",
                                                   description="X-Next-Cursor of the previous page")] = None,
               ) -> list[NodeOut]:
    """Nodes by id, one page at a time: the body stays a JSON list; the next page's cursor is in
    ``X-Next-Cursor`` (and a ``Link: <…>; rel="next"`` header)."""
    service.require_inventory_reader(principal)
    site_id = service.get_site(session, principal, site).id if site is not None else None
    after_id = int(cursor) if cursor else None
    following: int | None = None
    answer: Response | list[NodeOut]
    if session.get_bind().dialect.name == "postgresql":  # the body built by PostgreSQL, sent as it comes
        body, following = listing.node_page_json(session, principal, site_id=site_id, status=status,
                                                 drained=drained, after_id=after_id, limit=limit, model=model)
        answer = response = Response(body, media_type="application/json")
    else:
        nodes = listing.node_page(session, principal, site_id=site_id, status=status, drained=drained,
                                  after_id=after_id, limit=limit + 1, model=model)
        if len(nodes) > limit:
            nodes = nodes[:limit]
            following = nodes[-1]["id"]
        answer = nodes  # type: ignore[assignment]  # dicts shaped like NodeOut: FastAPI validates them
    if following is not None:
        response.headers["X-Next-Cursor"] = str(following)
        response.headers["Link"] = f'<{request.url.include_query_params(cursor=str(following))}>; rel="next"'
    return answer  # type: ignore[return-value]


@router.post("/nodes", response_model=NodeOut, status_code=status.HTTP_201_CREATED, tags=["inventory"])
def declare_node(body: NodeDeclare, request: Request, session: SessionDep, principal: Writer) -> NodeOut:
    return node_out(service.declare_node(session, catalog_of(request), principal, body))


@router.get("/nodes/{ref:path}", response_model=NodeOut, tags=["inventory"])
def get_node(ref: str, session: SessionDep, principal: Reader) -> NodeOut:
    return node_out(service.get_node(session, principal, ref))


@router.patch("/nodes/{ref:path}", response_model=NodeOut, tags=["inventory"])
def patch_node(ref: str, body: NodePatch, request: Request, session: SessionDep, principal: Writer) -> NodeOut:
    """Drain or resume a node, or set its labels. A node of a Slurm site is drained or resumed in Slurm
    too (after the commit, outside the transaction), so both agree and the next inventory sync keeps it."""
    node = service.patch_node(session, principal, ref, body)
    out = node_out(node)
    tell_engine = getattr(request.app.state, "on_node_drain", None)  # set by the app: the site's driver
    if body.drained is not None and node.managed_by == "engine" and tell_engine is not None:
        site = node.site
        session.commit()
        tell_engine(site, node.name, body.drained, f"drained by {principal.username}")
    return out


class CordonBody(Strict):
    reason: str = Field(min_length=1, max_length=400)


@router.post("/nodes/{ref:path}/cordon", response_model=NodeOut, tags=["inventory"])
def cordon_node(ref: str, body: CordonBody, session: SessionDep, principal: Writer, ctx: ContextDep) -> NodeOut:
    """Take a node out of placement by hand, with a reason (it stays out until uncordoned)."""
    return node_out(service.set_cordon(session, principal, ref, body.reason, ctx.clock()))


class UncordonBody(Strict):
    device: int | None = Field(default=None, ge=0, le=1_000_000,
                               description="uncordon only this device (its index) instead of the node")


@router.post("/nodes/{ref:path}/uncordon", response_model=NodeOut, tags=["inventory"])
def uncordon_node(ref: str, session: SessionDep, principal: Writer, ctx: ContextDep,
                  body: UncordonBody | None = None) -> NodeOut:
    """Return a cordoned node after its health check passes (reachable, no node-wide fault), or with
    ``device`` one cordoned device (its node reachable, the device reporting no fault); 409 with the
    failing check otherwise."""
    if body is not None and body.device is not None:
        return node_out(service.uncordon_device(session, principal, ref, body.device))
    return node_out(service.set_cordon(session, principal, ref, None, ctx.clock()))


@router.delete("/nodes/{ref:path}", status_code=status.HTTP_204_NO_CONTENT, tags=["inventory"])
def delete_node(ref: str, session: SessionDep, principal: Writer) -> None:
    service.delete_node(session, principal, ref)


@router.post("/agent/register", response_model=HeartbeatAck, tags=["agent"])
async def register(body: NodeRegister, request: Request,
                   credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)]) -> HeartbeatAck:
    """Queued with the registrations waiting in this process and applied with them in one transaction
    (``inventory.registrar``); the request that finds no batch running applies the queue."""
    if credentials is None:
        raise Unauthenticated("missing credential: send 'Authorization: Bearer <API key>'")
    pending = registrar.Pending(credentials.credentials, body, client_address(request))
    queue = registrar_of(request)
    if queue.enqueue(pending):
        await anyio.to_thread.run_sync(queue.drain)
    return await asyncio.wrap_future(pending.answer)


_REGISTRAR_LOCK = threading.Lock()


def registrar_of(request: Request) -> registrar.Registrar:
    """The app's registrar, made on first use."""
    state = request.app.state
    with _REGISTRAR_LOCK:
        if getattr(state, "registrar", None) is None:
            state.registrar = registrar.Registrar(state.ctx, catalog_of(request))
    queue: registrar.Registrar = state.registrar
    return queue


@router.post("/agent/heartbeat", response_model=HeartbeatAck, tags=["agent"])
async def heartbeat(body: Heartbeat, request: Request,
                    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)]) -> HeartbeatAck:
    """Async, with no sync dependencies: the beat's database work runs in one thread hand-off
    (``inventory.beats.receive``), not one per dependency; a beat that changes nothing is buffered,
    and one that leaves its node steady is learnt: the same bytes again are answered before routing
    (``api.beat_shortcut``)."""
    if credentials is None:
        raise Unauthenticated("missing credential: send 'Authorization: Bearer <API key>'")
    ctx: AppContext = request.app.state.ctx
    token = credentials.credentials
    try:
        ack, key_id = await anyio.to_thread.run_sync(beats.receive, ctx, token, body, client_address(request))
    except Exception:
        if ctx.beats is not None:
            ctx.beats.known.forget(token)
        raise
    if key_id is not None and ctx.beats is not None:
        beats.learn(ctx.beats, token, await request.body(), body, key_id, ack)
    elif ctx.beats is not None:  # not steady now (a fault, a cordon): its old known beat must not answer
        ctx.beats.known.forget(token)
    return ack


@router.get("/fleet/summary", response_model=FleetSummary, tags=["inventory"])
def fleet_summary(request: Request, session: SessionDep, principal: Reader) -> FleetSummary:
    """From the counts the database keeps current (``inventory.fleet_counts``), as of this request."""
    return fleet.summarise(session, catalog_of(request), principal)
