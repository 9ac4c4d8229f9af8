"""Request and response bodies of the serving API (model registry and deployments)."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, Field, ValidationInfo, field_validator

from zhisuan.identity.schemas import NAME_PATTERN, Strict

MODEL_NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._:/-]{0,127}$"
ENGINE_PATTERN = r"^(llama\.cpp|vllm|vllm-ascend|mindie)$"


class ModelRegister(Strict):
    name: str = Field(pattern=MODEL_NAME_PATTERN, description="the name clients send as `model`")
    source: str = Field(min_length=1, max_length=1000,
                        description="weights on the serving node: a GGUF file (llama.cpp) or a directory")
    engine: str = Field(pattern=ENGINE_PATTERN, description="llama.cpp | vllm | vllm-ascend | mindie")
    context_length: int = Field(default=4096, ge=128, le=1_048_576)
    stacks: list[str] | None = Field(default=None, max_length=8,
                                     description="software stacks it runs on (default: the engine's)")
    embeddings: bool = Field(default=False, description="serve /v1/embeddings from this model")
    extra_args: list[str] = Field(default_factory=list, max_length=64, description="extra engine flags")
    description: str = Field(default="", max_length=500)
    weights_bytes: int | None = Field(default=None, ge=0, le=2**50, description=(
        "size of the weights, for sizing replicas when they are not on the control plane's machine "
        "(measured when they are; the larger counts)"))


class ModelOut(BaseModel):
    id: int
    name: str
    source: str | None = Field(description="where the weights are on the serving nodes (operators only)")
    engine: str
    context_length: int
    stacks: list[str]
    embeddings: bool
    extra_args: list[str] = Field(description="extra engine flags (operators only)")
    description: str
    created_at: datetime


class DeploymentCreate(Strict):
    model: str = Field(min_length=1, max_length=128, description="registered model name or id")
    name: str | None = Field(default=None, pattern=NAME_PATTERN, description="default: derived from the model")
    replicas: int = Field(default=1, ge=1, le=64)
    devices_per_replica: int = Field(default=0, ge=0, le=16, description="0 = a CPU replica (llama.cpp)")
    milli_per_device: int = Field(default=1000, ge=1, le=1000,
                                  description="share of each device; below 1000 only with one device")
    cpu_cores: float = Field(default=1.0, gt=0, le=512,
                             description="per replica; raised to the engine's floor (engines.sizing)")
    memory_gib: float = Field(default=1.0, gt=0, le=16384,
                              description="per replica; raised to the weights and the engine's floor")
    site: str | None = Field(default=None, max_length=64, description="keep replicas in this site")
    tenant: str | None = Field(default=None, max_length=64,
                               description="owner (operators only; default: the platform's public MaaS)")


class ReplicaOut(BaseModel):
    index: int
    node: str | None = Field(description="site/node it runs on (operators only)")
    devices: list[int] = Field(description="node-local device indices (operators only)")
    state: str
    port: int | None = Field(description="the engine's loopback port (operators only)")
    restarts: int
    cpu_cores: float = Field(description="CPU this replica holds on its node")
    memory_gib: float = Field(description="memory this replica holds on its node")
    in_flight: int = Field(description="requests in flight when the runtime last looked")
    load: float = Field(description="in_flight / the engine's parallel slots (1.0 = every slot busy)")
    message: str
    updated_at: datetime
    reported_at: datetime | None = Field(default=None, description=(
        "when its runtime (a node agent, or the control plane's own) last reported it; gateways stop "
        "routing to a replica not reported for 10 s"))


# The largest target of each kind: requests per slot (above 1, requests wait in the engine's queue),
# seconds of queue wait.
TARGET_LIMITS = {"in_flight_per_slot": 16.0, "queue_time_s": 3600.0}


class AutoscaleSet(Strict):
    min: int = Field(ge=0, le=64, description="fewest replicas (0: scale to zero when idle)")
    max: int = Field(ge=1, le=64, description="most replicas")
    target_kind: Literal["in_flight_per_slot", "queue_time_s"] = Field(default="in_flight_per_slot", description=(
        "what target measures: in-flight requests per engine slot (the larger of the engine's busy slots "
        "and what the gateways sent), or the gateways' mean queue wait in seconds (arrival to first byte)"))
    target: float = Field(default=0.7, gt=0, le=3600, allow_inf_nan=False, description=(
        "in_flight_per_slot: requests per slot, 1.0 = every slot busy, at most 16; "
        "queue_time_s: seconds of queue wait, at most 3600"))
    scale_out_cooldown_s: int = Field(default=30, ge=0, le=86_400, description="least time between scale-outs")
    scale_in_cooldown_s: int = Field(default=300, ge=0, le=86_400,
                                     description="least time from any change to a scale-in")

    @field_validator("target")
    @classmethod
    def target_within_its_kind(cls, value: float, info: ValidationInfo) -> float:
        kind = info.data.get("target_kind", "in_flight_per_slot")
        if value > TARGET_LIMITS.get(kind, 0.0):
            raise ValueError(f"a {kind} target is at most {TARGET_LIMITS[kind]:g}")
        return value


class DeploymentPatch(Strict):
    replicas: int | None = Field(default=None, ge=0, le=64, description="scale to this many replicas now")
    autoscale: AutoscaleSet | None = Field(default=None, description="set autoscaling; null clears it")


class AutoscaleOut(BaseModel):
    min: int
    max: int
    target_kind: str
    target: float
    scale_out_cooldown_s: int
    scale_in_cooldown_s: int
    last_scale_out_at: datetime | None
    last_scale_in_at: datetime | None


class DeploymentEventOut(BaseModel):
    at: datetime
    kind: str = Field(description="scaled | scale_out | scale_in | repair | replica_lost | autoscale | blocked")
    replicas_from: int
    replicas_to: int
    reason: str


class DemandItem(Strict):
    model: str = Field(min_length=1, max_length=128)
    tenant_id: int | None = Field(default=None, ge=1, le=2**31 - 1, description="the caller's tenant")
    requests: int = Field(ge=1, le=1_000_000, description="requests that found no replica since the last report")


class ReplicaLoadItem(Strict):
    replica: str = Field(min_length=1, max_length=200, description="the replica's id in the endpoints list")
    in_flight: int = Field(ge=0, le=1_000_000, description="requests sent to it and not yet answered")
    queued: int = Field(ge=0, le=1_000_000, description="of those, how many await the first response byte")
    queue_wait_s: float = Field(ge=0, le=86_400, allow_inf_nan=False, description=(
        "mean wait from arrival to the first response byte since the previous report (still waiting: "
        "their age so far)"))
    waits: int = Field(ge=0, le=10_000_000, description="requests that mean is over")


class GatewayLoad(Strict):
    gateway: str = Field(min_length=1, max_length=64, description="the reporting gateway's id (one per process)")
    replicas: list[ReplicaLoadItem] = Field(max_length=4096)


class DemandReport(Strict):
    demand: list[DemandItem] = Field(default_factory=list, max_length=4096)
    load: GatewayLoad | None = Field(default=None, description=(
        "the gateway's load per replica: the autoscaler's in-flight and queue-time measures"))


class DeploymentOut(BaseModel):
    id: int
    name: str
    model: str
    engine: str
    tenant: str | None
    replicas: int
    devices_per_replica: int
    milli_per_device: int
    cpu_cores: float
    memory_gib: float
    site: str | None
    status: str
    message: str
    created_at: datetime
    stopped_at: datetime | None
    replica_states: list[ReplicaOut]
    autoscale: AutoscaleOut | None = Field(default=None, description="none: a fixed number of replicas")
    events: list[DeploymentEventOut] = Field(default_factory=list, description=(
        "the latest changes of its replicas (GET of one deployment only)"))


class QuotaSet(Strict):
    tenant: str | None = Field(default=None, max_length=64, description="tenant name or id; none: the platform default")
    max_replicas: int = Field(ge=0, le=10_000, description="replicas its active deployments may hold at once")


class QuotaOut(BaseModel):
    tenant: str | None
    max_replicas: int
    held: int | None = Field(description="replicas the tenant holds now (none for the platform default)")
