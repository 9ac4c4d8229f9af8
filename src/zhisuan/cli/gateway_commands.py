"""``zhisuan gateway``: an OpenAI-compatible gateway process beside the control plane (``gateway/standalone.py``)."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Annotated

import typer

from zhisuan.cli.client import CliError
from zhisuan.cli.logs import configure_logging


def gateway(
    database: Annotated[str, typer.Option(envvar="ZHISUAN_DATABASE_URL",
                                          help="the control plane's database (keys, limits, price book)")],
    server: Annotated[str, typer.Option(envvar="ZHISUAN_SERVER", help="control plane URL (receives usage)")],
    token: Annotated[str, typer.Option(envvar="ZHISUAN_GATEWAY_TOKEN",
                                       help="operator API key with the 'write' scope, to post usage")],
    upstream: Annotated[list[str] | None, typer.Option(
        help="MODEL=http://HOST:PORT of an engine the control plane does not run (repeatable; more per model = "
             "replicas; the control plane's own replicas are discovered without it); "
             "MODEL@TENANT=... makes it tenant TENANT's private model; http://ENGINE_KEY@HOST:PORT presents "
             "the engine's API key",
    )] = None,
    redis: Annotated[str | None, typer.Option(
        envvar="ZHISUAN_REDIS_URL",
        help="Redis shared by all gateways: redis://[USER:PASSWORD@]HOST:PORT/DB, rediss://… (TLS), "
             "redis+sentinel://HOST:PORT[,…]/SERVICE[/DB] (omit = per-process limits)",
    )] = None,
    limits_prefix: Annotated[str, typer.Option(help="Redis key prefix of the limit counters")] = "zs:lim:",
    host: Annotated[str, typer.Option(help="address to listen on")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="port to listen on")] = 8422,
    spool_dir: Annotated[Path | None, typer.Option(
        help="this process's usage spool (default ~/.zhisuan/gateway-PORT)")] = None,
    provider: Annotated[str, typer.Option(help="provider credited with the tokens")] = "local",
    key_ttl: Annotated[float, typer.Option(help="seconds a key's grant and limits are cached")] = 5.0,
    discover: Annotated[bool, typer.Option(
        help="follow the control plane's healthy replicas (GET /api/v1/serving/endpoints)")] = True,
    discovery_interval: Annotated[float, typer.Option(help="seconds between two discovery polls")] = 1.0,
    queue_max_length: Annotated[int, typer.Option(
        min=1, help="requests that may wait per model for a free replica slot (beyond: 503, or 429 when they "
                    "are all the caller's)")] = 1000,
    queue_max_wait: Annotated[float, typer.Option(
        min=0.0, help="seconds a request may wait for a free replica slot (beyond: 503)")] = 300.0,
) -> None:
    """Serve /v1 (OpenAI-compatible) with the platform's keys, limits shared through Redis, and usage
    shipped to the control plane. Run several on one database and Redis for more throughput."""
    from zhisuan.config import default_data_dir
    from zhisuan.gateway.standalone import StandaloneConfig, StandaloneError, parse_upstreams, run

    configure_logging()
    logging.getLogger("httpx").setLevel(logging.WARNING)
    try:
        config = StandaloneConfig(
            database_url=database, server=server, token=token, upstreams=parse_upstreams(upstream or []),
            redis_url=redis, limits_prefix=limits_prefix, host=host, port=port, provider=provider,
            spool_dir=spool_dir or default_data_dir() / f"gateway-{port}", gateway_id=f"gw{port}",
            key_ttl_s=key_ttl, discovery=discover, discovery_interval_s=discovery_interval,
            queue_max_length=queue_max_length, queue_max_wait_s=queue_max_wait)
        run(config)
    except StandaloneError as error:
        raise CliError(str(error)) from error


def register(app: typer.Typer) -> None:
    app.command("gateway")(gateway)
