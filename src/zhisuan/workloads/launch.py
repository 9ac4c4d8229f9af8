"""From an admitted job to the driver's ``LaunchSpec``: workers, device variables, rendezvous."""

from __future__ import annotations

from sqlalchemy.orm import Session

from zhisuan.catalog.loader import Catalog
from zhisuan.drivers.base import LaunchSpec, WorkerAssignment
from zhisuan.identity.models import Tenant
from zhisuan.inventory.models import Site
from zhisuan.workloads.engines import SiteEngine, site_engine_of
from zhisuan.workloads.models import Job

RENDEZVOUS_PORT_BASE = 29500


def handle_key(job: Job) -> str:
    return f"zs-{job.id}-{job.attempt}"


def worker_assignment(catalog: Catalog, job: Job, worker: dict[str, object]) -> WorkerAssignment:
    model = catalog.get(job.model) if job.model else None
    node = str(worker["node"]).partition("/")[2]
    return WorkerAssignment(
        rank=int(worker["rank"]),  # type: ignore[call-overload]
        node=node, device_indices=tuple(worker["device_indices"]),  # type: ignore[arg-type]
        milli_per_device=int(worker["milli_per_device"]),  # type: ignore[call-overload]
        model=job.model, visible_devices_env=model.visible_devices_env if model else None,
        device_plugin_resource=model.k8s_resource if model else None,
        cpu_milli=int(worker["cpu_milli"]), memory_mib=int(worker["memory_mib"]))  # type: ignore[call-overload]


def spec_for(session: Session, catalog: Catalog, job_id: int) -> tuple[LaunchSpec | None, SiteEngine | None]:
    job = session.get(Job, job_id)
    if job is None or job.state != "admitted" or job.site_id is None:
        return None, None
    site = session.get(Site, job.site_id)
    tenant = session.get(Tenant, job.tenant_id)
    if site is None or tenant is None:
        return None, None
    engine = site_engine_of(site)
    spec = LaunchSpec(
        key=handle_key(job), job_id=job.id, attempt=job.attempt, tenant=tenant.name, command=tuple(job.command),
        workers=tuple(worker_assignment(catalog, job, w) for w in sorted(job.placement, key=lambda w: w["rank"])),
        max_run_s=job.max_run_s, script=job.script, image=job.image, env=dict(job.env), workdir=job.workdir,
        checkpoint_dir=job.checkpoint_dir, rendezvous_port=RENDEZVOUS_PORT_BASE + job.id % 1000)
    return spec, engine


def launch_notes(job: Job, site: SiteEngine) -> list[str]:
    """Facts the tenant should see when its job starts."""
    notes = []
    if job.image and site.engine in ("local", "slurm"):
        notes.append(f"no container runtime on {site.engine} site {site.name}: the command runs on the host; "
                     f"image {job.image} is not used")
    if job.borrowing:
        notes.append("runs on borrowed capacity: preempted if its owner needs it back")
    return notes
