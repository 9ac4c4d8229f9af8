"""``zhisuan sim replay`` runs out of the box: the default trace, node list and seed-42 paper order are
packaged (CC BY 4.0, Alibaba Group) and reproduce the paper's default row without ../shared."""

import csv
import gzip
from pathlib import Path

import pytest
from typer.testing import CliRunner

from zhisuan.sim.cli import DEFAULT_NODES, DEFAULT_TRACE, PACKAGED, sim_app

SHARED = Path(__file__).resolve().parents[2].parent / "shared" / "traces" / "alibaba-gpu-v2023"


def test_packaged_files_and_attribution_are_present():
    notice = (PACKAGED / "NOTICE.md").read_text()
    assert "CC BY 4.0" in notice and "Alibaba" in notice
    for path in (DEFAULT_TRACE, DEFAULT_NODES, *(PACKAGED / "paper-order").glob("default-seed42.*.csv.gz")):
        with gzip.open(path, "rt") as handle:
            assert next(csv.reader(handle))  # a header line


@pytest.mark.skipif(not SHARED.is_dir(), reason="shared traces not found beside the repository")
@pytest.mark.parametrize(
    ("packaged", "original"),
    [
        ("openb_pod_list_default.csv.gz", "openb_pod_list_default.csv"),
        ("openb_node_list_gpu_node.csv.gz", "openb_node_list_gpu_node.csv"),
        ("paper-order/default-seed42.events.csv.gz", "paper-order/default-seed42.events.csv.gz"),
        ("paper-order/default-seed42.node-order.csv.gz", "paper-order/default-seed42.node-order.csv.gz"),
    ],
)
def test_packaged_data_is_the_published_data(packaged, original):
    def text(path: Path) -> bytes:
        return gzip.decompress(path.read_bytes()) if path.suffix == ".gz" else path.read_bytes()

    assert text(PACKAGED / packaged) == text(SHARED / original)


def test_replay_with_no_flags_reproduces_the_paper_default_row(tmp_path, monkeypatch):
    # A fresh clone has no ../shared: run from an empty directory, with only the defaults.
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(sim_app, ["replay"])
    assert result.exit_code == 0, result.output
    with (tmp_path / "out" / "replay" / "summary.csv").open() as handle:
        rows = {row["sc_policy"]: row for row in csv.DictReader(handle)}
    fgd = rows["06-FGD"]
    assert fgd["workload"] == "openb_pod_list_default" and fgd["order"] == "paper"
    # fgd-protocol.md §7, seed 42: FGD allocates 95.14 % at column 100 and 95.29 % at 130.
    assert (float(fgd["alloc_100_mean"]), float(fgd["alloc_130_mean"])) == (95.14, 95.29)
    assert "07-Zhisuan" in rows
    assert (tmp_path / "out" / "replay" / "replay.png").is_file()
