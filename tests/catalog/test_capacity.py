"""PFLOPS and H100-equivalents, checked against hand arithmetic."""

from __future__ import annotations

from decimal import Decimal

import pytest

from zhisuan.catalog import AcceleratorModel, Throughput, default_catalog
from zhisuan.core.capacity import H100_SXM_DENSE_TFLOPS, ThroughputUnknown, h100_equivalents, pflops

CATALOG = default_catalog()
H100 = CATALOG.get("h100-sxm")
A100 = CATALOG.get("a100-sxm4-80gb")
T4 = CATALOG.get("t4")


def model(key: str, bf16: str | None, devices_per_unit: int = 1) -> AcceleratorModel:
    """A throwaway model, so the arithmetic is checked independently of the data file."""
    figure = Decimal(bf16) if bf16 is not None else None
    return AcceleratorModel(key=key, vendor="test", vendor_name="Test", name=key, memory_gib=None,
                            tflops_dense=Throughput(bf16=figure, fp16=figure), interconnect=None,
                            interconnect_bandwidth_gb_s=None, stack=None, k8s_resource=None,
                            visible_devices_env=None, smi_tool=None,
                            devices_per_unit=devices_per_unit)  # fmt: skip


@pytest.mark.parametrize(
    ("devices", "expected_pflops"),
    [
        ({model("x", "1000"): 1}, Decimal(1)),
        ({model("x", "250"): 4}, Decimal(1)),
        ({model("x", "100"): 3, model("y", "50"): 2}, Decimal("0.4")),  # 300 + 100 TFLOPS
        ({model("dual", "800", devices_per_unit=2): 3}, Decimal("1.2")),  # 3 dies x 400
        ({model("x", "1000"): 0}, Decimal(0)),
        ({}, Decimal(0)),
    ],
)
def test_pflops_by_hand(devices: dict[AcceleratorModel, int], expected_pflops: Decimal) -> None:
    assert pflops(devices) == expected_pflops


def test_eight_h100_sxm_are_7_9152_pflops_and_eight_h100_equivalents() -> None:
    assert pflops({H100: 8}) == Decimal("7.9152")  # 8 x 989.4 / 1000
    assert h100_equivalents({H100: 8}) == Decimal(8)


def test_a100s_in_h100_equivalents() -> None:
    assert h100_equivalents({A100: 16}) == Decimal(16 * 312) / Decimal("989.4")
    assert round(h100_equivalents({A100: 16}), 4) == Decimal("5.0455")


def test_an_iterable_of_devices_counts_each_once() -> None:
    assert pflops([H100, H100, A100]) == pflops({H100: 2, A100: 1}) == Decimal("2.2908")


def test_ascend_910c_dies_are_half_a_package_each() -> None:
    package = CATALOG.get("ascend-910c")
    # 16 dies (an A3 node of 8 packages) = 16 x 752 / 2 TFLOPS = 6.016 PFLOPS
    assert pflops({package: 16}) == Decimal("6.016")


def test_unpublished_throughput_raises_unless_skipped() -> None:
    with pytest.raises(ThroughputUnknown) as raised:
        pflops({H100: 1, T4: 2})  # T4 has no BF16
    assert raised.value.model_keys == ["t4"]
    assert pflops({H100: 1, T4: 2}, unknown="skip") == Decimal("0.9894")
    assert pflops({T4: 2}, precision="fp16") == Decimal("0.13")


def test_int8_and_fp8_use_their_own_reference() -> None:
    assert h100_equivalents({CATALOG.get("a10"): 8}, precision="int8") == Decimal(2000) / Decimal("1978.9")
    assert h100_equivalents({H100: 3}, precision="fp8") == Decimal(3)


def test_negative_counts_are_rejected() -> None:
    with pytest.raises(ValueError, match="must not be negative"):
        pflops({H100: -1})


def test_unknown_precision_is_rejected() -> None:
    with pytest.raises(ValueError, match="unknown precision"):
        pflops({H100: 1}, precision="fp4")  # type: ignore[arg-type]


@pytest.mark.parametrize("precision", ["bf16", "fp16", "fp8", "int8"])
def test_h100_reference_constants_match_the_catalog(precision: str) -> None:
    assert H100.tflops_dense.at(precision) == H100_SXM_DENSE_TFLOPS[precision]  # type: ignore[arg-type,index]
