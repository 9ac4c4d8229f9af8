"""Request and response bodies of the placement API."""

from __future__ import annotations

from pydantic import BaseModel, Field

from zhisuan.identity.schemas import Strict


class PlacementQuery(Strict):
    """What a workload needs; ``devices`` of ``milli_per_device`` each (1000 = a whole device)."""

    devices: int = Field(ge=0, le=64)
    milli_per_device: int = Field(default=1000, ge=1, le=1000)
    models: list[str] | None = Field(default=None, max_length=64, description="allowed accelerator models")
    min_device_memory_gib: float = Field(default=0, ge=0, le=4096)
    min_device_tflops: float = Field(default=0, ge=0, le=100_000, description="dense BF16 TFLOPS per device")
    stack: str | None = Field(default=None, max_length=32, description="CUDA, CANN, Neuware, DTK, MUSA…")
    cpu_cores: float = Field(default=0, ge=0, le=100_000)
    memory_gib: float = Field(default=0, ge=0, le=1_000_000)
    tenant: str | None = Field(default=None, max_length=64, description="operators: place as this tenant")
    policy: str = Field(default="zhisuan", max_length=32)


class Reason(BaseModel):
    reason: str
    nodes: int


class PlacementAnswer(BaseModel):
    placed: bool
    site: str | None = None
    node: str | None = None
    device_indices: list[int] = []
    milli_per_device: int | None = None
    policy: str
    feasible_nodes: int = 0
    message: str
    reasons: list[Reason] = []
