"""HTTP routes of serving: the model registry and deployments."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request, Response, status

from zhisuan.api.deps import Agent, ContextDep, Reader, SessionDep, Writer
from zhisuan.identity.access import Principal, require_role
from zhisuan.serving import autoscaler, fleet, quotas, scaling, service
from zhisuan.serving import schemas as s
from zhisuan.serving.models import ServedModel

router = APIRouter(tags=["serving"])


def model_out(row: ServedModel, principal: Principal) -> s.ModelOut:
    """Weight paths and engine flags are the platform's business: operators only."""
    operator = principal.is_operator
    return s.ModelOut(id=row.id, name=row.name, source=row.source if operator else None, engine=row.engine,
                      context_length=row.context_length, stacks=list(row.stacks), embeddings=row.embeddings,
                      extra_args=list(row.extra_args) if operator else [], description=row.description,
                      created_at=row.created_at)


@router.post("/models", response_model=s.ModelOut, status_code=status.HTTP_201_CREATED)
def register_model(body: s.ModelRegister, session: SessionDep, principal: Writer) -> s.ModelOut:
    """Add a servable model to the registry (operators)."""
    return model_out(service.register_model(session, principal, body), principal)


@router.get("/models", response_model=list[s.ModelOut])
def list_models(session: SessionDep, principal: Reader) -> list[s.ModelOut]:
    return [model_out(row, principal) for row in service.list_models(session)]


@router.get("/models/{ref:path}", response_model=s.ModelOut)
def get_model(ref: str, session: SessionDep, principal: Reader) -> s.ModelOut:
    return model_out(service.get_model(session, ref), principal)


@router.delete("/models/{ref:path}", status_code=status.HTTP_204_NO_CONTENT)
def delete_model(ref: str, session: SessionDep, principal: Writer) -> None:
    service.delete_model(session, principal, ref)


@router.post("/deployments", response_model=s.DeploymentOut, status_code=status.HTTP_201_CREATED)
def create_deployment(body: s.DeploymentCreate, request: Request, session: SessionDep, principal: Writer,
                      ctx: ContextDep) -> s.DeploymentOut:
    """Place N replicas through the placement engine (all or none) and hold their devices in the ledger."""
    row = service.create_deployment(session, request.app.state.catalog, principal, body, ctx.clock())
    return service.deployment_out(session, row, principal)


@router.get("/deployments", response_model=list[s.DeploymentOut])
def list_deployments(session: SessionDep, principal: Reader, all: bool = False) -> list[s.DeploymentOut]:
    """Active deployments (``all=true``: stopped ones too)."""
    rows = service.list_deployments(session, principal, all)
    return [service.deployment_out(session, row, principal) for row in rows]


@router.get("/deployments/{ref}", response_model=s.DeploymentOut)
def get_deployment(ref: str, session: SessionDep, principal: Reader) -> s.DeploymentOut:
    """One deployment, with its autoscaling and its latest replica changes (``events``)."""
    row = service.get_deployment(session, principal, ref)
    out = service.deployment_out(session, row, principal)
    out.events = [s.DeploymentEventOut(at=e.at, kind=e.kind, replicas_from=e.replicas_from,
                                       replicas_to=e.replicas_to, reason=e.reason)
                  for e in scaling.recent_events(session, row)]
    return out


@router.patch("/deployments/{ref}", response_model=s.DeploymentOut)
def patch_deployment(ref: str, body: s.DeploymentPatch, request: Request, session: SessionDep, principal: Writer,
                     ctx: ContextDep) -> s.DeploymentOut:
    """Scale now (``replicas``: out through placement and the ledger, in by draining) and/or set
    autoscaling (``autoscale``: min, max, target load per slot, cool-downs; null clears it)."""
    row = scaling.patch_deployment(session, request.app.state.catalog, principal, ref, body, ctx.clock())
    return service.deployment_out(session, row, principal)


@router.delete("/deployments/{ref}", response_model=s.DeploymentOut)
def undeploy(ref: str, session: SessionDep, principal: Writer, ctx: ContextDep) -> s.DeploymentOut:
    """Undeploy: running replicas drain (in-flight requests finish), then stop and release their devices."""
    return service.deployment_out(session, service.undeploy(session, principal, ref, ctx.clock()), principal)


@router.put("/deployment-quotas", response_model=s.QuotaOut)
def set_quota(body: s.QuotaSet, session: SessionDep, principal: Writer) -> s.QuotaOut:
    """Operators: the most replicas a tenant (or, without a tenant, every tenant by default) may hold."""
    return quotas.set_quota(session, principal, body)


@router.get("/deployment-quotas", response_model=s.QuotaOut)
def get_quota(session: SessionDep, principal: Reader, tenant: str | None = None) -> s.QuotaOut:
    """A tenant's replica quota and how many it holds (tenants: their own)."""
    return quotas.get_quota(session, principal, tenant)


def replica_keys(request: Request) -> fleet.ReplicaKeys:
    keys: fleet.ReplicaKeys = request.app.state.replica_keys
    return keys


@router.post("/agent/replicas", response_model=fleet.ReplicaExchange, tags=["agent"])
def agent_replicas(body: fleet.ReplicaReports, request: Request, session: SessionDep, principal: Agent,
                   ctx: ContextDep) -> fleet.ReplicaExchange:
    """Node agents: report the model replicas they run and get the ones placed on their node."""
    return fleet.exchange(session, ctx.sessions, request.app.state.catalog, principal, body,
                          replica_keys(request), ctx.clock())


@router.get("/serving/endpoints", response_model=None)
def serving_endpoints(request: Request, response: Response, session: SessionDep, principal: Writer,
                      ctx: ContextDep) -> Any:
    """Operators (gateways): the routable replicas with their engine keys, and the registered model
    names. Answers 304 when ``If-None-Match`` names the current ``version`` (its ``ETag``)."""
    require_role(principal, "operator")
    found = fleet.endpoints(session, replica_keys(request), ctx.clock())
    etag = f'"{found["version"]}"'
    if request.headers.get("if-none-match") == etag:
        return Response(status_code=304, headers={"ETag": etag})
    response.headers["ETag"] = etag
    response.headers["Cache-Control"] = "no-store"
    return found


@router.post("/serving/demand", status_code=status.HTTP_204_NO_CONTENT)
def serving_demand(body: s.DemandReport, session: SessionDep, principal: Writer, ctx: ContextDep) -> None:
    """Operators (gateways): requests for registered models that found no replica (a deployment
    scaled to zero then starts one), and the gateway's load per replica (``load``: in flight,
    queued, queue wait) — what ``serving.autoscaler`` scales by."""
    require_role(principal, "operator")
    autoscaler.add_demand(session, body.demand)
    if body.load is not None:
        autoscaler.record_load(session, body.load, ctx.clock())
