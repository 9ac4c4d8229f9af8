"""The console's playground: a same-origin, streaming pass-through to this process's ``/v1`` gateway.

Why a pass-through: the console's Content-Security-Policy allows ``connect-src 'self'`` only, and the
gateway listens on another port (a different origin). The pass-through forwards the request as is,
with the caller's own credential — the console session key, which carries the ``inference`` scope —
to ``/v1/chat/completions`` on loopback, and streams the answer back byte for byte. Nothing is
decided here: the gateway authenticates the key, applies its and its tenant's model scope, RPM/TPM
limits and budgets, routes to a replica the caller may see, and meters the tokens (an aborted
stream included), exactly as for any ``/v1`` client.

It touches no database, so the admission gate leaves it out (a stream may last a minute: it must not
hold one of the few API slots meant for short database requests); its own bound is
``MAX_STREAMS`` concurrent streams per process, beyond which it answers 503 with Retry-After. A process
with no gateway (``--no-maas``) answers 404: the playground is not served there.
"""

from __future__ import annotations

import asyncio
from typing import Annotated, Any

import httpx
from fastapi import APIRouter, Body, Request, Response
from fastapi.responses import JSONResponse, StreamingResponse
from starlette.background import BackgroundTask

from zhisuan.api.errors import error_body
from zhisuan.errors import Unauthenticated

router = APIRouter()

MAX_STREAMS = 16
# Connecting to loopback is instant; reading waits for the engine's next token (a cold replica's
# first one may take a while).
TIMEOUT = httpx.Timeout(connect=5.0, read=120.0, write=30.0, pool=5.0)
FORWARDED_HEADERS = ("content-type", "retry-after", "x-request-id")


def gateway_of(request: Request) -> str | None:
    """The gateway's /v1 URL in this process (None without the one-box MaaS), dialled on loopback."""
    url: str | None = getattr(request.app.state, "gateway_url", None)
    if url is None:
        return None
    return url.replace("://0.0.0.0:", "://127.0.0.1:").replace("://[::]:", "://[::1]:")


def unavailable(message: str) -> JSONResponse:
    return JSONResponse(error_body("ServiceUnavailable", message), 503, headers={"Retry-After": "5"})


@router.post("/playground/chat/completions", tags=["console"], response_model=None, responses={
    200: {"description": "the gateway's answer (an SSE stream if the request asked for one)"},
    404: {"description": "no gateway runs in this process (started with --no-maas)"},
    503: {"description": "too many playground streams at once, or the gateway did not answer"}})
async def playground_chat(request: Request,
                          body: Annotated[dict[str, Any], Body(description="an OpenAI chat completion request")]
                          ) -> Response:
    """Chat with a model the caller may call, through ``/v1`` (metered and limited as ``/v1`` is)."""
    credential = request.headers.get("authorization", "")
    if not credential.lower().startswith("bearer "):
        raise Unauthenticated("missing credential: send 'Authorization: Bearer <API key>'")
    gateway = gateway_of(request)
    if gateway is None:
        # Not a passing condition a retry would cure: this process serves no /v1 (started with
        # --no-maas), so the playground does not exist here — 404, as for a route that is not served.
        return JSONResponse(error_body("NotFound", "no /v1 gateway runs in this control-plane process "
                                       "(started with --no-maas): the playground is not served here"), 404)
    streams: asyncio.Semaphore | None = getattr(request.app.state, "playground_streams", None)
    if streams is None:  # one per app (process), made on its event loop
        streams = request.app.state.playground_streams = asyncio.Semaphore(MAX_STREAMS)
    if streams.locked():
        return unavailable(f"more than {MAX_STREAMS} playground streams at once; retry shortly")
    await streams.acquire()
    client = httpx.AsyncClient(timeout=TIMEOUT)
    try:
        upstream = await client.send(client.build_request(
            "POST", f"{gateway}/chat/completions", json=body,
            headers={"authorization": credential, "content-type": "application/json"}), stream=True)
    except httpx.HTTPError as failure:
        await client.aclose()
        streams.release()
        return unavailable(f"the /v1 gateway did not answer: {type(failure).__name__}")

    async def finish() -> None:
        await upstream.aclose()
        await client.aclose()
        streams.release()

    headers = {name: upstream.headers[name] for name in FORWARDED_HEADERS if name in upstream.headers}
    return StreamingResponse(upstream.aiter_raw(), status_code=upstream.status_code, headers=headers,
                             background=BackgroundTask(finish))
