"""Accelerator catalog: the AcceleratorModel data file, its loader, name resolution and throughput."""

from zhisuan.catalog.loader import (
    Catalog,
    CatalogError,
    UnknownAcceleratorModel,
    default_catalog,
    load_catalog,
    normalise_name,
)
from zhisuan.catalog.models import (
    CONFIDENCES,
    PRECISIONS,
    AcceleratorModel,
    Confidence,
    Precision,
    Source,
    Throughput,
)
from zhisuan.catalog.throughput import (
    REFERENCE_MODEL_KEY,
    WORKLOAD_CLASSES,
    InvalidMeasurement,
    MeasuredThroughput,
    RelativeThroughput,
    WorkloadClass,
    latest_measurements,
)

__all__ = [
    "CONFIDENCES",
    "PRECISIONS",
    "REFERENCE_MODEL_KEY",
    "WORKLOAD_CLASSES",
    "AcceleratorModel",
    "Catalog",
    "CatalogError",
    "Confidence",
    "InvalidMeasurement",
    "MeasuredThroughput",
    "Precision",
    "RelativeThroughput",
    "Source",
    "Throughput",
    "UnknownAcceleratorModel",
    "WorkloadClass",
    "default_catalog",
    "latest_measurements",
    "load_catalog",
    "normalise_name",
]
