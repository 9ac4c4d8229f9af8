"""``zhisuan``: start the platform, run a node agent, and manage it over the REST API."""

from __future__ import annotations

import logging
import sys
from pathlib import Path
from typing import Annotated

import typer

from zhisuan.cli.client import ApiClient, CliError, save_profile

app = typer.Typer(help="zhisuan (智算): AI compute cloud platform.", no_args_is_help=True,
                  pretty_exceptions_enable=False)


def client() -> ApiClient:
    return ApiClient.from_environment()


def parse_pairs(pairs: list[str], what: str) -> dict[str, str]:
    result = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise CliError(f"{what} '{pair}' is not KEY=VALUE")
        result[key] = value
    return result


@app.command()
def up(
    host: Annotated[str, typer.Option(help="address to listen on")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="port to listen on")] = 8420,
    data_dir: Annotated[Path | None, typer.Option(help="state directory (default ~/.zhisuan)")] = None,
    database: Annotated[str | None, typer.Option(help="postgresql://… instead of the embedded SQLite")] = None,
    local_site: Annotated[bool, typer.Option(help="register this machine as site 'local'")] = True,
    maas: Annotated[bool, typer.Option(help="serve /v1 (OpenAI-compatible) with SmolLM2 on llama.cpp")] = True,
    gateway_port: Annotated[int, typer.Option(help="port of the /v1 gateway (default: port + 1)")] = 0,
) -> None:
    """Start the control plane: API, console, metrics and background loops, in one process."""
    import uvicorn

    from zhisuan.api.app import create_app
    from zhisuan.api.limits import uvicorn_options
    from zhisuan.bootstrap import ensure_first_operator, migrate
    from zhisuan.config import Settings, default_data_dir
    from zhisuan.store.base import make_engine, make_session_factory

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("httpx").setLevel(logging.WARNING)  # replica health checks every second
    settings = Settings(data_dir=data_dir or default_data_dir(), database_url=database, host=host, port=port,
                        register_local_site=local_site, maas=maas, gateway_port=gateway_port)
    try:
        migrate(settings)
    except Exception as error:  # the database is unreachable or refuses us: say so in one line
        raise CliError(f"cannot prepare the database {settings.resolved_database_url()}: {error}") from error
    engine = make_engine(settings.resolved_database_url())
    first = ensure_first_operator(make_session_factory(engine), settings)
    engine.dispose()
    url = f"http://{host}:{port}"
    typer.echo(f"zhisuan {url}  (console: {url}/  API docs: {url}/docs  metrics: {url}/metrics)")
    if maas:
        typer.echo(f"OpenAI-compatible API: http://{host}:{gateway_port or port + 1}/v1  (model smollm2-135m-instruct;"
                   " keys need the 'inference' scope)")
    if first is not None:
        typer.echo("First start: an operator account was created. Its credentials are shown only this once:")
        typer.echo(f"  console login:  {first.username} / {first.password}")
        typer.echo(f"  API key:        {first.api_key}")
        typer.echo(f"  CLI:            zhisuan login --server {url} --key {first.api_key}")
    uvicorn.run(create_app(settings), host=host, port=port, log_level="warning",
                **uvicorn_options(settings.max_header_bytes))  # type: ignore[arg-type]


@app.command()
def agent(
    server: Annotated[str, typer.Option(help="control plane URL")],
    token: Annotated[str, typer.Option(help="agent key of the site to join (zhisuan site agent-key)")],
    name: Annotated[str | None, typer.Option(help="node name (default: host name)")] = None,
    label: Annotated[list[str] | None, typer.Option(help="node label KEY=VALUE, repeatable")] = None,
    once: Annotated[bool, typer.Option(help="register and exit instead of heartbeating")] = False,
) -> None:
    """Run the node agent: detect accelerators, register this machine, heartbeat."""
    from zhisuan.agent.runner import AgentError, run_agent

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        ack = run_agent(server, token, name=name, labels=parse_pairs(label or [], "label"), once=once)
    except AgentError as error:
        raise CliError(str(error)) from error
    except Exception as error:
        raise CliError(f"agent stopped: {error}") from error
    typer.echo(f"node registered: id {ack['node_id']}, status {ack['status']}")


@app.command()
def login(
    key: Annotated[str, typer.Option(help="an API key")],
    server: Annotated[str, typer.Option(help="control plane URL")] = "http://127.0.0.1:8420",
) -> None:
    """Check a key against a server and remember both for later commands."""
    who = ApiClient(server=server.rstrip("/"), key=key).get("/auth/whoami")
    path = save_profile(server.rstrip("/"), key)
    typer.echo(f"logged in to {server} as {who['username']} ({who['role']}); saved to {path}")


def register_subcommands() -> None:
    from zhisuan.cli import (
        economics_commands,
        gateway_commands,
        identity_commands,
        inventory_commands,
        serving_commands,
    )

    identity_commands.register(app)
    inventory_commands.register(app)
    economics_commands.register(app)
    serving_commands.register(app)
    gateway_commands.register(app)
    try:
        from zhisuan.sim.cli import sim_app
    except ImportError:  # the simulator's optional plotting stack is missing
        return
    app.add_typer(sim_app, name="sim", help="Replay production traces through the placement engine.")


register_subcommands()


def main() -> None:
    """Entry point: a failing command prints one clear line on stderr and exits 1, not a traceback."""
    try:
        app()
    except CliError as error:
        typer.echo(f"error: {error}", err=True)
        sys.exit(1)
