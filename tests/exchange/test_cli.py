"""``zhisuan offer|request|exchange`` against the running API (the CLI's HTTP calls go to the test app)."""

from __future__ import annotations

import json
from typing import Any

import pytest
from typer.testing import CliRunner

from tests.api.conftest import Api
from tests.exchange.market_setup import fleet
from zhisuan.cli import client as cli_client
from zhisuan.cli.main import app


@pytest.fixture
def cli(world: Api, monkeypatch: pytest.MonkeyPatch) -> Any:
    def routed(method: str, url: str, **kwargs: Any) -> Any:
        kwargs.pop("timeout", None)
        return world.client.request(method, url.removeprefix("http://zhisuan.test"), **kwargs)

    monkeypatch.setattr(cli_client.httpx, "request", routed)
    monkeypatch.setenv("ZHISUAN_SERVER", "http://zhisuan.test")
    runner = CliRunner()

    def run(who: str, *args: str) -> Any:
        monkeypatch.setenv("ZHISUAN_API_KEY", world.keys[who])
        result = runner.invoke(app, [*args, "--json"])
        assert result.exit_code == 0, result.output
        return json.loads(result.output)

    return run


def test_offer_request_clear_accept_from_the_command_line(world: Api, cli: Any) -> None:
    fleet(world)
    window = ["--start", "2026-11-02T00:00:00Z", "--end", "2027-01-01T00:00:00Z"]
    made = cli("p1", "offer", "create", "--site", "s1", "--model", "h800", "--devices", "8", *window,
               "--pricing-model", "server_month", "--floor-price", "58400")
    assert made["floor_device_hour"] == "10.000000" and made["state"] == "open"
    asked = cli("acme", "request", "create", "--amount", "1", "--unit", "servers", "--model", "h800",
                "--earliest-start", "2026-11-02T00:00:00Z", "--latest-start", "2026-11-03T00:00:00Z",
                "--duration-h", "240", "--max-price", "14")
    assert asked["devices"] == 8
    book = cli("beta", "exchange", "book")
    levels = {(b["model"], b["region"]): (b["devices_offered"], b["devices_requested"]) for b in book}
    assert levels == {("h800", "cn-east-1"): (8, 0), ("h800", "*"): (0, 8)}  # a request with no region: "*"
    summary = cli("operator", "exchange", "clear", "--method", "greedy")
    assert len(summary["matches"]) == 1
    match = cli("acme", "exchange", "matches")[0]
    cli("acme", "exchange", "accept", str(match["id"]))
    done = cli("p1", "exchange", "accept", str(match["id"]))
    assert done["state"] == "accepted"
    assert cli("p1", "offer", "show", str(made["id"]))["state"] == "matched"
    assert [r["state"] for r in cli("acme", "request", "list")] == ["matched"]
    assert cli("p1", "offer", "list")[0]["remaining"] == 0


def test_an_operator_records_a_measurement_from_the_command_line(world: Api, cli: Any) -> None:
    recorded = cli("operator", "catalog", "measure", "h800", "training-bf16", "0.48",
                   "--benchmark", "llama-70b pretrain tokens/s", "--measured-at", "2026-10-30T00:00:00Z")
    assert (recorded["model"], recorded["relative"], recorded["recorded_by"]) == ("h800", "0.48", "admin")
    listed = cli("acme", "catalog", "measurements", "--model", "h800")
    assert [row["id"] for row in listed] == [recorded["id"]]
