"""The family tables' arrival orders and their mean ± std cells."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

from zhisuan.sim.cli import DEFAULT_NODES, DEFAULT_TRACE, PACKAGED
from zhisuan.sim.families import OPENB_FAMILIES, append_row, family_order, mean_std, reference_rows
from zhisuan.sim.orders import generate_order, load_paper_order
from zhisuan.sim.traces import load_nodes, load_pods, node_models


def test_the_paper_order_for_default_when_shipped_else_generated_from_the_seed(tmp_path: Path) -> None:
    nodes = load_nodes(DEFAULT_NODES)
    pods = load_pods(DEFAULT_TRACE, node_models(nodes))
    paper = family_order(PACKAGED, "default", 42, pods, nodes)
    assert paper.source == "paper"
    assert np.array_equal(paper.events, load_paper_order(PACKAGED / "paper-order", "default", 42, pods, nodes).events)
    unshipped = family_order(PACKAGED, "default", 43, pods, nodes)  # only seed 42 ships
    assert unshipped.source == "generated"
    assert np.array_equal(unshipped.events, generate_order(pods, nodes, 43).events)
    # another trace's shipped paper order is not used: every other trace is compared on generated orders
    orders = tmp_path / "paper-order"
    orders.mkdir()
    for suffix in ("events", "node-order"):
        shutil.copy(
            PACKAGED / "paper-order" / f"default-seed42.{suffix}.csv.gz", orders / f"cpu050-seed42.{suffix}.csv.gz"
        )
    other = family_order(tmp_path, "cpu050", 42, pods, nodes)
    assert other.source == "generated"
    assert np.array_equal(other.events, generate_order(pods, nodes, 42).events)


@pytest.mark.parametrize(
    ("values", "signed", "cell"),
    [
        ([], False, "–"),
        ([95.0], False, "95.00 ± 0.00"),
        ([1.0, 2.0, 3.0], False, "2.00 ± 1.00"),
        ([0.5, 0.7], True, "+0.60 ± 0.14"),
        ([-0.5, -0.7], True, "-0.60 ± 0.14"),
    ],
)
def test_mean_std_cells(values: list[float], signed: bool, cell: str) -> None:
    assert mean_std(values, signed) == cell


def test_the_seventeen_traces_of_the_paper() -> None:
    traces = [name for names in OPENB_FAMILIES.values() for name in names]
    assert len(traces) == len(set(traces)) == 17
    assert traces[0] == "cpu250"  # CPU-heavy first: the family scripts run the slowest traces first


def test_rows_are_appended_under_one_header(tmp_path: Path) -> None:
    path = tmp_path / "runs.csv"
    append_row(path, ["trace", "seed"], ["default", 42])
    append_row(path, ["trace", "seed"], ["cpu250", 43])
    assert path.read_text().splitlines() == ["trace,seed", "default,42", "cpu250,43"]


def test_reference_rows_pair_seeds_and_take_the_best_packing_found():
    bounds = [
        {"trace": "default", "seed": "42", "column": "130", "bound": "99.9", "own_best": "98.0"},
        {"trace": "default", "seed": "43", "column": "130", "bound": "99.8", "own_best": "90.0"},
        {"trace": "default", "seed": "44", "column": "130", "bound": "99.7", "own_best": "97.0"},  # no FGD run
        {"trace": "default", "seed": "42", "column": "100", "bound": "97.0", "own_best": "99.0"},
        {"trace": "cpu250", "seed": "42", "column": "130", "bound": "99.0", "own_best": "99.5"},
    ]
    value = {
        ("default", "42", "fgd", "130"): 95.0, ("default", "42", "zhisuan", "130"): 96.0,
        ("default", "43", "fgd", "130"): 95.5, ("default", "43", "zhisuan", "130"): 95.9,
        ("default", "43", "offline:zhisuan", "130"): 98.5,
        ("default", "44", "zhisuan", "130"): 96.1,
        ("default", "42", "fgd", "100"): 95.0, ("default", "42", "zhisuan", "100"): 95.8,
        ("default", "42", "offline:zhisuan", "100"): 99.9,  # offline packings count at column 130 only
    }
    assert reference_rows(bounds, value, "default", "130") == (
        [95.0, 95.5], [96.0, 95.9], [99.9, 99.8], [98.0, 98.5], ["own", "offline-lf"]
    )
    assert reference_rows(bounds, value, "default", "100") == ([95.0], [95.8], [97.0], [99.0], ["own"])
    assert reference_rows(bounds, value, "cpu250", "130") == ([], [], [], [], [])
