"""``zhisuan catalog measure|measurements``: operators' measured relative throughput per workload class.

The commands join the ``catalog`` group of ``inventory_commands`` (list, show)."""

from __future__ import annotations

from typing import Annotated

import typer

from zhisuan.cli.client import ApiClient
from zhisuan.cli.inventory_commands import catalog_app
from zhisuan.cli.output import emit

JsonFlag = Annotated[bool, typer.Option("--json", help="print JSON")]
MEASUREMENT_COLUMNS = ("id", "model", "workload_class", "relative", "datasheet_relative", "benchmark",
                       "measured_at", "recorded_by")


@catalog_app.command("measure")
def catalog_measure(
    model: Annotated[str, typer.Argument(help="catalog model key or alias, e.g. ascend-910b3")],
    workload_class: Annotated[str, typer.Argument(help="e.g. training-bf16, inference-int8")],
    relative: Annotated[str, typer.Argument(help="benchmark throughput on one device / on one H100 SXM5")],
    benchmark: Annotated[str, typer.Option(help="the benchmark the ratio comes from")],
    measured_at: Annotated[str | None, typer.Option(help="ISO instant (UTC); default now")] = None,
    note: str = "",
    json: JsonFlag = False,
) -> None:
    """Operators: record a measured ratio; the exchange's substitution and PFLOPS pricing prefer it."""
    body = {"relative": relative, "benchmark": benchmark, "note": note}
    if measured_at is not None:
        body["measured_at"] = measured_at
    emit(ApiClient.from_environment().request("PUT", f"/catalog/models/{model}/measurements/{workload_class}", body),
         json)


@catalog_app.command("measurements")
def catalog_measurements(model: str | None = None, json: JsonFlag = False) -> None:
    """Recorded measurements, newest first (of one model with --model)."""
    emit(ApiClient.from_environment().get("/catalog/measurements", model=model), json, MEASUREMENT_COLUMNS)


def register(app: typer.Typer) -> None:
    """Nothing to add to ``app``: importing this module attaches the commands to ``catalog``."""
