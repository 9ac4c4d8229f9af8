"""``zhisuan node label``: how an operator names a tenant's hot spare (``zhisuan.io/spare-for=<tenant>``)
without losing the node's other labels, and takes it back (``KEY-``)."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from tests.api.conftest import Api, cli_against
from zhisuan.cli.main import app


@pytest.fixture
def cli(world: Api, monkeypatch: pytest.MonkeyPatch) -> CliRunner:
    return cli_against(world, monkeypatch)


def test_labels_are_set_and_removed_keeping_the_others(world: Api, cli: CliRunner) -> None:
    world.ok("POST", "/nodes", "operator", {"site": "s1", "name": "spare", "cpu_cores": 8, "memory_mib": 1024,
                                            "accelerators": [{"model": "h100-sxm", "count": 8}]})
    world.ok("PATCH", "/nodes/s1/spare", "operator", {"labels": {"rack": "r7"}})
    done = cli.invoke(app, ["node", "label", "s1/spare", "zhisuan.io/spare-for=acme", "--json"])
    assert done.exit_code == 0, done.output
    assert json.loads(done.output)["labels"] == {"rack": "r7", "zhisuan.io/spare-for": "acme"}
    done = cli.invoke(app, ["node", "label", "s1/spare", "zhisuan.io/spare-for-", "--json"])
    assert done.exit_code == 0, done.output
    assert world.ok("GET", "/nodes/s1/spare", "operator")["labels"] == {"rack": "r7"}
    bad = cli.invoke(app, ["node", "label", "s1/spare", "rack"])
    assert bad.exit_code != 0 and "neither KEY=VALUE nor KEY-" in str(bad.exception)
