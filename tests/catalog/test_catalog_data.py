"""The shipped accelerator catalog: every entry valid, sourced, resolvable by real tool names."""

from __future__ import annotations

import csv
import dataclasses
import json
from decimal import Decimal
from importlib import resources
from pathlib import Path

import pytest
import yaml

from zhisuan.catalog import CONFIDENCES, PRECISIONS, Source, UnknownAcceleratorModel, default_catalog, normalise_name
from zhisuan.catalog.loader import figure_values
from zhisuan.errors import InvalidInput

CATALOG = default_catalog()
MODELS = CATALOG.all()
TRACES = Path(__file__).resolve().parents[3] / "shared" / "traces"
REQUIRED_VENDORS = {"nvidia", "huawei", "cambricon", "hygon", "moorethreads", "kunlunxin", "iluvatar",
                    "metax", "enflame"}  # fmt: skip


def test_catalog_has_at_least_25_models_from_at_least_6_vendors() -> None:
    real_models = [m for m in MODELS if not m.anonymised]
    assert len(real_models) >= 25
    assert len(CATALOG.vendors()) >= 6
    assert set(CATALOG.vendors()) >= REQUIRED_VENDORS
    assert "anonymised" not in CATALOG.vendors()


@pytest.mark.parametrize("model", MODELS, ids=lambda m: m.key)
def test_every_figure_is_positive_and_named_by_a_source(model) -> None:
    """Shipped data is stricter than the loader: even usable memory must be named (null by 'none')."""
    for field_name, value in figure_values(model).items():
        naming = [s for s in model.sources if field_name in s.fields]
        assert naming, f"{model.key}.{field_name} has no source"
        if value is not None:
            assert value > 0
            assert any(
                (s.kind not in ("none", "derived") and (s.url or s.title)) or (s.kind == "derived" and s.formula)
                for s in naming
            ), f"{model.key}.{field_name}"


@pytest.mark.parametrize("model", MODELS, ids=lambda m: m.key)
def test_every_figure_has_a_confidence_and_derived_figures_say_how(model) -> None:
    for field_name, value in figure_values(model).items():
        confidence = model.confidence(field_name)
        if value is None:
            assert confidence is None
            continue
        assert confidence in CONFIDENCES, f"{model.key}.{field_name}"
        if confidence == "derived":
            derived = [s for s in model.sources if field_name in s.fields and s.kind == "derived"]
            assert derived and all(s.formula and s.formula.startswith("=") for s in derived)
    for source in model.sources:
        assert (source.kind == "derived") == (source.formula is not None), f"{model.key}: {source.note}"


@pytest.mark.parametrize(
    ("key", "field_name", "confidence", "formula_mentions"),
    [
        ("h800", "memory_gib", "derived", "h100-sxm"),  # audit: not stated by the cited press report
        ("h800", "tflops_dense.fp8", "derived", "h100-sxm"),
        ("h800", "tflops_dense.int8", "derived", "h100-sxm"),
        ("h800", "tflops_dense.bf16", "secondary", None),  # DeepSeek maintainers state 989 dense
        ("l20", "tflops_dense.bf16", "derived", "tflops_dense.fp16"),  # audit: report gives FP16 only
        ("l20", "tflops_dense.fp16", "secondary", None),
        ("mlu370-x4", "memory_gib", "derived", "mlu370-x8"),
        ("mlu370-x4", "usable_memory_mib", "community", None),
        ("dcu-k100-ai", "tflops_dense.bf16", "community", None),
        ("iluvatar-bi-v100", "tflops_dense.bf16", "secondary", None),
        ("h100-sxm", "tflops_dense.bf16", "vendor", None),
        ("ascend-910b3", "tflops_dense.bf16", "derived", "cube_core_cnt"),  # issue: 910B1-B4 were null
        ("ascend-910b3", "memory_gib", "vendor", None),  # Huawei's own platform config
        ("ascend-910b2", "tflops_dense.bf16", "community", None),  # the migration guide outranks our formula
        ("ascend-910b4", "memory_gib", "vendor", None),
    ],
)
def test_audited_figures_carry_the_confidence_their_sources_support(
    key: str, field_name: str, confidence: str, formula_mentions: str | None
) -> None:
    model = CATALOG.get(key)
    assert model.confidence(field_name) == confidence
    if formula_mentions is not None:
        formulas = [s.formula or "" for s in model.sources if field_name in s.fields and s.kind == "derived"]
        assert any(formula_mentions in formula for formula in formulas)


# (key, Cube cores, Cube clock in MHz) as Huawei's CANN platform configs give them (cann-platform-config)
ASCEND_910B_CUBES = [
    ("ascend-910b1", 24, 1850),
    ("ascend-910b2", 24, 1800),
    ("ascend-910b3", 20, 1800),
    ("ascend-910b4", 20, 1500),
    ("ascend-910b4-1", 20, 1500),
]


@pytest.mark.parametrize(("key", "cores", "mhz"), ASCEND_910B_CUBES)
def test_910b_peaks_follow_from_the_vendor_platform_config(key: str, cores: int, mhz: int) -> None:
    """Dense Cube peak = cores x clock x 16x16x16 MACs x 2 (FP16/BF16); INT8 tiles are 16x32x16 (twice)."""
    model = CATALOG.get(key)
    fp16 = Decimal(cores * mhz * 16 * 16 * 16 * 2) / 10**6  # MHz x FLOP per cycle -> TFLOPS
    assert model.tflops_dense.fp16 == model.tflops_dense.bf16 == fp16
    assert model.tflops_dense.int8 == 2 * fp16
    assert model.tflops_dense.fp8 is None
    formulas = [s.formula or "" for s in model.sources if "tflops_dense.bf16" in s.fields and s.kind == "derived"]
    assert any(f"{cores} x {mhz} MHz" in formula for formula in formulas)


# The issue's list of domestic figures that were null; each is now a number or a null saying what was searched.
ISSUE_FIGURES = [
    ("mlu590", "tflops_dense.bf16"), ("kunlunxin-p800", "tflops_dense.bf16"), ("metax-c500", "tflops_dense.bf16"),
    ("mlu370-x4", "tflops_dense.bf16"), ("dcu-z100", "tflops_dense.fp16"), ("dcu-k100-ai", "tflops_dense.bf16"),
    ("enflame-t20", "tflops_dense.bf16"), ("enflame-s60", "tflops_dense.bf16"),
    ("iluvatar-bi-v100", "tflops_dense.bf16"), ("mtt-s5000", "tflops_dense.bf16"),
    ("ascend-910c", "interconnect_bandwidth_gb_s"),
    *((key, "tflops_dense.bf16") for key, _, _ in ASCEND_910B_CUBES),
]  # fmt: skip


@pytest.mark.parametrize(("key", "field_name"), ISSUE_FIGURES)
def test_each_audited_figure_is_filled_or_says_what_was_searched(key: str, field_name: str) -> None:
    model = CATALOG.get(key)
    if model.confidence(field_name) is not None:
        return
    reasons = [s.note for s in model.sources if field_name in s.fields and s.kind == "none"]
    assert any("searched" in note.lower() for note in reasons), f"{key}.{field_name}: say what was searched"


def test_a_stronger_source_outranks_a_derivation() -> None:
    h800 = CATALOG.get("h800")
    vendor = Source(kind="vendor", fields=("memory_gib",), note="datasheet", title="H800 datasheet")
    assert dataclasses.replace(h800, sources=(*h800.sources, vendor)).confidence("memory_gib") == "vendor"
    with pytest.raises(ValueError, match="unknown figure field"):
        h800.confidence("tflops_sparse.bf16")


# (model key, nominal GiB per unit, usable MiB per device as its SMI tool reports it)
USABLE_MEMORY = [
    ("mlu370-x4", Decimal(24), 23308),  # the issue's example: 23,308 MiB seen vs 24 x 1024 = 24,576
    ("mlu370-x8", Decimal(48), 23374),  # two chips of 24 GiB each
    ("h100-sxm", Decimal(80), 81559),
    ("dcu-z100", Decimal(32), 32752),
    ("ascend-910c", Decimal(128), 65536),  # two dies, 64 GiB each
    ("iluvatar-bi-v150", None, 32768),  # usable known per device though the board's nominal is not
]


@pytest.mark.parametrize(("key", "nominal_gib", "usable_mib"), USABLE_MEMORY)
def test_usable_memory_is_kept_apart_from_nominal(key: str, nominal_gib: Decimal | None, usable_mib: int) -> None:
    model = CATALOG.get(key)
    assert model.memory_gib == nominal_gib
    assert model.usable_memory_mib == usable_mib
    assert model.per_device_memory_mib() == usable_mib  # the fallback prefers what tools report


@pytest.mark.parametrize("model", [m for m in MODELS if m.usable_memory_mib is not None], ids=lambda m: m.key)
def test_usable_memory_never_exceeds_nominal(model) -> None:
    nominal = model.per_device_memory_gib()
    if nominal is not None:
        assert model.usable_memory_mib <= nominal * 1024


def test_without_a_tool_reading_the_fallback_is_the_nominal_upper_bound() -> None:
    assert CATALOG.get("a100-sxm4-80gb").usable_memory_mib is None
    assert CATALOG.get("a100-sxm4-80gb").per_device_memory_mib() == 80 * 1024
    assert CATALOG.get("mlu590").per_device_memory_mib() is None  # nothing published, nothing invented


GOLDEN = Path(__file__).resolve().parents[1] / "agent" / "golden"


@pytest.mark.parametrize(
    "golden",
    ["cnmon/mlu370-x4-v4", "ixsmi/bi-v100x8", "ixsmi/bi-v150s", "mthreads-gmi/s5000x8", "mx-smi/c500x8",
     "npu-smi/910b4-1x2-no-mapping", "npu-smi/atlas-a3-910c", "nvidia-smi/h100x8-healthy"],
)  # fmt: skip
def test_usable_memory_matches_what_the_recorded_tool_outputs_report(golden: str) -> None:
    """The agent's parsed fixtures (what placement uses) agree with the catalog's recorded figure."""
    devices = json.loads((GOLDEN / f"{golden}.json").read_text())
    reported = {(d["model_key"], d["memory_mib"]) for d in devices if d["model_key"]}
    assert reported and all(CATALOG.get(key).usable_memory_mib == mib for key, mib in reported)


def test_hygon_resource_is_the_one_the_cited_plugin_registers() -> None:
    """HAMi's DCU plugin, the cited source, registers hygon.com/dcunum (not hygon.com/dcu): its
    cmd/k8s-device-plugin/main.go returns namespace "hygon.com" and starts the one plugin "dcunum"."""
    for model in (m for m in MODELS if m.vendor == "hygon"):
        assert model.k8s_resource == "hygon.com/dcunum"
    document = yaml.safe_load(resources.files("zhisuan.catalog").joinpath("accelerators.yaml").read_text())
    reference = document["references"][document["vendors"]["hygon"]["reference"]]
    assert "hygon.com/dcunum" in reference["title"]
    assert "dcu-vgpu-device-plugin" in reference["url"] and "main.go" in reference["url"]  # the code, not a doc


def test_k100_and_k100_ai_are_different_chips() -> None:
    assert CATALOG.resolve("K100").key == "dcu-k100"
    assert CATALOG.resolve("K100_AI").key == "dcu-k100-ai"
    assert CATALOG.get("dcu-k100").tflops_dense.fp16 < CATALOG.get("dcu-k100-ai").tflops_dense.fp16


@pytest.mark.parametrize("model", [m for m in MODELS if not m.anonymised], ids=lambda m: m.key)
def test_real_models_name_their_platform_integration(model) -> None:
    assert model.stack and model.k8s_resource and model.visible_devices_env and model.smi_tool
    assert "/" in model.k8s_resource  # a Kubernetes extended resource is domain/name
    assert model.visible_devices_env.endswith("VISIBLE_DEVICES")
    assert model.aliases, "tools report names; a model without aliases cannot be resolved from them"


# Where an 8-bit path is more than twice the 16-bit figure for a documented reason (see source notes).
RATIO_EXCEPTIONS = {
    "rtx-4090": "16-bit figure is the FP32-accumulate rate, which GeForce runs at half speed",
    "mlu370-x8": "Cambricon publishes 96 TFLOPS FP16 and 256 TOPS INT8",
}


@pytest.mark.parametrize("model", MODELS, ids=lambda m: m.key)
def test_dense_figures_are_plausibly_dense(model) -> None:
    """8-bit paths run at 1x-2x the 16-bit rate; 4x would mean a sparse figure slipped in somewhere."""
    throughput = model.tflops_dense
    if throughput.bf16 is not None and throughput.fp16 is not None:
        assert throughput.bf16 == throughput.fp16
    sixteen_bit = throughput.fp16 or throughput.bf16
    for low in (throughput.fp8, throughput.int8):
        if sixteen_bit is not None and low is not None and model.key not in RATIO_EXCEPTIONS:
            assert sixteen_bit <= low <= sixteen_bit * Decimal("2.05"), model.key


@pytest.mark.parametrize("model", [m for m in MODELS if m.anonymised], ids=lambda m: m.key)
def test_anonymised_trace_models_have_no_figures(model) -> None:
    assert all(value is None for value in figure_values(model).values())
    assert model.vendor == "anonymised"


def test_aliases_are_unique_across_models() -> None:
    owner: dict[str, str] = {}
    for model in MODELS:
        for name in (model.key, *model.aliases):
            normalised = normalise_name(name)
            assert owner.setdefault(normalised, model.key) == model.key, f"{name!r} claimed twice"


@pytest.mark.parametrize(
    ("reported", "key"),
    [
        ("NVIDIA H100 80GB HBM3", "h100-sxm"),  # nvidia-smi, H100 SXM5
        ("NVIDIA H100 PCIe", "h100-pcie"),
        ("NVIDIA A100-SXM4-80GB", "a100-sxm4-80gb"),
        ("NVIDIA A100-SXM4-40GB", "a100-sxm4-40gb"),
        ("NVIDIA A800-SXM4-80GB", "a800-sxm4-80gb"),
        ("NVIDIA H800", "h800"),
        ("NVIDIA H20", "h20"),
        ("NVIDIA H200", "h200"),
        ("NVIDIA L20", "l20"),
        ("NVIDIA L40S", "l40s"),
        ("NVIDIA A10", "a10"),
        ("Tesla T4", "t4"),
        ("Tesla V100-SXM2-32GB", "v100-sxm2-32gb"),
        ("Tesla P100-PCIE-16GB", "p100-pcie-16gb"),
        ("NVIDIA GeForce RTX 4090", "rtx-4090"),
        ("Ascend910B3", "ascend-910b3"),  # npu-smi / torch_npu device name
        ("Ascend 910B3", "ascend-910b3"),  # npu-smi info -m
        ("910B4-1", "ascend-910b4-1"),  # npu-smi info
        ("310P3", "ascend-310p3"),
        ("MLU370-X8", "mlu370-x8"),  # cnmon
        ("K100_AI", "dcu-k100-ai"),
        ("Z100L", "dcu-z100"),
        ("MTT S4000", "mtt-s4000"),  # mthreads-gmi
        ("Iluvatar BI-V100", "iluvatar-bi-v100"),  # ixsmi
        ("Iluvatar BI-V150S", "iluvatar-bi-v150"),
        ("MetaX C500", "metax-c500"),  # mx-smi
        ("  nvidia   h100 80gb-HBM3 ", "h100-sxm"),  # case, spaces and punctuation are ignored
        ("ＮＶＩＤＩＡ Ｈ２０", "h20"),  # full-width input (copied from a Chinese document)
        ("GeForce RTX 4090", "rtx-4090"),
    ],
)
def test_resolve_real_tool_reported_names(reported: str, key: str) -> None:
    model = CATALOG.resolve(reported)
    assert model is not None, reported
    assert model.key == key


@pytest.mark.parametrize("name", ["Ascend910", "NVIDIA B300 SXM6 AC", "", "GPU"])
def test_resolve_returns_none_for_unknown_or_ambiguous_names(name: str) -> None:
    assert CATALOG.resolve(name) is None


def test_get_unknown_model_raises_with_close_matches() -> None:
    with pytest.raises(UnknownAcceleratorModel) as raised:
        CATALOG.get("h100-smx")
    assert isinstance(raised.value, KeyError)
    assert isinstance(raised.value, InvalidInput)
    assert "h100-sxm" in raised.value.suggestions
    assert "h100-smx" in str(raised.value) and "did you mean" in str(raised.value)


def test_get_accepts_keys_and_names() -> None:
    assert CATALOG.get("h100-sxm").name == "NVIDIA H100 SXM5 80GB"
    assert CATALOG.get("NVIDIA H100 80GB HBM3").key == "h100-sxm"


def test_headline_figures_are_dense_not_sparse() -> None:
    h100 = CATALOG.get("h100-sxm").tflops_dense
    assert (h100.bf16, h100.fp8, h100.int8) == (Decimal("989.4"), Decimal("1978.9"), Decimal("1978.9"))
    assert CATALOG.get("a100-sxm4-80gb").tflops_dense.bf16 == Decimal(312)
    assert CATALOG.get("l40s").tflops_dense.bf16 == Decimal("362.05")
    assert CATALOG.get("t4").tflops_dense.bf16 is None  # Turing has no BF16: null, not zero


def test_multi_die_units_say_how_many_devices_they_show() -> None:
    assert CATALOG.get("ascend-910c").devices_per_unit == 2
    assert CATALOG.get("ascend-910c").per_device_tflops("bf16") == Decimal(376)
    assert CATALOG.get("h100-sxm").devices_per_unit == 1


def test_precisions_are_the_four_the_issue_names() -> None:
    assert PRECISIONS == ("bf16", "fp16", "fp8", "int8")


def _trace_models(relative: str, column: str) -> set[str]:
    path = TRACES / relative
    if not path.is_file():
        pytest.skip(f"trace {path} not present")
    with path.open(newline="") as handle:
        return {row[column] for row in csv.DictReader(handle) if row[column]}


@pytest.mark.parametrize(
    ("relative", "column"),
    [
        ("alibaba-gpu-v2023/openb_node_list_all_node.csv", "model"),
        ("alibaba-spot-gpu-v2026/node_info_df.csv", "gpu_model"),
    ],
)
def test_every_trace_fleet_model_resolves(relative: str, column: str) -> None:
    unresolved = sorted(name for name in _trace_models(relative, column) if CATALOG.resolve(name) is None)
    assert unresolved == []


@pytest.mark.parametrize("name", ["V100M16", "V100M32", "P100", "T4", "A10", "G1", "G2", "G3"])
def test_openb_trace_names_from_the_readme_resolve(name: str) -> None:
    assert CATALOG.resolve(name) is not None
