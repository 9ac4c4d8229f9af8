"""Parsing command-line values shared by several commands (KEY=VALUE pairs)."""

from __future__ import annotations

from zhisuan.cli.client import CliError


def parse_pairs(pairs: list[str], what: str) -> dict[str, str]:
    result = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise CliError(f"{what} '{pair}' is not KEY=VALUE")
        result[key] = value
    return result
