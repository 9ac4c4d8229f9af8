"""Console login: a username and password for a 12-hour session key; throttled, audited, timing-equal.

- Throttled: failures count per account and per client address (``FailureThrottle``); after a few,
  attempts are refused with 429 and Retry-After before any password is hashed.
- Audited: every attempt, granted or refused, is an audit event (``auth.login`` / ``auth.login_failed``);
  a refused one is written in its own transaction, since the request's is rolled back.
- Timing-equal: an unknown, disabled or password-less user costs the same scrypt work as a wrong
  password (``dummy_hash``), so response times do not tell which user names exist.
- Expired console session keys are deleted at each login, so they do not pile up.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import delete, select
from sqlalchemy.orm import Session, sessionmaker

from zhisuan.errors import Unauthenticated
from zhisuan.identity import audit
from zhisuan.identity.access import DEFAULT_SCOPES, Principal
from zhisuan.identity.hashing import dummy_hash, verify_secret
from zhisuan.identity.keys import IssuedKey, issue_key
from zhisuan.identity.models import ApiKey, User
from zhisuan.identity.throttle import FailureThrottle
from zhisuan.store.base import transaction

CONSOLE_SESSION = timedelta(hours=12)
SESSION_KEY_NAME = "console session"


def login_throttle() -> FailureThrottle:
    """Five free failures, then 1 s, 2 s, 4 s … up to 15 minutes between attempts."""
    return FailureThrottle(free=5, base_s=1.0, cap_s=900.0)


@dataclass(frozen=True)
class LoginAttempt:
    username: str
    password: str
    client: str


def login(sessions: sessionmaker[Session], throttle: FailureThrottle, attempt: LoginAttempt, now: datetime,
          scrypt_n: int) -> IssuedKey:
    """Exchange a username and password for a console session key that expires in 12 hours."""
    account, address = f"user:{attempt.username.lower()}", f"client:{attempt.client}"
    throttle.check([account, address], now, "logins")
    with transaction(sessions) as session:
        user = session.execute(select(User).where(User.username == attempt.username)).scalar_one_or_none()
        stored = user.password_hash if user is not None and user.password_hash else dummy_hash(scrypt_n)
        matches = verify_secret(attempt.password, stored)
        if user is not None and user.password_hash and not user.disabled and matches:
            issued = open_session(session, user, attempt, now)
            # The address keeps its count: one valid account must not reset the guessing of others.
            throttle.succeeded([account])
            return issued
        affiliation = (user.tenant_id, user.provider_id) if user is not None else (None, None)
    throttle.failed([account, address], now)
    with transaction(sessions) as session:
        stranger = Principal(user_id=0, username=attempt.username, role="anonymous", scopes=frozenset())
        audit.record(session, stranger, "auth.login_failed", "user", attempt.username,
                     tenant_id=affiliation[0], provider_id=affiliation[1], detail={"client": attempt.client})
    raise Unauthenticated("wrong username or password")


def open_session(session: Session, user: User, attempt: LoginAttempt, now: datetime) -> IssuedKey:
    purge_expired_sessions(session, now)
    # A session is the user's own password sign-in: it carries what a new key carries by default, so a
    # tenant signed in to the console can issue the inference keys its programs call /v1 with (a key
    # cannot carry scopes its creator lacks). Metrics stays opt-in, agent keys are per site.
    issued = issue_key(session, user, name=SESSION_KEY_NAME, scopes=list(DEFAULT_SCOPES),
                       expires_at=now + CONSOLE_SESSION)
    who = Principal(user_id=user.id, username=user.username, role=user.role, tenant_id=user.tenant_id,
                    provider_id=user.provider_id, key_id=issued.row.key_id)
    audit.record(session, who, "auth.login", "user", user.username, tenant_id=user.tenant_id,
                 provider_id=user.provider_id, detail={"client": attempt.client, "key_id": issued.row.key_id})
    return issued


def purge_expired_sessions(session: Session, now: datetime) -> int:
    """Delete console session keys past their expiry; returns how many."""
    result = session.execute(delete(ApiKey).where(ApiKey.name == SESSION_KEY_NAME, ApiKey.expires_at < now))
    return int(getattr(result, "rowcount", 0) or 0)
