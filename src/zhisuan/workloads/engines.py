"""Which driver runs a site's jobs: chosen by the site's engine kind, configured by its engine settings.

The book also remembers which sites' engines could not be reached lately: the scheduler keeps
their nodes out of admission (jobs stay queued, with that reason) until the engine answers again.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path

from sqlalchemy.orm import Session, sessionmaker

from zhisuan.drivers.base import Driver
from zhisuan.inventory.models import Site
from zhisuan.workloads.local_driver import LocalDriver

JOB_ENGINES = ("local", "slurm", "kubernetes")
RETRY_UNREACHABLE = timedelta(seconds=10)


@dataclass(frozen=True)
class SiteEngine:
    site_id: int
    name: str
    engine: str
    config: tuple[tuple[str, str], ...] = ()


def site_engine_of(site: Site) -> SiteEngine:
    """The hashable view of a site that picks and configures its driver."""
    return SiteEngine(site.id, site.name, site.engine, tuple(sorted((site.engine_config or {}).items())))


def build_driver(sessions: sessionmaker[Session], site: SiteEngine, jobs_dir: Path) -> Driver:
    config = dict(site.config)
    if site.engine == "local":
        return LocalDriver(sessions, site.site_id)
    if site.engine == "slurm":
        from zhisuan.agent.jobs.tenancy import ensure_tenant_user
        from zhisuan.drivers.slurm.driver import SlurmDriver

        # As root, each tenant's Slurm jobs run as its own user (sbatch --uid/--gid), as on local sites.
        log_dir = config.get("log_dir") or str(jobs_dir / "slurm" / site.name)
        return SlurmDriver(config.get("slurm_conf"), config.get("partition"), root=log_dir,
                           run_as=ensure_tenant_user if os.geteuid() == 0 else None)
    if site.engine == "kubernetes":
        from zhisuan.drivers.kubernetes import KubernetesDriver

        token = Path(config["token_file"]).read_text().strip() if config.get("token_file") else None
        return KubernetesDriver(base_url=config.get("api_url", "https://127.0.0.1:6443"), token=token)
    raise ValueError(f"site engine '{site.engine}' runs no jobs")


@dataclass
class DriverBook:
    sessions: sessionmaker[Session]
    jobs_dir: Path  # where drivers keep job files by default (``Settings.resolved_jobs_dir``)
    drivers: dict[SiteEngine, Driver] = field(default_factory=dict)
    unreachable: dict[str, tuple[datetime, str]] = field(default_factory=dict)

    def driver(self, site: SiteEngine) -> Driver:
        if site not in self.drivers:
            self.drivers[site] = build_driver(self.sessions, site, self.jobs_dir)
        return self.drivers[site]

    def mark_unreachable(self, site: str, message: str, now: datetime) -> None:
        since = self.unreachable.get(site, (now, ""))[0]
        self.unreachable[site] = (since, message[:300])

    def mark_reachable(self, site: str) -> None:
        self.unreachable.pop(site, None)

    def skip(self, site: str, now: datetime) -> str | None:
        """Why ``site`` is kept out of this cycle's admissions, or None."""
        seen = self.unreachable.get(site)
        if seen is None:
            return None
        return f"site {site}: engine unreachable since {seen[0]:%H:%M:%S} UTC ({seen[1]})"
