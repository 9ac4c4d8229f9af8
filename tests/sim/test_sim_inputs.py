"""Bad input to the replay names the file, the line and the field; the CLI writes every artefact."""

import re
from pathlib import Path

import pytest
from typer.testing import CliRunner

from zhisuan.sim.cli import sim_app
from zhisuan.sim.traces import TraceFormatError, load_nodes, load_pods

NODES_CSV = """sn,cpu_milli,memory_mib,gpu,model
n-0,32000,131072,4,T4
n-1,64000,262144,8,G2
n-2,16000,65536,2,P100
"""

PODS_CSV = """name,cpu_milli,memory_mib,num_gpu,gpu_milli,gpu_spec
p-0,4000,8192,1,500,
p-1,8000,16384,1,1000,
p-2,2000,4096,0,0,
p-3,16000,32768,2,1000,
p-4,3000,4096,1,250,T4|P100
p-5,6000,8192,1,750,
"""


MODELS = {"T4", "G2", "P100"}


def write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


@pytest.mark.parametrize(
    ("text", "line", "field"),
    [
        ("name,cpu_milli,num_gpu,gpu_milli\np,1,0,0\n", 1, "memory_mib"),
        (PODS_CSV.replace("p-2,2000", "p-2,-5"), 4, "cpu_milli"),
        (PODS_CSV.replace("T4|P100", "T4|A100"), 6, "gpu_spec"),
        (PODS_CSV.replace("p-5,6000,8192,1,750", "p-5,6000,8192,1,abc"), 7, "gpu_milli"),
        (PODS_CSV.replace("p-1,8000,16384,1,1000", "p-1,8000,16384,1,0"), 3, "gpu_milli"),
        (PODS_CSV.replace("p-3", "p-0"), 5, "name"),
    ],
)
def test_pod_trace_errors_name_file_line_and_field(tmp_path, text, line, field):
    path = write(tmp_path, "pods.csv", text)
    with pytest.raises(TraceFormatError) as caught:
        load_pods(path, MODELS)
    assert (caught.value.line, caught.value.field) == (line, field)
    assert str(path) in str(caught.value) and f"'{field}'" in str(caught.value)


@pytest.mark.parametrize("text", ["", "name,cpu_milli,memory_mib,num_gpu,gpu_milli\n"])
def test_empty_files_are_refused(tmp_path, text):
    with pytest.raises(TraceFormatError, match="empty file|no data rows"):
        load_pods(write(tmp_path, "pods.csv", text), MODELS)


def test_node_list_errors(tmp_path):
    with pytest.raises(TraceFormatError, match=r"nodes.csv:3: field 'model'"):
        load_nodes(write(tmp_path, "nodes.csv", NODES_CSV.replace("8,G2", "8,")))


def test_cli_writes_curves_summary_and_plot(tmp_path):
    nodes, pods = (
        write(tmp_path, "nodes.csv", NODES_CSV),
        write(tmp_path, "openb_pod_list_tiny.csv", PODS_CSV),
    )
    result = CliRunner().invoke(
        sim_app,
        [
            "replay",
            "--nodes",
            str(nodes),
            "--trace",
            str(pods),
            "--policy",
            "fgd",
            "--policy",
            "zhisuan",
            "--seeds",
            "1-2",
            "--out",
            str(tmp_path / "out"),
        ],
    )
    assert result.exit_code == 0, result.output
    header = (tmp_path / "out" / "analysis_allo_discrete.csv").read_text().splitlines()
    assert header[0].startswith("workload,sc_policy,seed,0,1,2,") and header[0].endswith(",130")
    assert len(header) == 5 and header[1].startswith("openb_pod_list_tiny,06-FGD,1,")
    assert (tmp_path / "out" / "replay.png").stat().st_size > 0
    assert "alloc_130_mean" in (tmp_path / "out" / "summary.csv").read_text()
    assert "CC BY 4.0" in result.output


def test_cli_reports_bad_input_and_exits_2(tmp_path):
    nodes = write(tmp_path, "nodes.csv", NODES_CSV)
    pods = write(tmp_path, "pods.csv", PODS_CSV.replace("p-4,3000", "p-4,-3000"))
    result = CliRunner().invoke(
        sim_app,
        [
            "replay",
            "--nodes",
            str(nodes),
            "--trace",
            str(pods),
            "--orders",
            "generated",
            "--out",
            str(tmp_path / "out"),
        ],
    )
    assert result.exit_code == 2
    assert re.search(r"pods\.csv:6: field 'cpu_milli': must be >= 0", result.output)
