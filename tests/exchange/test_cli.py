"""``zhisuan offer|request|exchange`` against the running API (the CLI's HTTP calls go to the test app)."""

from __future__ import annotations

import json
from typing import Any

import pytest
from typer.testing import CliRunner

from tests.api.conftest import Api
from tests.exchange.market_setup import add_tenant, fleet
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


def test_the_issue_walkthrough_from_the_command_line(world: Api, cli: Any) -> None:
    """Done means, as a new user would do it: two providers offer, three tenants request (a 64-GPU gang,
    one flexible between H800 and Ascend 910B2 by normalised throughput), one clearing round, both sides
    see and accept their matches, and the contracts and entitlements exist."""
    nodes = fleet(world)  # the hardware (inventory, not the exchange): s1 of p1, s2 of p2
    add_tenant(world, "gamma")
    window = ["--start", "2026-11-02T00:00:00Z", "--end", "2027-02-01T00:00:00Z", "--min-term-h", "24"]
    starts = ["--earliest-start", "2026-11-02T00:00:00Z", "--latest-start", "2026-11-10T00:00:00Z",
              "--duration-h", "720"]
    node_flags = [flag for name in nodes["h100"] for flag in ("--node", name)]
    cli("p1", "offer", "create", "--site", "s1", *node_flags, *window, "--pricing-model", "server_month",
        "--floor-price", "100000")
    cli("p1", "offer", "create", "--site", "s1", "--model", "h800", "--devices", "8", *window,
        "--pricing-model", "device_hour", "--floor-price", "12")
    cli("p2", "offer", "create", "--site", "s2", "--model", "ascend-910b2", "--devices", "32", *window,
        "--pricing-model", "pflops_year", "--floor-price", "150000")
    gang = cli("acme", "request", "create", "--amount", "64", "--model", "h100-sxm", "--gang", *starts,
               "--max-price", "25")
    flex = cli("beta", "request", "create", "--amount", "8", "--unit", "h100_eq", "--model", "h800",
               "--model", "ascend-910b2", *starts, "--max-price", "20")
    small = cli("gamma", "request", "create", "--amount", "4", "--model", "h800", *starts, "--max-price", "20")
    assert flex["models"] == {"h800": "1.0000", "ascend-910b2": "0.3577"}

    summary = cli("operator", "exchange", "clear")
    assert summary["status"] == "optimal" and summary["unmatched"] == []
    assert {m["request_id"] for m in summary["matches"]} == {gang["id"], flex["id"], small["id"]}
    for tenant, provider_of in (("acme", {"h100-sxm": "p1"}), ("beta", {"h800": "p1", "ascend-910b2": "p2"}),
                                ("gamma", {"h800": "p1"})):
        mine = cli(tenant, "exchange", "matches")
        assert mine and {m["model"] for m in mine} == set(provider_of)
        for match in mine:
            cli(tenant, "exchange", "accept", str(match["id"]))
            provider = provider_of[match["model"]]
            assert match["id"] in {m["id"] for m in cli(provider, "exchange", "matches")}
            assert cli(provider, "exchange", "accept", str(match["id"]))["state"] == "accepted"
            contract = cli(tenant, "contract", "show", str(match["contract_id"]))
            assert contract["state"] == "active" and contract["devices"] == match["devices"]
            held = cli(tenant, "allocation", "list", "--contract", str(match["contract_id"]))
            assert held and {a["purpose"] for a in held} == {"contract"}
    gang_match = [m for m in cli("acme", "exchange", "matches") if m["request_id"] == gang["id"]]
    assert [m["devices"] for m in gang_match] == [64]
