"""Load and validate the accelerator catalog (``accelerators.yaml``), and look models up by name.

Validation is strict on purpose: an unknown key is a typo, a number without a named source is an
invented figure, a ``derived`` source without a ``formula`` is a figure nobody can re-check. Every
error names the entry and the field, e.g.
``accelerators.yaml: models[3] (key 'h100-sxm'): field 'memory_gib': expected a positive number``.
"""

from __future__ import annotations

import difflib
import re
import unicodedata
from collections.abc import Iterable, Iterator, Mapping
from decimal import Decimal
from functools import lru_cache
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

from zhisuan.catalog.models import (
    FIGURE_FIELDS,
    PRECISIONS,
    REQUIRED_FIGURE_FIELDS,
    SOURCE_KINDS,
    AcceleratorModel,
    Source,
    SourceKind,
    Throughput,
)
from zhisuan.catalog.throughput import REFERENCE_MODEL_KEY, Measurements, RelativeThroughput
from zhisuan.catalog.throughput import relative_throughput as _relative_throughput
from zhisuan.errors import InvalidInput

DATA_FILE_NAME = "accelerators.yaml"
SUPPORTED_SCHEMA_VERSION = 1
KEY_PATTERN = re.compile(r"^[a-z0-9][a-z0-9-]*$")
ANONYMISED_VENDOR = "anonymised"

# Vendor words that tools prepend inconsistently ("NVIDIA A10" vs the trace's "A10"); stripped from
# both the query and the index in the second lookup pass. Only whole leading words are stripped.
VENDOR_PREFIXES = (
    "nvidia", "tesla", "huawei", "cambricon", "hygon", "moorethreads", "mthreads",
    "kunlunxin", "kunlun", "iluvatar", "metax", "enflame",
)  # fmt: skip

MODEL_KEYS = {
    "key", "vendor", "name", "memory_gib", "tflops_dense", "interconnect",
    "interconnect_bandwidth_gb_s", "aliases", "sources", "devices_per_unit", "anonymised",
    "stack", "k8s_resource", "visible_devices_env", "smi_tool", "usable_memory_mib",
}  # fmt: skip
VENDOR_KEYS = {"name", "stack", "k8s_resource", "visible_devices_env", "smi_tool", "reference"}
SOURCE_KEYS = {"ref", "kind", "fields", "note", "url", "title", "formula"}
VENDOR_DEFAULTED = ("stack", "k8s_resource", "visible_devices_env", "smi_tool")


class CatalogError(ValueError):
    """The catalog file is malformed; the message names the entry and the field."""


class UnknownAcceleratorModel(KeyError, InvalidInput):
    """No catalog model has this key or alias. ``suggestions`` lists the closest names."""

    def __init__(self, name: str, suggestions: list[str]) -> None:
        hint = f"; did you mean {', '.join(repr(s) for s in suggestions)}?" if suggestions else ""
        message = f"unknown accelerator model {name!r}{hint}"
        KeyError.__init__(self, message)
        InvalidInput.__init__(self, message, field="model")
        self.name = name
        self.suggestions = suggestions

    def __str__(self) -> str:  # KeyError would print the repr of the message
        return self.message


def normalise_name(name: str) -> str:
    """Case-, width-, space- and punctuation-blind form: ``"NVIDIA H100 80GB"`` → ``"nvidiah10080gb"``."""
    folded = unicodedata.normalize("NFKC", name).casefold()
    return "".join(character for character in folded if character.isalnum())


def strip_vendor_prefix(normalised: str) -> str:
    """Drop one leading vendor word (after normalisation), keeping at least something behind."""
    for prefix in VENDOR_PREFIXES:
        if normalised.startswith(prefix) and len(normalised) > len(prefix):
            return normalised[len(prefix) :]
    return normalised


class Catalog:
    """An immutable set of AcceleratorModels with name resolution over keys and aliases."""

    def __init__(self, models: Iterable[AcceleratorModel]) -> None:
        self._models: dict[str, AcceleratorModel] = {}
        for model in models:
            if model.key in self._models:
                raise CatalogError(f"duplicate model key {model.key!r}")
            self._models[model.key] = model
        self._exact = self._build_index(normalise_name)
        self._stripped = self._build_index(lambda name: strip_vendor_prefix(normalise_name(name)))

    def _build_index(self, normalise: Any) -> dict[str, str]:
        """Map each normalised key/alias to its model key; a name claimed by two models is an error."""
        index: dict[str, str] = {}
        for model in self._models.values():
            for name in (model.key, *model.aliases):
                normalised = normalise(name)
                owner = index.setdefault(normalised, model.key)
                if owner != model.key:
                    raise CatalogError(
                        f"name {name!r} of model {model.key!r} collides with model {owner!r} "
                        f"(both normalise to {normalised!r})"
                    )
        return index

    def all(self) -> tuple[AcceleratorModel, ...]:
        """Every model, in file order."""
        return tuple(self._models.values())

    def vendors(self, include_anonymised: bool = False) -> tuple[str, ...]:
        """Vendor ids in file order; anonymised trace models are not a vendor unless asked for."""
        seen = dict.fromkeys(model.vendor for model in self._models.values())
        return tuple(v for v in seen if include_anonymised or v != ANONYMISED_VENDOR)

    def resolve(self, name: str) -> AcceleratorModel | None:
        """The model whose key or alias matches ``name`` ignoring case, spaces and punctuation.

        A second pass ignores a leading vendor word on both sides, so ``"NVIDIA L40S"``, ``"L40S"`` and
        ``"Tesla T4"`` all resolve. Returns ``None`` when nothing matches (see ``get`` to raise).
        """
        normalised = normalise_name(name)
        key = self._exact.get(normalised) or self._stripped.get(strip_vendor_prefix(normalised))
        return self._models[key] if key else None

    def get(self, key_or_name: str) -> AcceleratorModel:
        """The model with this key (or, failing that, this name); raises ``UnknownAcceleratorModel``."""
        model = self._models.get(key_or_name) or self.resolve(key_or_name)
        if model is None:
            raise UnknownAcceleratorModel(key_or_name, self.close_matches(key_or_name))
        return model

    def close_matches(self, name: str, limit: int = 5) -> list[str]:
        """Keys of the models whose key or alias is closest to ``name``."""
        candidates = {normalise_name(n): m.key for m in self._models.values() for n in (m.key, *m.aliases)}
        matches = difflib.get_close_matches(normalise_name(name), candidates, n=limit * 3, cutoff=0.5)
        return list(dict.fromkeys(candidates[match] for match in matches))[:limit]

    def relative_throughput(
        self, model: str | AcceleratorModel, workload_class: str, measured: Measurements | None = None
    ) -> RelativeThroughput | None:
        """How many H100 SXM5 devices' work one device of ``model`` does on ``workload_class``.

        An operator's measurement in ``measured`` (keyed by (model key, workload class)) wins over the
        datasheet ratio ``per_device_tflops(model, p) / per_device_tflops(h100-sxm, p)``; ``None`` when
        neither exists. See ``zhisuan.catalog.throughput``.
        """
        resolved = model if isinstance(model, AcceleratorModel) else self.get(model)
        return _relative_throughput(resolved, self.get(REFERENCE_MODEL_KEY), workload_class, measured)

    def __len__(self) -> int:
        return len(self._models)

    def __iter__(self) -> Iterator[AcceleratorModel]:
        return iter(self._models.values())

    def __contains__(self, key: object) -> bool:
        return key in self._models


def load_catalog(path: Path | str | None = None) -> Catalog:
    """Load and validate a catalog file; the packaged ``accelerators.yaml`` when ``path`` is None."""
    if path is None:
        text = resources.files("zhisuan.catalog").joinpath(DATA_FILE_NAME).read_text(encoding="utf-8")
        origin = DATA_FILE_NAME
    else:
        text = Path(path).read_text(encoding="utf-8")
        origin = Path(path).name
    try:
        document = yaml.safe_load(text)
    except yaml.YAMLError as error:
        raise CatalogError(f"{origin}: not valid YAML: {error}") from error
    return parse_catalog(document, origin=origin)


@lru_cache(maxsize=1)
def default_catalog() -> Catalog:
    """The packaged catalog, loaded once per process (it is immutable)."""
    return load_catalog()


def parse_catalog(document: Any, origin: str = DATA_FILE_NAME) -> Catalog:
    """Validate an already-parsed YAML document and build the Catalog."""
    root = _expect_mapping(document, f"{origin}: top level")
    _expect_only_keys(root, {"schema_version", "references", "vendors", "models"}, f"{origin}: top level")
    if root.get("schema_version") != SUPPORTED_SCHEMA_VERSION:
        raise CatalogError(
            f"{origin}: field 'schema_version': expected {SUPPORTED_SCHEMA_VERSION}, "
            f"got {root.get('schema_version')!r}"
        )
    references = _parse_references(root.get("references"), origin)
    vendors = _parse_vendors(root.get("vendors"), references, origin)
    raw_models = root.get("models")
    if not isinstance(raw_models, list) or not raw_models:
        raise CatalogError(f"{origin}: field 'models': expected a non-empty list")
    models = [
        _parse_model(raw, f"{origin}: models[{position}]", references, vendors)
        for position, raw in enumerate(raw_models)
    ]
    try:
        return Catalog(models)
    except CatalogError as error:
        raise CatalogError(f"{origin}: {error}") from error


def _parse_references(raw: Any, origin: str) -> Mapping[str, Mapping[str, Any]]:
    references = _expect_mapping(raw, f"{origin}: field 'references'")
    for ref_id, entry in references.items():
        where = f"{origin}: references.{ref_id}"
        entry = _expect_mapping(entry, where)
        _expect_only_keys(entry, {"title", "url"}, where)
        _expect_text(entry.get("title"), f"{where}: field 'title'")
        _expect_text(entry.get("url"), f"{where}: field 'url'")
    return references


def _parse_vendors(raw: Any, references: Mapping[str, Any], origin: str) -> Mapping[str, Mapping[str, Any]]:
    vendors = _expect_mapping(raw, f"{origin}: field 'vendors'")
    for vendor_id, entry in vendors.items():
        where = f"{origin}: vendors.{vendor_id}"
        entry = _expect_mapping(entry, where)
        _expect_only_keys(entry, VENDOR_KEYS, where)
        _expect_text(entry.get("name"), f"{where}: field 'name'")
        if entry.get("reference") not in references:
            raise CatalogError(f"{where}: field 'reference': unknown reference {entry.get('reference')!r}")
        for name in VENDOR_DEFAULTED:
            _optional_text(entry.get(name), f"{where}: field '{name}'")
    return vendors


def _parse_model(
    raw: Any,
    where: str,
    references: Mapping[str, Mapping[str, Any]],
    vendors: Mapping[str, Mapping[str, Any]],
) -> AcceleratorModel:
    entry = _expect_mapping(raw, where)
    key = entry.get("key")
    if not isinstance(key, str) or not KEY_PATTERN.match(key):
        raise CatalogError(f"{where}: field 'key': expected a lower-case slug, got {key!r}")
    where = f"{where} (key {key!r})"
    _expect_only_keys(entry, MODEL_KEYS, where)
    vendor_id = entry.get("vendor")
    if not isinstance(vendor_id, str) or vendor_id not in vendors:
        raise CatalogError(f"{where}: field 'vendor': unknown vendor {vendor_id!r}")
    vendor = vendors[vendor_id]
    model = AcceleratorModel(
        key=key,
        vendor=vendor_id,
        vendor_name=vendor["name"],
        name=_expect_text(entry.get("name"), f"{where}: field 'name'"),
        memory_gib=_optional_positive(entry.get("memory_gib"), f"{where}: field 'memory_gib'"),
        tflops_dense=_parse_throughput(entry.get("tflops_dense"), f"{where}: field 'tflops_dense'"),
        interconnect=_optional_text(entry.get("interconnect"), f"{where}: field 'interconnect'"),
        interconnect_bandwidth_gb_s=_optional_positive(
            entry.get("interconnect_bandwidth_gb_s"), f"{where}: field 'interconnect_bandwidth_gb_s'"
        ),
        aliases=_parse_aliases(entry.get("aliases", []), f"{where}: field 'aliases'"),
        sources=_parse_sources(entry.get("sources"), references, f"{where}: field 'sources'"),
        devices_per_unit=_parse_devices_per_unit(entry.get("devices_per_unit", 1), where),
        anonymised=_expect_bool(entry.get("anonymised", False), f"{where}: field 'anonymised'"),
        usable_memory_mib=_optional_positive_int(entry.get("usable_memory_mib"), f"{where}: field 'usable_memory_mib'"),
        **{
            name: _optional_text(entry.get(name, vendor.get(name)), f"{where}: field '{name}'")
            for name in VENDOR_DEFAULTED
        },
    )
    _check_figures_sourced(model, where)
    return model


def _parse_throughput(raw: Any, where: str) -> Throughput:
    entry = _expect_mapping(raw, where)
    if set(entry) != set(PRECISIONS):
        raise CatalogError(f"{where}: expected exactly the keys {', '.join(PRECISIONS)}, got {sorted(entry)}")
    figures = {p: _optional_positive(entry[p], f"{where}.{p}") for p in PRECISIONS}
    return Throughput(**figures)


def _parse_aliases(raw: Any, where: str) -> tuple[str, ...]:
    if not isinstance(raw, list):
        raise CatalogError(f"{where}: expected a list of names, got {raw!r}")
    return tuple(_expect_text(alias, f"{where}[{i}]") for i, alias in enumerate(raw))


def _parse_sources(raw: Any, references: Mapping[str, Mapping[str, Any]], where: str) -> tuple[Source, ...]:
    if not isinstance(raw, list) or not raw:
        raise CatalogError(f"{where}: expected a non-empty list of sources")
    return tuple(_parse_source(entry, references, f"{where}[{i}]") for i, entry in enumerate(raw))


def _parse_source(raw: Any, references: Mapping[str, Mapping[str, Any]], where: str) -> Source:
    entry = _expect_mapping(raw, where)
    _expect_only_keys(entry, SOURCE_KEYS, where)
    kind = entry.get("kind")
    if kind not in SOURCE_KINDS:
        raise CatalogError(f"{where}: field 'kind': expected one of {', '.join(SOURCE_KINDS)}, got {kind!r}")
    ref = entry.get("ref")
    if ref is not None and ref not in references:
        raise CatalogError(f"{where}: field 'ref': unknown reference {ref!r}")
    reference = references.get(ref, {}) if ref else {}
    fields = entry.get("fields")
    if not isinstance(fields, list) or any(f not in (*FIGURE_FIELDS, "tflops_dense") for f in fields):
        raise CatalogError(f"{where}: field 'fields': expected names among {', '.join(FIGURE_FIELDS)}")
    formula = _optional_text(entry.get("formula"), f"{where}: field 'formula'")
    if kind == "derived" and formula is None:
        raise CatalogError(f"{where}: field 'formula': a derived source must say how the figure is computed")
    source_kind: SourceKind = kind
    return Source(
        kind=source_kind,
        fields=_expand_fields(fields),
        note=_expect_text(entry.get("note"), f"{where}: field 'note'"),
        title=_optional_text(entry.get("title", reference.get("title")), f"{where}: field 'title'"),
        url=_optional_text(entry.get("url", reference.get("url")), f"{where}: field 'url'"),
        ref=ref,
        formula=formula,
    )


def _expand_fields(fields: list[str]) -> tuple[str, ...]:
    """``tflops_dense`` is shorthand for its four precisions."""
    expanded: list[str] = []
    for name in fields:
        if name == "tflops_dense":
            expanded.extend(f"tflops_dense.{p}" for p in PRECISIONS)
        else:
            expanded.append(name)
    return tuple(dict.fromkeys(expanded))


def figure_values(model: AcceleratorModel) -> dict[str, Decimal | None]:
    """Each figure field of ``model`` by its dotted name (the names sources use)."""
    values: dict[str, Decimal | None] = {
        "memory_gib": model.memory_gib,
        "interconnect_bandwidth_gb_s": model.interconnect_bandwidth_gb_s,
    }
    values.update({f"tflops_dense.{p}": model.tflops_dense.at(p) for p in PRECISIONS})
    usable = model.usable_memory_mib
    values["usable_memory_mib"] = Decimal(usable) if usable is not None else None
    return values


def _check_figures_sourced(model: AcceleratorModel, where: str) -> None:
    """Every figure is named by a source; a number needs a source that is not of kind ``none``.

    ``usable_memory_mib`` may go unnamed while it is null (no tool output recorded).
    """
    for field_name, value in figure_values(model).items():
        naming = [s for s in model.sources if field_name in s.fields]
        if not naming and value is None and field_name not in REQUIRED_FIGURE_FIELDS:
            continue
        if not naming:
            raise CatalogError(
                f"{where}: field '{field_name}': no source names it (say 'none' if unpublished)"
            )
        if value is not None and all(s.kind == "none" for s in naming):
            raise CatalogError(f"{where}: field '{field_name}': has a value but only 'none' sources")
        if value is not None and model.anonymised:
            raise CatalogError(f"{where}: field '{field_name}': anonymised models must have no figures")


def _parse_devices_per_unit(raw: Any, where: str) -> int:
    if isinstance(raw, bool) or not isinstance(raw, int) or raw < 1:
        raise CatalogError(f"{where}: field 'devices_per_unit': expected a positive integer, got {raw!r}")
    return raw


def _expect_mapping(raw: Any, where: str) -> Mapping[str, Any]:
    if not isinstance(raw, Mapping):
        raise CatalogError(f"{where}: expected a mapping, got {type(raw).__name__}")
    return raw


def _expect_only_keys(entry: Mapping[str, Any], allowed: set[str], where: str) -> None:
    unknown = sorted(set(entry) - allowed)
    if unknown:
        raise CatalogError(f"{where}: unknown field(s) {', '.join(map(repr, unknown))}")


def _expect_text(raw: Any, where: str) -> str:
    if not isinstance(raw, str) or not raw.strip():
        raise CatalogError(f"{where}: expected non-empty text, got {raw!r}")
    return raw


def _optional_text(raw: Any, where: str) -> str | None:
    return None if raw is None else _expect_text(raw, where)


def _expect_bool(raw: Any, where: str) -> bool:
    if not isinstance(raw, bool):
        raise CatalogError(f"{where}: expected true or false, got {raw!r}")
    return raw


def _optional_positive_int(raw: Any, where: str) -> int | None:
    if raw is None:
        return None
    if isinstance(raw, bool) or not isinstance(raw, int) or raw <= 0:
        raise CatalogError(f"{where}: expected a positive whole number of MiB or null, got {raw!r}")
    return raw


def _optional_positive(raw: Any, where: str) -> Decimal | None:
    """A positive number as an exact Decimal (via its YAML text form), or None for null."""
    if raw is None:
        return None
    if isinstance(raw, bool) or not isinstance(raw, int | float) or raw <= 0:
        raise CatalogError(f"{where}: expected a positive number or null, got {raw!r}")
    return Decimal(str(raw))
