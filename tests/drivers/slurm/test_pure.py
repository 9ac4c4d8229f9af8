"""The Slurm driver's pure functions, table-driven and property-based (no Slurm needed)."""

from __future__ import annotations

import dataclasses
import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tests.drivers.slurm.specs import make_spec
from zhisuan.catalog.loader import load_catalog
from zhisuan.drivers.base import LaunchSpec
from zhisuan.drivers.slurm.driver import complete_utf8_length
from zhisuan.drivers.slurm.gres import gres_type_for_model, model_for_gres_type, name_words
from zhisuan.drivers.slurm.parse import SlurmJob, engine_state, exit_code_of, gres_devices, node_state
from zhisuan.drivers.slurm.translate import InvalidLaunch, JobPaths, checked_env, time_limit_minutes, translate

CATALOG = load_catalog()
PATHS = JobPaths("/w", "/l", "/l/p.sh")


@pytest.mark.parametrize(("gres_type", "model"), [
    ("h100", "h100-sxm"),           # not an alias: leading words of the key
    ("H100", "h100-sxm"),
    ("a100", "a100-sxm4-80gb"),     # an alias of exactly one model
    ("l40s", "l40s"),
    ("nvidia_h800", "h800"),        # vendor word dropped
    ("910B3", "ascend-910b3"),
    ("h10", "h10"),                 # words, not characters: nothing fits, Slurm's own name is kept
    ("gpu", "gpu"),
])
def test_model_for_gres_type(gres_type: str, model: str) -> None:
    assert model_for_gres_type(gres_type, CATALOG) == model


@pytest.mark.parametrize(("model", "site_types", "expected"), [
    ("h100-sxm", ["a100", "h100"], "h100"),
    ("nvidia-h100-sxm5-80g", ["h100"], "h100"),   # a key the catalog does not know still maps
    ("h100-pcie", ["h100"], "h100"),
    ("a100-sxm4-80gb", ["h100"], None),
    ("l40s", ["L40S"], "L40S"),
    ("h100-sxm", ["h100nvl", "h100"], "h100"),    # a longer word is another type
])
def test_gres_type_for_model(model: str, site_types: list[str], expected: str | None) -> None:
    assert gres_type_for_model(model, site_types, CATALOG) == expected


def test_explicit_mapping_wins_both_ways() -> None:
    overrides = {"hopper": "h100-pcie"}
    assert model_for_gres_type("hopper", CATALOG, overrides) == "h100-pcie"
    assert gres_type_for_model("h100-pcie", ["h100", "hopper"], CATALOG, overrides) == "hopper"


@given(st.sampled_from([m.key for m in CATALOG]))
def test_every_catalog_model_round_trips_through_its_own_key_as_gres_type(key: str) -> None:
    gres_type = gres_type_for_model(key, [key], CATALOG)
    assert gres_type == key
    assert model_for_gres_type(gres_type, CATALOG) == key


def test_name_words_drop_one_vendor_word() -> None:
    assert name_words("NVIDIA H100 SXM5-80G") == ("h100", "sxm5", "80g")
    assert name_words("nvidia") == ("nvidia",)


@pytest.mark.parametrize(("status", "code"), [(0, 0), (768, 3), (35072, 137), (9, 137), (15, 143), (256 * 255, 255)])
def test_exit_code_of_wait_status(status: int, code: int) -> None:
    assert exit_code_of(status) == code


@given(st.integers(min_value=1, max_value=10**9))
def test_time_limit_covers_max_run_and_wastes_under_a_minute(max_run_s: int) -> None:
    minutes = time_limit_minutes(max_run_s)
    assert minutes * 60 >= max_run_s > (minutes - 1) * 60
    assert minutes == math.ceil(max_run_s / 60)


@pytest.mark.parametrize("max_run_s", [0, -5])
def test_time_limit_refuses_non_positive(max_run_s: int) -> None:
    with pytest.raises(InvalidLaunch):
        time_limit_minutes(max_run_s)


@pytest.mark.parametrize(("state", "flags", "expected"), [
    ("idle", [], "ready"), ("mixed", [], "ready"), ("allocated", ["COMPLETING"], "ready"),
    ("idle", ["DRAIN"], "drained"), ("mixed", ["DRAIN"], "drained"), ("drained", [], "drained"),
    ("down", [], "down"), ("idle", ["NOT_RESPONDING"], "down"), ("down", ["DRAIN"], "down"),
    ("unknown", [], "down"), ("idle+drain", [], "drained"),
])
def test_node_state(state: str, flags: list[str], expected: str) -> None:
    assert node_state(state, flags) == expected


def test_gres_devices_reads_types_counts_and_ignores_other_gres() -> None:
    assert gres_devices("gpu:h100:8(S:0-1),gpu:a100:2,nic:mlx5:4") == [("h100", 8), ("a100", 2)]
    assert gres_devices("gpu:4") == [("gpu", 4)]
    assert gres_devices("") == []


BASE_JOB = SlurmJob(job_id="5", name="zs-5-1", state="RUNNING", reason="None", exit_status=0, submit_time=100,
                    start_time=110, end_time=200, comment="", batch_host="n1")


@pytest.mark.parametrize(("slurm_state", "engine", "platform_fault"), [
    ("PENDING", "pending", False), ("REQUEUED", "pending", False), ("SUSPENDED", "pending", False),
    ("CONFIGURING", "pending", False), ("RUNNING", "running", False), ("COMPLETING", "running", False),
    ("COMPLETED", "succeeded", False), ("FAILED", "failed", False), ("TIMEOUT", "failed", False),
    ("OUT_OF_MEMORY", "failed", False), ("DEADLINE", "failed", False), ("CANCELLED", "cancelled", False),
    ("NODE_FAIL", "failed", True), ("BOOT_FAIL", "failed", True), ("PREEMPTED", "failed", True),
    ("SOMETHING_NEW", "pending", False),  # never "lost": the engine still has the job
])
def test_engine_state_table(slurm_state: str, engine: str, platform_fault: bool) -> None:
    state = engine_state(dataclasses.replace(BASE_JOB, state=slurm_state))
    assert (state.state, state.platform_fault) == (engine, platform_fault)
    assert state.ended == (engine in ("succeeded", "failed", "cancelled"))
    if state.ended:
        assert state.ended_at is not None and state.started_at is not None


@pytest.mark.parametrize("env", [{"1X": "a"}, {"A-B": "a"}, {"RANK": "3"}, {"SLURM_JOB_ID": "1"},
                                 {"ZHISUAN_JOB_ID": "9"}, {"A": "x\0y"}, {"BIG": "x" * 70000}])
def test_bad_environment_is_refused_with_its_name(env: dict[str, str]) -> None:
    with pytest.raises(InvalidLaunch, match="env"):
        checked_env(env)


@pytest.mark.parametrize(("spec", "words"), [
    (make_spec("zs-1-1", [], 1, gpus=0), "command or script"),
    (make_spec("zs-1-1", ["true"], 1, gpus=2), "no GPU gres type"),  # gres type None for a GPU job
    (dataclasses.replace(make_spec("zs-1-1", ["true"], 2), workers=()), "at least one worker"),
    (make_spec("zs-1-1; rm -rf /", ["true"], 1), "safe Slurm job name"),
])
def test_translate_refuses_what_slurm_cannot_express(spec: LaunchSpec, words: str) -> None:
    with pytest.raises(InvalidLaunch, match=words):
        translate(spec, PATHS, None)


def test_translate_refuses_uneven_gangs_and_shared_nodes() -> None:
    spec = make_spec("zs-1-1", ["true"], 2, gpus=2)
    one_gpu = dataclasses.replace(spec.workers[1], device_indices=(0,))
    uneven = dataclasses.replace(spec, workers=(spec.workers[0], one_gpu))
    with pytest.raises(InvalidLaunch, match="same devices"):
        translate(uneven, PATHS, "h100")
    shared = dataclasses.replace(spec, workers=(spec.workers[0], dataclasses.replace(spec.workers[1], node="sn1")))
    with pytest.raises(InvalidLaunch, match="one worker per node"):
        translate(shared, PATHS, "h100")


@given(st.text(min_size=1, max_size=200), st.integers(min_value=4, max_value=64))
def test_log_pages_never_cut_a_character(text: str, limit: int) -> None:
    data, pages, offset = text.encode(), [], 0
    while offset < len(data):
        page = data[offset:offset + limit]
        if len(page) == limit:
            page = page[:complete_utf8_length(page)]
        pages.append(page.decode("utf-8"))  # strict: raises if a character was cut
        offset += len(page)
    assert "".join(pages) == text
