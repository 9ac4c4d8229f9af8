"""What happens before a control plane serves: migrations, the first operator, the local site."""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from decimal import Decimal

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
    if settings.resolved_database_url().startswith("sqlite"):
        settings.data_dir.mkdir(parents=True, exist_ok=True)
    upgrade_to_head(settings.resolved_database_url())


def ensure_first_operator(sessions: sessionmaker[Session], settings: Settings) -> FirstOperator | None:
    with transaction(sessions) as session:
        if session.execute(select(User.id).where(User.role == "operator")).first():
            return None
        password = secrets.token_urlsafe(12)
        user = User(username="admin", role="operator", password_hash=hash_secret(password, n=settings.scrypt_n))
        session.add(user)
        session.flush()
        issued = issue_key(session, user, name="first operator key", scopes=["read", "write", "inference"],
                           expires_at=None, scrypt_n=settings.scrypt_n)
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
