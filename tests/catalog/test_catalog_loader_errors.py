"""The loader rejects malformed catalogs with messages naming the entry and the field."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest

from zhisuan.catalog import CatalogError, load_catalog
from zhisuan.catalog.loader import parse_catalog


def minimal_document() -> dict[str, Any]:
    return {
        "schema_version": 1,
        "references": {"ds": {"title": "Datasheet", "url": "https://example.org/ds.pdf"}},
        "vendors": {
            "acme": {
                "name": "Acme",
                "stack": "ACME",
                "k8s_resource": "acme.com/npu",
                "visible_devices_env": "ACME_VISIBLE_DEVICES",
                "smi_tool": "acme-smi",
                "reference": "ds",
            },
        },  # fmt: skip
        "models": [
            {
                "key": "acme-1",
                "vendor": "acme",
                "name": "Acme One",
                "memory_gib": 64,
                "tflops_dense": {"bf16": 100, "fp16": 100, "fp8": None, "int8": 200},
                "interconnect": "AcmeLink",
                "interconnect_bandwidth_gb_s": None,
                "aliases": ["Acme 1"],
                "sources": [
                    {
                        "ref": "ds",
                        "kind": "vendor",
                        "fields": ["memory_gib", "tflops_dense"],
                        "note": "dense",
                    },
                    {
                        "kind": "none",
                        "fields": ["tflops_dense.fp8", "interconnect_bandwidth_gb_s"],
                        "note": "not published",
                    },
                ],  # fmt: skip
            }
        ],
    }


def test_minimal_document_is_valid() -> None:
    catalog = parse_catalog(minimal_document())
    model = catalog.get("acme-1")
    assert model.k8s_resource == "acme.com/npu"  # vendor default applied
    assert model.sources[0].url == "https://example.org/ds.pdf"  # reference resolved


def _break(path: list[Any], value: Any) -> dict[str, Any]:
    document = copy.deepcopy(minimal_document())
    target: Any = document
    for step in path[:-1]:
        target = target[step]
    if value is KeyError:
        del target[path[-1]]
    else:
        target[path[-1]] = value
    return document


M = ["models", 0]


@pytest.mark.parametrize(
    ("path", "value", "expected"),
    [
        ([*M, "memory_gib"], -1, "models[0] (key 'acme-1'): field 'memory_gib'"),
        ([*M, "memory_gib"], "64 GB", "field 'memory_gib': expected a positive number"),
        ([*M, "colour"], "red", "unknown field(s) 'colour'"),
        ([*M, "key"], "Acme One", "field 'key': expected a lower-case slug"),
        ([*M, "vendor"], "nobody", "field 'vendor': unknown vendor 'nobody'"),
        ([*M, "tflops_dense"], {"bf16": 1}, "field 'tflops_dense': expected exactly the keys"),
        (
            [*M, "sources", 1, "fields"],
            ["tflops_dense.fp8"],
            "field 'interconnect_bandwidth_gb_s': no source",
        ),
        ([*M, "sources", 0, "kind"], "none", "field 'memory_gib': has a value but only 'none' sources"),
        ([*M, "sources", 0, "ref"], "missing", "field 'ref': unknown reference 'missing'"),
        ([*M, "sources", 0, "fields"], ["tflops"], "field 'fields': expected names among"),
        ([*M, "sources", 0, "note"], "", "field 'note': expected non-empty text"),
        ([*M, "sources"], [], "field 'sources': expected a non-empty list"),
        ([*M, "anonymised"], True, "anonymised models must have no figures"),
        ([*M, "devices_per_unit"], 0, "field 'devices_per_unit'"),
        (["schema_version"], 2, "field 'schema_version': expected 1"),
        (["vendors", "acme", "reference"], "nope", "vendors.acme: field 'reference'"),
        ([*M, "sources", 0, "kind"], "derived", "field 'formula': a derived source must say how"),
        ([*M, "sources", 0, "kind"], "guessed", "field 'kind': expected one of"),
        ([*M, "usable_memory_mib"], 23308.5, "field 'usable_memory_mib': expected a positive whole number"),
        ([*M, "usable_memory_mib"], 0, "field 'usable_memory_mib': expected a positive whole number"),
        ([*M, "usable_memory_mib"], 23308, "field 'usable_memory_mib': no source names it"),
    ],
)
def test_malformed_entries_are_named_in_the_error(path: list[Any], value: Any, expected: str) -> None:
    with pytest.raises(CatalogError) as raised:
        parse_catalog(_break(path, value))
    assert expected in str(raised.value)


def test_an_alias_claimed_by_two_models_is_rejected() -> None:
    document = minimal_document()
    twin = copy.deepcopy(document["models"][0])
    twin["key"], twin["aliases"] = "acme-2", ["ACME-1"]  # normalises like acme-1's key
    document["models"].append(twin)
    with pytest.raises(CatalogError, match="collides with model 'acme-1'"):
        parse_catalog(document)


def test_load_catalog_reports_yaml_syntax_errors(tmp_path: Path) -> None:
    broken = tmp_path / "broken.yaml"
    broken.write_text("models: [unclosed\n")
    with pytest.raises(CatalogError, match="broken.yaml: not valid YAML"):
        load_catalog(broken)


def test_usable_memory_needs_a_real_source_and_derived_figures_keep_their_formula() -> None:
    document = minimal_document()
    model = document["models"][0]
    model["usable_memory_mib"] = 65200
    model["sources"].append({"kind": "none", "fields": ["usable_memory_mib"], "note": "not observed"})
    with pytest.raises(CatalogError, match="'usable_memory_mib': has a value but only 'none' sources"):
        parse_catalog(document)
    model["sources"][-1] = {"kind": "derived", "fields": ["usable_memory_mib"], "note": "reserve",
                            "formula": "= memory_gib x 1024 - 336"}  # fmt: skip
    parsed = parse_catalog(document).get("acme-1")
    assert parsed.usable_memory_mib == 65200
    assert parsed.confidence("usable_memory_mib") == "derived"
    assert parsed.sources[-1].formula == "= memory_gib x 1024 - 336"


def test_a_catalog_without_usable_memory_still_loads() -> None:
    """Operators' own catalog files predate usable memory: absent and null means 'not observed'."""
    model = parse_catalog(minimal_document()).get("acme-1")
    assert model.usable_memory_mib is None
    assert model.confidence("usable_memory_mib") is None
    assert model.per_device_memory_mib() == 64 * 1024
