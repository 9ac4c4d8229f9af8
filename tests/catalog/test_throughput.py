"""Relative throughput lookups: an operator's measurement wins over datasheet peaks."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from zhisuan.catalog import (
    REFERENCE_MODEL_KEY,
    WORKLOAD_CLASSES,
    InvalidMeasurement,
    MeasuredThroughput,
    default_catalog,
    latest_measurements,
)

CATALOG = default_catalog()
MONDAY = datetime(2026, 11, 30, 8, 0, tzinfo=UTC)


def measured(key: str, workload_class: str, relative: str, at: datetime = MONDAY, **extra: str) -> MeasuredThroughput:
    return MeasuredThroughput(model_key=key, workload_class=workload_class, relative=Decimal(relative),  # type: ignore[arg-type]
                              benchmark="megatron llama-7b tokens/s", measured_at=at, **extra)  # fmt: skip


@pytest.mark.parametrize(
    ("key", "workload_class", "expected"),
    [
        # dense peak ratio at the class's precision: own per-device TFLOPS / H100 SXM5's
        ("a100-sxm4-80gb", "training-bf16", Decimal(312) / Decimal("989.4")),
        ("h800", "training-fp8", Decimal(1)),  # same part as the reference at FP8 (a derived figure)
        ("ascend-910c", "training-bf16", Decimal(376) / Decimal("989.4")),  # per die: 752 / 2
        ("l40s", "inference-int8", Decimal(733) / Decimal("1978.9")),
        ("t4", "inference-fp16", Decimal(65) / Decimal("989.4")),
        ("dcu-k100-ai", "inference-int8", Decimal(392) / Decimal("1978.9")),
        (REFERENCE_MODEL_KEY, "inference-fp8", Decimal(1)),
    ],
)
def test_datasheet_ratio_is_the_dense_peak_ratio(key: str, workload_class: str, expected: Decimal) -> None:
    answer = CATALOG.relative_throughput(key, workload_class)
    assert answer is not None
    assert (answer.relative, answer.basis, answer.reference_key) == (expected, "datasheet", REFERENCE_MODEL_KEY)


@pytest.mark.parametrize(
    ("key", "workload_class"),
    [
        ("metax-c500", "training-bf16"),  # MetaX publishes no throughput
        ("mlu370-x4", "inference-int8"),  # only the two-chip X8 board's figures are published
        ("t4", "training-bf16"),  # Turing has no BF16
        ("a100-sxm4-80gb", "inference-fp8"),  # Ampere has no FP8
        ("alibaba-g2", "inference-int8"),  # anonymised
    ],
)
def test_without_figure_or_measurement_the_answer_is_none_not_a_guess(key: str, workload_class: str) -> None:
    assert CATALOG.relative_throughput(key, workload_class) is None


@pytest.mark.parametrize(
    ("key", "workload_class", "relative"),
    [
        ("metax-c500", "training-bf16", "0.31"),  # a measurement makes an unpriced part priceable
        ("ascend-910b3", "training-bf16", "0.27"),  # and overrides a derived peak (294.912 / 989.4 = 0.298)
        ("a100-sxm4-80gb", "training-bf16", "0.29"),  # and overrides the 0.3153 datasheet ratio
        ("mtt-s4000", "inference-int8", "0.05"),
        (REFERENCE_MODEL_KEY, "training-bf16", "1.04"),  # even the reference may be re-measured
    ],
)
def test_a_measurement_wins_over_the_datasheet(key: str, workload_class: str, relative: str) -> None:
    record = measured(key, workload_class, relative)
    answer = CATALOG.relative_throughput(key, workload_class, {(key, workload_class): record})
    assert answer is not None
    assert (answer.relative, answer.basis, answer.measurement) == (Decimal(relative), "measured", record)


def test_measurements_of_other_pairs_do_not_leak() -> None:
    measurements = {("a100-sxm4-80gb", "inference-int8"): measured("a100-sxm4-80gb", "inference-int8", "0.2")}
    answer = CATALOG.relative_throughput("a100-sxm4-80gb", "training-bf16", measurements)
    assert answer is not None and answer.basis == "datasheet"


def test_a_measurement_against_another_reference_is_not_mixed_in() -> None:
    record = measured("metax-c500", "training-bf16", "0.9", reference_key="a100-sxm4-80gb")
    measurements = {("metax-c500", "training-bf16"): record}
    assert CATALOG.relative_throughput("metax-c500", "training-bf16", measurements) is None


def test_lookup_accepts_tool_reported_names() -> None:
    by_name = CATALOG.relative_throughput("NVIDIA A100-SXM4-80GB", "training-bf16")
    assert by_name == CATALOG.relative_throughput("a100-sxm4-80gb", "training-bf16")


def test_latest_measurement_of_each_pair_wins() -> None:
    old = measured("ascend-910b3", "training-bf16", "0.25", at=MONDAY)
    new = measured("ascend-910b3", "training-bf16", "0.33", at=MONDAY + timedelta(days=1))
    other = measured("ascend-910b3", "inference-int8", "0.4")
    assert latest_measurements([new, other, old]) == {
        ("ascend-910b3", "training-bf16"): new,
        ("ascend-910b3", "inference-int8"): other,
    }


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"relative": Decimal(0)}, "relative"),
        ({"relative": Decimal("-0.5")}, "relative"),
        ({"relative": Decimal("NaN")}, "relative"),
        ({"workload_class": "training-fp4"}, "workload_class"),
        ({"benchmark": "  "}, "benchmark"),
        ({"measured_at": datetime(2026, 11, 30, 8, 0)}, "measured_at"),  # naive
    ],
)
def test_malformed_measurements_name_the_field(changes: dict[str, object], field: str) -> None:
    arguments: dict[str, object] = {"model_key": "mtt-s4000", "workload_class": "training-bf16",
                                    "relative": Decimal("0.1"), "benchmark": "b", "measured_at": MONDAY}  # fmt: skip
    arguments.update(changes)
    with pytest.raises(InvalidMeasurement, match=f"field '{field}'"):
        MeasuredThroughput(**arguments)  # type: ignore[arg-type]
    with pytest.raises(InvalidMeasurement, match="field 'workload_class'"):
        CATALOG.relative_throughput("h100-sxm", "training")


def test_non_utc_offsets_are_accepted() -> None:
    beijing = timezone(timedelta(hours=8))
    assert measured("mtt-s4000", "training-bf16", "0.1", at=datetime(2026, 11, 30, 16, tzinfo=beijing)).relative


@given(
    key=st.sampled_from([m.key for m in CATALOG.all()]),
    workload_class=st.sampled_from(WORKLOAD_CLASSES),
    relative=st.decimals(min_value=Decimal("0.001"), max_value=Decimal(50), places=3),
)
def test_measured_always_wins_and_datasheet_is_consistent_with_the_figures(
    key: str, workload_class: str, relative: Decimal
) -> None:
    record = MeasuredThroughput(key, workload_class, relative, "bench", MONDAY)  # type: ignore[arg-type]
    answer = CATALOG.relative_throughput(key, workload_class, {(key, workload_class): record})
    assert answer is not None and answer.relative == relative and answer.basis == "measured"
    datasheet = CATALOG.relative_throughput(key, workload_class)
    precision = workload_class.split("-")[1]
    own = CATALOG.get(key).per_device_tflops(precision)  # type: ignore[arg-type]
    if own is None:
        assert datasheet is None
    else:
        assert datasheet is not None and datasheet.basis == "datasheet"
        reference = CATALOG.get(REFERENCE_MODEL_KEY).per_device_tflops(precision)  # type: ignore[arg-type]
        assert reference is not None
        assert abs(datasheet.relative * reference - own) < Decimal("1e-20")
