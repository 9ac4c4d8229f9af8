"""``zhisuan sim goodput``: the Llama 3 comparison with no flags, JSON whose breakdowns add up to the window,
and bad input refused naming the flag (exit 2, no traceback)."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from zhisuan.sim.cli import sim_app
from zhisuan.sim.goodput import GoodputInputError, GoodputInputs, build, parse_rates

runner = CliRunner()


def test_no_flags_runs_the_llama3_scenario_and_states_every_assumption() -> None:
    result = runner.invoke(sim_app, ["goodput"])
    assert result.exit_code == 0, result.output
    out = result.output
    assert "16,384 GPUs (2,048 nodes), 54 days, 20 seeds" in out
    assert "job MTBF 3.09 h: 419 unexpected failures and 47 planned interruptions expected" in out
    for policy in ("fixed-60min", "young-daly", "platform"):
        assert f"\n{policy} " in out
    table = [line for line in out.splitlines() if line.startswith("| --")]
    flags = {line.split("|")[1].strip() for line in table}
    assert {"--gpus", "--rate", "--checkpoint-write-s", "--spares", "--startup-s", "--snapshot-s"} <= flags
    assert all(line.count("|") == 5 for line in table)


def test_json_output_adds_up_and_ranks_the_policies() -> None:
    result = runner.invoke(sim_app, ["goodput", "--json", "--seeds", "4", "--days", "10"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.output)
    assert report["seeds"] == {"first": 0, "count": 4}
    rows = {row["policy"]: row for row in report["policies"]}
    assert list(rows) == ["fixed-60min", "young-daly", "platform"]
    for row in rows.values():
        hours = row["hours"]
        parts = hours["productive"] + hours["checkpoint"] + hours["lost"] + hours["restart"] + hours["queueing"]
        assert parts == pytest.approx(hours["wall"]) and hours["wall"] == pytest.approx(240)
        assert row["ettr"]["p5"] <= row["ettr"]["mean"] <= row["ettr"]["p95"]
        assert row["ettr"]["mean"] == pytest.approx(hours["productive"] / hours["wall"], rel=1e-9)
    assert rows["fixed-60min"]["ettr"]["mean"] < rows["young-daly"]["ettr"]["mean"] < rows["platform"]["ettr"]["mean"]
    assert rows["platform"]["counts"]["spare_swaps"] > 0 and rows["young-daly"]["counts"]["spare_swaps"] == 0


def test_flags_reach_the_simulation() -> None:
    base = json.loads(runner.invoke(sim_app, ["goodput", "--json", "--seeds", "3", "--days", "5"]).output)
    worse = json.loads(runner.invoke(sim_app, ["goodput", "--json", "--seeds", "3", "--days", "5", "--rate-scale",
                                               "3", "--rate", "faulty_gpu=50", "--gpus", "32768"]).output)
    assert worse["scenario"]["job_mtbf_hours"] < base["scenario"]["job_mtbf_hours"] / 6
    for a, b in zip(base["policies"], worse["policies"], strict=True):
        assert b["ettr"]["mean"] < a["ettr"]["mean"]
    changed = {row["flag"]: row["source"] for row in worse["assumptions"]}
    assert changed["--gpus"] == "set on the command line" and changed["--rate"] == "set on the command line"


def test_a_fleet_that_never_fails_gives_strict_json() -> None:
    result = runner.invoke(sim_app, ["goodput", "--json", "--seeds", "2", "--days", "2", "--rate-scale", "0",
                                     "--planned-per-day", "0"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.output, parse_constant=lambda c: pytest.fail(f"{c} in JSON"))
    assert report["scenario"]["job_mtbf_hours"] is None
    assert [row["ettr"]["mean"] for row in report["policies"]][1:] == [1.0, 1.0]


@pytest.mark.parametrize(("args", "flag"), [
    (["--gpus", "0"], "--gpus"),
    (["--gpus-per-node", "-8"], "--gpus-per-node"),
    (["--days", "0"], "--days"),
    (["--rate", "faulty_gpu=-1"], "--rate"),
    (["--rate", "gpu=3"], "--rate"),
    (["--rate", "nic=lots"], "--rate"),
    (["--rate-scale", "-1"], "--rate-scale"),
    (["--checkpoint-write-s", "20000"], "--checkpoint-write-s"),  # slower than the 3.1-hour MTBF
    (["--snapshot-s", "0"], "--snapshot-s"),
    (["--startup-s", "-5"], "--startup-s"),
    (["--requeue-s", "-1"], "--requeue-s"),
    (["--detection-s", "nan"], "--detection-s"),
    (["--spares", "-1"], "--spares"),
    (["--seeds", "0"], "--seeds"),
    (["--planned-per-day", "-2"], "--planned-per-day"),
    (["--gpus", "100000000", "--days", "365"], "--days"),  # ~17 million failures: refused, not a hang
])
def test_bad_input_names_the_flag_and_exits_2(args: list[str], flag: str) -> None:
    result = runner.invoke(sim_app, ["goodput", "--seeds", "1", *args])
    assert result.exit_code == 2
    assert result.output.startswith(f"error: {flag}:") and "Traceback" not in result.output
    assert not isinstance(result.exception, Exception) or isinstance(result.exception, SystemExit)


def test_the_platform_policy_gets_the_platform_timings() -> None:
    scenario, policies = build(GoodputInputs(spares=5, snapshot_s=3, fixed_interval_min=30))
    fixed, young_daly, platform = policies
    assert fixed.name == "fixed-30min" and fixed.fixed_interval_s == 1800 and fixed.blocking_s == 30
    assert young_daly.interval == "young_daly" and young_daly.spares == 0
    assert platform.interval == "adaptive" and platform.spares == 5 and platform.blocking_s == 3
    assert scenario.gpus == 16_384 and scenario.nodes == 2_048


def test_parse_rates_overrides_one_component() -> None:
    rates = parse_rates(["nic=4.5"])
    assert rates["nic"] == 4.5 and rates["faulty_gpu"] == pytest.approx(6.92, abs=0.01)
    with pytest.raises(GoodputInputError) as error:
        parse_rates(["nic"])
    assert error.value.flag == "--rate"
