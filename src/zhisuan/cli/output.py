"""Printing results: aligned plain-text tables for people, ``--json`` for scripts."""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from typing import Any

import typer


def emit(data: Any, as_json: bool, columns: Sequence[str] | None = None) -> None:
    if as_json:
        typer.echo(json.dumps(data, indent=2, ensure_ascii=False, default=str))
        return
    rows = data if isinstance(data, list) else [data]
    if columns is None:
        for row in rows:
            for key, value in row.items():
                typer.echo(f"{key:>20}: {format_cell(value)}")
            typer.echo("")
        return
    print_table(rows, columns)


def format_cell(value: Any) -> str:
    if isinstance(value, list):
        return f"{len(value)} items" if value and isinstance(value[0], dict) else ", ".join(map(str, value))
    if isinstance(value, dict):
        return ", ".join(f"{k}={v}" for k, v in value.items())
    return "" if value is None else str(value)


def print_table(rows: list[dict[str, Any]], columns: Sequence[str]) -> None:
    print_table_pages([rows], columns)


def print_table_pages(pages: Iterable[list[dict[str, Any]]], columns: Sequence[str]) -> None:
    """A table printed page by page as the pages arrive (a long listing starts showing at once): the
    columns are as wide as the first page needs, and widen if a later page needs more."""
    widths: list[int] | None = None
    shown = 0
    for rows in pages:
        cells = [[format_cell(row.get(column)) for column in columns] for row in rows]
        needed = [max([len(column)] + [len(cell[i]) for cell in cells]) for i, column in enumerate(columns)]
        if widths is None:
            widths = needed
            typer.echo("  ".join(column.upper().ljust(width) for column, width in zip(columns, widths, strict=True)))
        widths = [max(pair) for pair in zip(widths, needed, strict=True)]
        for cell in cells:
            typer.echo("  ".join(value.ljust(width) for value, width in zip(cell, widths, strict=True)))
        shown += len(rows)
    if widths is None:
        typer.echo("  ".join(column.upper() for column in columns))
    if not shown:
        typer.echo("(none)")
