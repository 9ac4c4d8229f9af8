"""Accelerator catalog: the AcceleratorModel data file, its loader and name resolution."""

from zhisuan.catalog.loader import (
    Catalog,
    CatalogError,
    UnknownAcceleratorModel,
    default_catalog,
    load_catalog,
    normalise_name,
)
from zhisuan.catalog.models import PRECISIONS, AcceleratorModel, Precision, Source, Throughput

__all__ = [
    "PRECISIONS",
    "AcceleratorModel",
    "Catalog",
    "CatalogError",
    "Precision",
    "Source",
    "Throughput",
    "UnknownAcceleratorModel",
    "default_catalog",
    "load_catalog",
    "normalise_name",
]
