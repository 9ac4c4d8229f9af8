"""HTTP routes of placement."""

from __future__ import annotations

from fastapi import APIRouter, Request

from zhisuan.api.deps import ContextDep, Reader, SessionDep
from zhisuan.placement import service
from zhisuan.placement.schemas import PlacementAnswer, PlacementQuery

router = APIRouter(tags=["placement"])


@router.post("/placement/preview", response_model=PlacementAnswer)
def preview(body: PlacementQuery, request: Request, session: SessionDep, principal: Reader,
            ctx: ContextDep) -> PlacementAnswer:
    """Ask the placement engine where a workload would go now, or why it would stay pending."""
    return service.preview(session, request.app.state.catalog, principal, body, ctx.clock())
