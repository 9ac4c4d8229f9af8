"""Each tenant's own system user and directory on this machine.

When the agent runs as root, tenant ``acme`` gets the unprivileged user ``zs-acme`` (no home, no login
shell) and ``<root>/tenants/acme`` (mode 0700, owned by it): one tenant's processes cannot read
another's files. User names are at most 32 characters (the useradd limit): longer ones are cut and
suffixed with a hash of the full tenant name, so two tenants never share a user.
"""

from __future__ import annotations

import hashlib
import os
import pwd
import stat
import subprocess
import threading
from dataclasses import dataclass
from pathlib import Path

from zhisuan.agent.jobs.launch import validate_workdir_shape

USER_PREFIX = "zs-"
MAX_USER_NAME = 32
_useradd_lock = threading.Lock()


@dataclass(frozen=True)
class RunAs:
    """Who a worker runs as: ``uid is None`` means "as the agent itself" (no privilege drop)."""

    user: str
    uid: int | None
    gid: int | None


def tenant_user_name(tenant: str) -> str:
    """``zs-<tenant>`` when it fits in 32 characters, else ``zs-<first 20>-<8 hex of sha256(tenant)>``."""
    name = USER_PREFIX + tenant
    if len(name) <= MAX_USER_NAME:
        return name
    digest = hashlib.sha256(tenant.encode()).hexdigest()[:8]
    return f"{USER_PREFIX}{tenant[:20].rstrip('-')}-{digest}"


def ensure_tenant_user(tenant: str) -> RunAs:
    """Look the tenant's user up, creating it (system user, own group, nologin) when missing."""
    name = tenant_user_name(tenant)
    with _useradd_lock:
        try:
            entry = pwd.getpwnam(name)
        except KeyError:
            result = subprocess.run(
                ["useradd", "--system", "--user-group", "--no-create-home", "--home-dir", "/nonexistent",
                 "--shell", "/usr/sbin/nologin", name],
                capture_output=True, text=True, check=False, env={"PATH": "/usr/sbin:/usr/bin:/sbin:/bin"},
            )
            try:  # another agent may have created it between our lookup and useradd (exit 9)
                entry = pwd.getpwnam(name)
            except KeyError:
                raise RuntimeError(f"useradd {name} failed: {result.stderr.strip()}") from None
    return RunAs(user=name, uid=entry.pw_uid, gid=entry.pw_gid)


def agent_identity() -> RunAs:
    try:
        user = pwd.getpwuid(os.geteuid()).pw_name
    except KeyError:
        user = str(os.geteuid())
    return RunAs(user=user, uid=None, gid=None)


def prepare_tenant_dir(tenants_root: Path, tenant: str, run_as: RunAs) -> Path:
    """Create ``tenants_root/<tenant>`` (0700) owned by the tenant's user; repair owner and mode."""
    directory = tenants_root / tenant
    directory.mkdir(mode=0o700, exist_ok=True)
    info = directory.lstat()
    if stat.S_ISLNK(info.st_mode) or not stat.S_ISDIR(info.st_mode):
        raise RuntimeError(f"{directory} is not a directory")
    if run_as.uid is not None and (info.st_uid, info.st_gid) != (run_as.uid, run_as.gid):
        os.chown(directory, run_as.uid, run_as.gid or 0, follow_symlinks=False)
    if stat.S_IMODE(info.st_mode) != 0o700:
        os.chmod(directory, 0o700)
    return directory


def resolve_workdir(tenant_dir: Path, workdir: str | None) -> Path:
    """The absolute working directory, which must lie inside ``tenant_dir`` once every existing symlink
    is resolved. Raises ``ValueError`` naming ``workdir`` otherwise. The worker creates and enters it
    only after dropping privileges, so a symlink swapped in after this check gains it nothing."""
    validate_workdir_shape(workdir)
    base = tenant_dir.resolve()
    if not workdir:
        return base
    target = (base / workdir).resolve()
    if target != base and base not in target.parents:
        raise ValueError(f"workdir: {workdir!r} resolves outside the tenant's directory")
    if target.exists() and not target.is_dir():
        raise ValueError(f"workdir: {workdir!r} is not a directory")
    return target


def untraversable_ancestor(path: Path) -> Path | None:
    """The first directory above ``path`` that other users cannot enter (no o+x), if any: tenant users
    could not reach their directories below it."""
    for ancestor in [path, *path.parents]:
        if not os.stat(ancestor).st_mode & stat.S_IXOTH:
            return ancestor
    return None
