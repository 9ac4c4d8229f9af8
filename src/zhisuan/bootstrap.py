"""What happens before a control plane serves: migrations, the first operator, the local site."""

from __future__ import annotations

import os
import secrets
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from zhisuan.config import Settings
from zhisuan.identity.access import Principal
from zhisuan.identity.hashing import hash_secret
from zhisuan.identity.keys import issue_key
from zhisuan.identity.models import User
from zhisuan.inventory.models import Provider, Site
from zhisuan.store.base import transaction
from zhisuan.store.migrate import upgrade_to_head

LOCAL_SITE = "local"
FIRST_OPERATOR_FILE = "first-operator.txt"
# Owner only: the data directory holds the database, the usage spool, engine logs and, once, the
# first operator's credentials.
PRIVATE_BITS = 0o077


@dataclass(frozen=True)
class FirstOperator:
    """Shown once, at the first start; only hashes are stored."""

    username: str
    password: str
    api_key: str


def system_principal(site_id: int | None = None) -> Principal:
    """The control plane itself, acting for its in-process agent and loops (audited as 'system')."""
    return Principal(user_id=0, username="system", role="operator", scopes=frozenset({"agent"}), site_id=site_id)


def migrate(settings: Settings) -> None:
    embedded = settings.resolved_database_url().startswith("sqlite")
    if embedded:
        make_private(settings.data_dir)
    upgrade_to_head(settings.resolved_database_url())
    if embedded:  # the database file (and its journal) did not exist before the first migration
        make_private(settings.data_dir)


def make_private(data_dir: Path) -> None:
    """Create ``data_dir`` as 0700 and take group/other bits off everything already in it.

    Also for directories an older version left 0755 with a 0644 database. Symlinks are left alone
    (their targets are not ours to change).
    """
    data_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    for path in (data_dir, *data_dir.rglob("*")):
        if path.is_symlink():
            continue
        mode = path.stat().st_mode & 0o7777
        if mode & PRIVATE_BITS:
            path.chmod(mode & ~PRIVATE_BITS)


def write_first_operator(data_dir: Path, first: FirstOperator, server_url: str) -> Path:
    """The first operator's credentials in a 0600 file, for starts whose output goes to a log."""
    make_private(data_dir)
    path = data_dir / FIRST_OPERATOR_FILE
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as out:
        out.write("\n".join(first_operator_lines(first, server_url)) + "\n")
    path.chmod(0o600)
    return path


def first_operator_lines(first: FirstOperator, server_url: str) -> list[str]:
    return [
        f"console login:  {first.username} / {first.password}",
        f"API key:        {first.api_key}",
        f"CLI:            zhisuan login --server {server_url} --key {first.api_key}",
    ]


def ensure_first_operator(sessions: sessionmaker[Session], settings: Settings) -> FirstOperator | None:
    with transaction(sessions) as session:
        if session.execute(select(User.id).where(User.role == "operator")).first():
            return None
        password = secrets.token_urlsafe(12)
        user = User(username="admin", role="operator", password_hash=hash_secret(password, n=settings.scrypt_n))
        session.add(user)
        session.flush()
        issued = issue_key(session, user, name="first operator key", scopes=["read", "write", "inference"],
                           expires_at=None)
        return FirstOperator(username=user.username, password=password, api_key=issued.plaintext)


def ensure_local_site(sessions: sessionmaker[Session]) -> int:
    """The one-box default: this machine is site ``local``, owned by provider ``local``."""
    with transaction(sessions) as session:
        site = session.execute(select(Site).where(Site.name == LOCAL_SITE)).scalar_one_or_none()
        if site is not None:
            return site.id
        provider = session.execute(select(Provider).where(Provider.name == LOCAL_SITE)).scalar_one_or_none()
        if provider is None:
            provider = Provider(name=LOCAL_SITE, display_name="this machine", revenue_share=Decimal(0))
            session.add(provider)
        site = Site(name=LOCAL_SITE, engine="local", region="local", provider=provider)
        session.add(site)
        session.flush()
        return site.id
