"""Where a Slurm job's files live under the driver's root, and who owns them.

On a real cluster ``root`` is on a filesystem shared by the control plane and the nodes::

    root/                      0711  traversable, not listable
      tenants/                 0711
        <tenant>/              0700  owned by the tenant's user: the job's --chdir (and <workdir> below it)
      logs/                    0711
        <key>/                 0700  owned by the tenant's user: <key>-<rank>.out|.err, <key>-batch.log,
                                     payload.sh (the tenant's script)
      handles/<job id>         0600  the key of each handle (the driver's own, so logs need no squeue)

With a tenant identity (``uid``/``gid``, e.g. ``agent.jobs.tenancy.ensure_tenant_user``) the job runs as
that user (``sbatch --uid/--gid``, root only) and one tenant's jobs cannot read another's directories;
without one, jobs run as the control plane's own user.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Protocol

from zhisuan.drivers.base import LaunchSpec
from zhisuan.drivers.slurm.translate import InvalidLaunch, JobPaths


class TenantIdentity(Protocol):
    """Who a tenant's processes run as; ``uid is None``: as the control plane itself."""

    @property
    def uid(self) -> int | None: ...

    @property
    def gid(self) -> int | None: ...


def safe_relative(path: str, what: str) -> PurePosixPath:
    """A relative path that stays inside its parent (no absolute paths, no ``..``, no NUL)."""
    relative = PurePosixPath(path)
    if not path or relative.is_absolute() or ".." in relative.parts or "\0" in path:
        raise InvalidLaunch(f"{what} {path!r} must be a relative path inside the tenant's directory")
    return relative


@dataclass(frozen=True)
class FileLayout:
    root: Path

    def tenant_dir(self, tenant: str) -> Path:
        return self.root / "tenants" / safe_relative(tenant, "tenant")

    def log_dir(self, key: str) -> Path:
        return self.root / "logs" / safe_relative(key, "key")

    def handle_file(self, handle: str) -> Path:
        return self.root / "handles" / handle

    def job_paths(self, spec: LaunchSpec) -> JobPaths:
        tenant_dir = self.tenant_dir(spec.tenant)
        workdir = tenant_dir / safe_relative(spec.workdir, "workdir") if spec.workdir else tenant_dir
        logs = self.log_dir(spec.key)
        return JobPaths(str(workdir), str(logs), str(logs / "payload.sh"))

    def prepare(self, spec: LaunchSpec, paths: JobPaths, owner: tuple[int, int] | None, payload: str | None) -> None:
        """Create the job's directories (and its script) with the owners and modes of the module docstring."""
        for shared in (self.root, self.root / "tenants", self.root / "logs"):
            shared.mkdir(mode=0o711, parents=True, exist_ok=True)
            if owner is not None:  # the tenant's user must be able to pass through to its own directory
                shared.chmod(shared.stat().st_mode | 0o111)
        tenant_dir = self.tenant_dir(spec.tenant)
        _own_dir(tenant_dir, owner)
        workdir = Path(paths.workdir)
        for part in reversed([workdir, *workdir.parents]):
            if part.is_relative_to(tenant_dir) and part != tenant_dir:
                _own_dir(part, owner)
        _own_dir(Path(paths.log_dir), owner)
        if payload is not None:
            script = Path(paths.payload)
            script.write_text(payload)
            script.chmod(0o600)
            if owner is not None:
                os.chown(script, *owner)

    def remember(self, handle: str, key: str) -> None:
        handles = self.root / "handles"
        handles.mkdir(mode=0o700, parents=True, exist_ok=True)
        self.handle_file(handle).write_text(key)

    def key_of(self, handle: str) -> str | None:
        try:
            return self.handle_file(handle).read_text().strip() or None
        except FileNotFoundError:
            return None


def _own_dir(directory: Path, owner: tuple[int, int] | None) -> None:
    directory.mkdir(mode=0o700, exist_ok=True)
    if directory.is_symlink() or not directory.is_dir():
        raise InvalidLaunch(f"{directory.name} is not a directory")
    if owner is not None:
        info = directory.stat()
        if (info.st_uid, info.st_gid) != owner:
            os.chown(directory, *owner)
        directory.chmod(0o700)
