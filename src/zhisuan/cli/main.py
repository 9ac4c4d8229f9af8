"""``zhisuan``: start the platform, run a node agent, and manage it over the REST API."""

from __future__ import annotations

import logging
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from zhisuan.cli.arguments import parse_pairs
from zhisuan.cli.client import ApiClient, CliError, save_profile
from zhisuan.cli.logs import configure_logging
from zhisuan.config import redact_url_passwords

if TYPE_CHECKING:
    from zhisuan.bootstrap import FirstOperator

app = typer.Typer(help="zhisuan (智算): AI compute cloud platform.", no_args_is_help=True,
                  pretty_exceptions_enable=False)


def client() -> ApiClient:
    return ApiClient.from_environment()


@app.command()
def up(
    host: Annotated[str, typer.Option(help="address to listen on")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="port to listen on")] = 8420,
    data_dir: Annotated[Path | None, typer.Option(help="state directory (default ~/.zhisuan)")] = None,
    database: Annotated[str | None, typer.Option(help="postgresql://… instead of the embedded SQLite")] = None,
    local_site: Annotated[bool, typer.Option(help="register this machine as site 'local'")] = True,
    maas: Annotated[bool, typer.Option(help="serve /v1 (OpenAI-compatible) with SmolLM2 on llama.cpp")] = True,
    gateway_port: Annotated[int, typer.Option(help="port of the /v1 gateway (default: port + 1)")] = 0,
    workers: Annotated[int, typer.Option(min=1, max=64, help="API processes sharing the port (more than 1: "
                                         "with --no-local-site --no-maas; loops still run once)")] = 1,
) -> None:
    """Start the control plane: API, console, metrics and background loops, in one process (or --workers N)."""
    if workers > 1 and (local_site or maas):
        raise CliError("--workers N runs API processes only: add --no-local-site --no-maas (run 'zhisuan agent' "
                       "on this machine and 'zhisuan gateway' for /v1 instead)")
    import uvicorn

    from zhisuan.api.app import create_app
    from zhisuan.api.limits import uvicorn_options
    from zhisuan.bootstrap import ensure_first_operator, make_private, migrate
    from zhisuan.config import Settings, default_data_dir
    from zhisuan.store.base import make_engine, make_session_factory

    os.umask(0o077)  # everything this process and its engines create in the data directory: owner only
    configure_logging()
    logging.getLogger("httpx").setLevel(logging.WARNING)  # replica health checks every second
    settings = Settings(data_dir=data_dir or default_data_dir(), database_url=database, host=host, port=port,
                        register_local_site=local_site, maas=maas, gateway_port=gateway_port)
    try:
        make_private(settings.data_dir)
        migrate(settings)
    except Exception as error:  # the database is unreachable or refuses us: say so in one line
        raise CliError(f"cannot prepare the database {settings.resolved_database_url()}: {error}") from error
    if local_site:
        check_jobs_dir(settings.resolved_jobs_dir())
    engine = make_engine(settings.resolved_database_url())
    first = ensure_first_operator(make_session_factory(engine), settings)
    engine.dispose()
    url = f"http://{host}:{port}"
    typer.echo(f"zhisuan {url}  (console: {url}/  API docs: {url}/docs  metrics: {url}/metrics)")
    if maas:
        typer.echo(f"OpenAI-compatible API: http://{host}:{gateway_port or port + 1}/v1  (model smollm2-135m-instruct;"
                   " keys need the 'inference' scope)")
    if first is not None:
        announce_first_operator(first, settings.data_dir, url)
    if workers > 1:
        from zhisuan.api.processes import run_workers

        raise typer.Exit(run_workers(settings, workers, create_app))
    from zhisuan.api.app import freeze_startup_objects

    application = create_app(settings)
    freeze_startup_objects()
    uvicorn.run(application, host=host, port=port, log_level="warning",
                **uvicorn_options(settings.max_header_bytes))  # type: ignore[arg-type]


def announce_first_operator(first: FirstOperator, data_dir: Path, url: str) -> None:
    """Credentials go to a terminal only; a redirected stdout (a service log) gets a 0600 file's path."""
    from zhisuan.bootstrap import first_operator_lines, write_first_operator

    if sys.stdout.isatty():
        typer.echo("First start: an operator account was created. Its credentials are shown only this once:")
        for line in first_operator_lines(first, url):
            typer.echo(f"  {line}")
        return
    path = write_first_operator(data_dir, first, url)
    typer.echo(f"First start: the operator's credentials are in {path} (mode 0600); read it, then delete it.")


@app.command()
def agent(
    server: Annotated[str, typer.Option(help="control plane URL")],
    token_file: Annotated[Path | None, typer.Option(
        help="file holding this node's agent key (zhisuan site agent-key); or set ZHISUAN_AGENT_TOKEN")] = None,
    token: Annotated[str | None, typer.Option(hidden=True, help="deprecated: visible to every user in ps")] = None,
    name: Annotated[str | None, typer.Option(help="node name (default: host name)")] = None,
    label: Annotated[list[str] | None, typer.Option(help="node label KEY=VALUE, repeatable")] = None,
    once: Annotated[bool, typer.Option(help="register and exit instead of heartbeating")] = False,
    jobs_dir: Annotated[Path | None, typer.Option(
        help="where job workers run (default: /var/lib/zhisuan/jobs-… as root, else ~/.zhisuan-agent/jobs)")] = None,
    replicas_dir: Annotated[Path | None, typer.Option(
        help="where model replicas keep logs and pid files (default ~/.zhisuan-agent/replicas-NODE)")] = None,
    replicas: Annotated[bool, typer.Option(help="run the model replicas placed on this node")] = True,
    advertise_address: Annotated[str, typer.Option(
        help="address gateways reach this node's replicas at (engines listen on it)")] = "127.0.0.1",
    kernel_log: Annotated[Path | None, typer.Option(
        help="kernel log to follow for NVIDIA XID faults (e.g. /var/log/kern.log)")] = None,
) -> None:
    """Run the node agent: detect accelerators, register this machine, heartbeat, run its job workers
    and the model replicas placed on it."""
    import socket

    from zhisuan.agent.runner import AgentError, run_agent

    configure_logging()
    key = agent_token(token_file, token)
    try:
        node = name or socket.gethostname()
        where = replicas_dir or Path.home() / ".zhisuan-agent" / f"replicas-{node}"
        ack = run_agent(server, key, name=node, labels=parse_pairs(label or [], "label"), once=once,
                        jobs_root=jobs_dir, replicas_dir=where if replicas else None,
                        advertise_address=advertise_address, kernel_log=kernel_log)
    except AgentError as error:
        raise CliError(str(error)) from error
    except Exception as error:
        raise CliError(f"agent stopped: {error}") from error
    typer.echo(f"node registered: id {ack['node_id']}, status {ack['status']}")


def check_jobs_dir(path: Path) -> None:
    """The local site's job workers run under ``path``: refuse to start, in one line, if they cannot."""
    from zhisuan.agent.jobs import WorkerRunner

    try:
        WorkerRunner(path)
    except (ValueError, OSError) as error:
        raise CliError(f"cannot run jobs under {path}: {error}; set ZHISUAN_JOBS_DIR to a directory that "
                       "tenant users can enter (o+x on every parent)") from error


def agent_token(token_file: Path | None, token: str | None) -> str:
    """The agent key, from a file or the environment: a command-line argument is visible in ``ps``."""
    if token_file is not None:
        try:
            key = token_file.read_text(encoding="utf-8").strip()
        except OSError as error:
            raise CliError(f"cannot read the agent key from {token_file}: {error.strerror}") from error
        if not key:
            raise CliError(f"{token_file} is empty; put the agent key from 'zhisuan site agent-key' in it")
        return key
    if os.environ.get("ZHISUAN_AGENT_TOKEN"):
        return os.environ["ZHISUAN_AGENT_TOKEN"].strip()
    if token:
        typer.echo("warning: --token shows the agent key to every user of this machine (ps); "
                   "use --token-file or ZHISUAN_AGENT_TOKEN", err=True)
        return token
    raise CliError("no agent key: give --token-file FILE or set ZHISUAN_AGENT_TOKEN")


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
        catalog_commands,
        economics_commands,
        exchange_commands,
        gateway_commands,
        identity_commands,
        inventory_commands,
        job_commands,
        serving_commands,
    )

    identity_commands.register(app)
    inventory_commands.register(app)
    economics_commands.register(app)
    serving_commands.register(app)
    gateway_commands.register(app)
    job_commands.register(app)
    exchange_commands.register(app)
    catalog_commands.register(app)
    try:
        from zhisuan.sim.cli import sim_app
    except ImportError:  # the simulator's optional plotting stack is missing
        return
    app.add_typer(sim_app, name="sim", help="Replay production traces through the placement engine; simulate goodput.")


register_subcommands()


def main() -> None:
    """Entry point: a failing command prints one clear line on stderr and exits 1, not a traceback;
    a reader that stops early (``| head``) ends the command quietly with exit 0."""
    stdout_was_devnull = points_at_devnull(1)
    try:
        app()
    except CliError as error:
        typer.echo(f"error: {redact_url_passwords(str(error))}", err=True)
        sys.exit(1)
    except SystemExit as done:
        if done.code not in (0, None) and stdout_closed_early(stdout_was_devnull):
            quiet_exit()
        raise done from None
    except BrokenPipeError:
        quiet_exit()


def stdout_closed_early(stdout_was_devnull: bool) -> bool:
    """Whether the command ended because its reader went away, which click and rich both turn into
    exit 1: click wraps stdout in ``PacifyFlushWrapper`` (typer vendors its own click, hence the
    name rather than the class), rich points it at /dev/null."""
    if type(sys.stdout).__name__ == "PacifyFlushWrapper":
        return True
    if not stdout_was_devnull and points_at_devnull(1):
        return True
    try:
        sys.stdout.flush()
    except BrokenPipeError:
        return True
    return False


def points_at_devnull(fd: int) -> bool:
    try:
        here, devnull = os.fstat(fd), os.stat(os.devnull)
    except OSError:
        return False
    return (here.st_dev, here.st_ino) == (devnull.st_dev, devnull.st_ino)


def quiet_exit() -> None:
    # Point stdout at /dev/null so the interpreter's final flush does not fail a second time.
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 1)
    sys.exit(0)
