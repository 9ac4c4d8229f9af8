"""HTTP routes of serving: the model registry and deployments."""

from __future__ import annotations

from fastapi import APIRouter, Request, status

from zhisuan.api.deps import ContextDep, Reader, SessionDep, Writer
from zhisuan.serving import schemas as s
from zhisuan.serving import service
from zhisuan.serving.models import ServedModel

router = APIRouter(tags=["serving"])


def model_out(row: ServedModel) -> s.ModelOut:
    return s.ModelOut(id=row.id, name=row.name, source=row.source, engine=row.engine,
                      context_length=row.context_length, stacks=list(row.stacks), embeddings=row.embeddings,
                      extra_args=list(row.extra_args), description=row.description, created_at=row.created_at)


@router.post("/models", response_model=s.ModelOut, status_code=status.HTTP_201_CREATED)
def register_model(body: s.ModelRegister, session: SessionDep, principal: Writer) -> s.ModelOut:
    """Add a servable model to the registry (operators)."""
    return model_out(service.register_model(session, principal, body))


@router.get("/models", response_model=list[s.ModelOut])
def list_models(session: SessionDep, principal: Reader) -> list[s.ModelOut]:
    return [model_out(row) for row in service.list_models(session)]


@router.get("/models/{ref:path}", response_model=s.ModelOut)
def get_model(ref: str, session: SessionDep, principal: Reader) -> s.ModelOut:
    return model_out(service.get_model(session, ref))


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
    return service.deployment_out(session, service.get_deployment(session, principal, ref), principal)


@router.delete("/deployments/{ref}", response_model=s.DeploymentOut)
def undeploy(ref: str, session: SessionDep, principal: Writer, ctx: ContextDep) -> s.DeploymentOut:
    """Undeploy: running replicas drain (in-flight requests finish), then stop and release their devices."""
    return service.deployment_out(session, service.undeploy(session, principal, ref, ctx.clock()), principal)
