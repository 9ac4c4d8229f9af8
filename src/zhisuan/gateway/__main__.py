"""``python -m zhisuan.gateway --config FILE`` runs a gateway from a JSON config (benchmarks, demos);
with any other arguments it is ``zhisuan gateway`` (keys and limits from the platform's database)."""

import sys

if "--config" in sys.argv[1:]:
    from zhisuan.gateway.server import main

    main()
else:
    import typer

    from zhisuan.cli.client import CliError
    from zhisuan.cli.gateway_commands import gateway

    try:
        typer.run(gateway)
    except CliError as error:
        typer.echo(f"error: {error}", err=True)
        sys.exit(1)
