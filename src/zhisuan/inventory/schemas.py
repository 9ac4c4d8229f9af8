"""Request and response bodies of the inventory API."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, model_validator

from zhisuan.errors import InvalidInput
from zhisuan.identity.schemas import NAME_PATTERN, Strict

NODE_NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$"
# Labels are small tags (rack=r1, zone=a), not storage: bounded in count, key and value length.
MAX_LABELS = 64
LabelKey = Annotated[str, StringConstraints(min_length=1, max_length=63, pattern=r"^[A-Za-z0-9][A-Za-z0-9._/-]*$")]
LabelValue = Annotated[str, StringConstraints(max_length=255)]
LABELS = dict[LabelKey, LabelValue]
# Device indexes run 0..1023 (what an agent may report), so no node holds more than 1024 devices,
# whether an agent registers it or an operator declares it by hand.
MAX_DEVICE_INDEX = 1023
MAX_DEVICES_PER_NODE = MAX_DEVICE_INDEX + 1


class ProviderCreate(Strict):
    name: str = Field(pattern=NAME_PATTERN)
    display_name: str = Field(default="", max_length=200)
    revenue_share: Decimal = Field(ge=0, le=1, max_digits=5, decimal_places=4,
                                   description="share of revenue paid to the provider, 0..1")


class ProviderOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)
    id: int
    name: str
    display_name: str
    revenue_share: Decimal
    created_at: datetime


class SiteEngineConfig(Strict):
    """How the control plane reaches a site's engine to run jobs (paths on the control plane's machine)."""

    slurm_conf: str | None = Field(default=None, min_length=1, max_length=1000,
                                   description="Slurm: the site's slurm.conf (default: Slurm's own lookup)")
    partition: str | None = Field(default=None, pattern=r"^[A-Za-z0-9._-]{1,64}$", description="Slurm partition")
    log_dir: str | None = Field(default=None, min_length=1, max_length=1000,
                                description="Slurm: a directory shared with the nodes for job output")
    api_url: str | None = Field(default=None, pattern=r"^https?://[^\s]{1,990}$", description="Kubernetes API URL")
    token_file: str | None = Field(default=None, min_length=1, max_length=1000,
                                   description="Kubernetes: a file holding a bearer token")


class SiteCreate(Strict):
    name: str = Field(pattern=NAME_PATTERN)
    engine: str = Field(pattern=r"^(local|slurm|kubernetes|ray|simulated)$")
    region: str = Field(min_length=1, max_length=64)
    provider: str = Field(min_length=1, max_length=64, description="provider name or id")
    engine_config: SiteEngineConfig | None = None


class SiteOut(BaseModel):
    id: int
    name: str
    engine: str
    region: str
    provider: str
    nodes: int
    accelerators: int
    accelerators_available: int = Field(0, description="free now (not held; node reachable, not drained)")
    accelerators_unhealthy: int = Field(0, description="reporting a fault")
    created_at: datetime
    engine_config: dict[str, str] = Field(default_factory=dict, description="how the engine is reached")


class DeviceReport(Strict):
    """One accelerator as a node agent (or an operator) reports it."""

    index: int = Field(ge=0, le=MAX_DEVICE_INDEX)
    uuid: str = Field(default="", max_length=128)
    model: str = Field(min_length=1, max_length=128, description="catalog key or a name the device tool reports")
    reported_name: str = Field(default="", max_length=128)
    memory_mib: int | None = Field(default=None, ge=0, le=10_000_000)
    healthy: bool = True
    health_detail: str = Field(default="", max_length=255)


class NodeRegister(Strict):
    name: str = Field(pattern=NODE_NAME_PATTERN)
    cpu_cores: int = Field(ge=0, le=100_000)
    memory_mib: int = Field(ge=0, le=1_000_000_000)
    labels: LABELS = Field(default_factory=dict, max_length=MAX_LABELS)
    agent_version: str | None = Field(default=None, max_length=32)
    devices: list[DeviceReport] = Field(default_factory=list, max_length=MAX_DEVICES_PER_NODE)


class AcceleratorCount(Strict):
    model: str = Field(min_length=1, max_length=128)
    count: int = Field(ge=1, le=MAX_DEVICES_PER_NODE)


class NodeDeclare(Strict):
    """A node added by hand, for sites whose engine keeps the inventory (Slurm, Kubernetes)."""

    site: str = Field(min_length=1, max_length=64)
    name: str = Field(pattern=NODE_NAME_PATTERN)
    cpu_cores: int = Field(ge=0, le=100_000)
    memory_mib: int = Field(ge=0, le=1_000_000_000)
    labels: LABELS = Field(default_factory=dict, max_length=MAX_LABELS)
    accelerators: list[AcceleratorCount] = Field(default_factory=list, max_length=64)

    @model_validator(mode="after")
    def bounded_device_count(self) -> NodeDeclare:
        total = sum(item.count for item in self.accelerators)
        if total > MAX_DEVICES_PER_NODE:
            raise InvalidInput(f"accelerators: {total} devices declared; a node holds at most "
                               f"{MAX_DEVICES_PER_NODE}", field="accelerators")
        return self


class DeviceHealth(Strict):
    index: int = Field(ge=0, le=MAX_DEVICE_INDEX)
    healthy: bool
    health_detail: str = Field(default="", max_length=255)


class Heartbeat(Strict):
    node: str = Field(pattern=NODE_NAME_PATTERN)
    devices: list[DeviceHealth] = Field(default_factory=list, max_length=MAX_DEVICES_PER_NODE)


class HeartbeatAck(BaseModel):
    node_id: int
    status: str
    heartbeat_interval_s: float


class NodePatch(Strict):
    drained: bool | None = Field(default=None, description="a drained node takes no new work")
    labels: LABELS | None = Field(default=None, max_length=MAX_LABELS)


class DeviceOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)
    index: int
    uuid: str
    model: str
    reported_name: str
    memory_mib: int
    health: str
    health_detail: str
    available: bool
    # Out of placement for a device-scoped fault (its node stays schedulable), until a check passes.
    cordon_reason: str | None = None
    cordoned_at: datetime | None = None


class NodeOut(BaseModel):
    id: int
    site: str
    name: str
    status: str
    drained: bool
    cpu_cores: int
    memory_mib: int
    labels: LABELS
    managed_by: str
    agent_version: str | None
    registered_at: datetime
    last_heartbeat_at: datetime | None
    cordon_reason: str | None = None  # out of placement for a fault (or by an operator), until a check passes
    cordoned_at: datetime | None = None
    devices: list[DeviceOut]


class ModelCapacity(BaseModel):
    model: str
    vendor: str
    total: int
    available: int
    unhealthy: int


class FleetSummary(BaseModel):
    sites: int
    nodes: int
    nodes_by_status: dict[str, int]
    accelerators: int
    accelerators_available: int
    pflops_bf16: Decimal
    h100_equivalents: Decimal
    by_model: list[ModelCapacity]
