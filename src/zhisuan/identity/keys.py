"""API keys: creation (secret shown once), verification with a per-process cache, revocation.

A key reads ``zs_<key id>_<secret>``. The key id is public and indexes the row; the secret is
checked against its stored digest (``identity.hashing``: SHA-256 for keys issued now, scrypt for
keys stored before, ~37 ms per check). A process remembers the SHA-256 of keys it has already
verified — revocation, expiry and a disabled user are still read from the database on every
request, so they take effect at once.
"""

from __future__ import annotations

import hashlib
import secrets
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from sqlalchemy import select
from sqlalchemy.orm import Session

from zhisuan.errors import Unauthenticated
from zhisuan.identity.access import Principal
from zhisuan.identity.hashing import DUMMY_KEY_DIGEST, digest_key_secret, verify_secret
from zhisuan.identity.models import ApiKey, User
from zhisuan.identity.throttle import FailureThrottle

PREFIX = "zs_"


@dataclass(frozen=True)
class IssuedKey:
    row: ApiKey
    plaintext: str


def issue_key(
    session: Session,
    user: User,
    *,
    name: str,
    scopes: list[str],
    expires_at: datetime | None,
    site_id: int | None = None,
) -> IssuedKey:
    key_id = secrets.token_hex(6)
    secret = secrets.token_urlsafe(32)
    row = ApiKey(
        key_id=key_id,
        name=name,
        user=user,
        secret_hash=digest_key_secret(secret),
        scopes=sorted(set(scopes)),
        expires_at=expires_at,
        site_id=site_id,
    )
    session.add(row)
    session.flush()
    return IssuedKey(row=row, plaintext=f"{PREFIX}{key_id}_{secret}")


def split_key(token: str) -> tuple[str, str]:
    if not token.startswith(PREFIX) or token.count("_") < 2:
        raise Unauthenticated("malformed API key (expected zs_<id>_<secret>)")
    key_id, _, secret = token[len(PREFIX) :].partition("_")
    # Key ids are short hex strings; anything else cannot exist and is not worth a lookup.
    if not (key_id.isascii() and key_id.isalnum() and len(key_id) <= 32) or not secret:
        raise Unauthenticated("malformed API key (expected zs_<id>_<secret>)")
    return key_id, secret


def key_throttle() -> FailureThrottle:
    """Scripts with a stale key may fail a few dozen times; guessing keys needs far more than that."""
    return FailureThrottle(free=20, base_s=1.0, cap_s=300.0)


@dataclass
class KeyVerifier:
    """Checks bearer keys. One per process; holds only digests of keys it has verified.

    An unknown key id costs what a wrong secret for a new key costs (a SHA-256 digest compared with
    ``DUMMY_KEY_DIGEST``), so timing does not tell which key ids exist; and a client whose checks
    keep failing is refused (429) before any hashing (``throttle``, keyed by client address), so it
    cannot buy the scrypt work of old keys on demand.
    """

    capacity: int = 10_000
    throttle: FailureThrottle = field(default_factory=key_throttle)
    _verified: OrderedDict[str, int] = field(default_factory=OrderedDict)

    def authenticate(self, session: Session, token: str, now: datetime, client: str | None = None) -> Principal:
        """The principal ``token`` authenticates; ``client`` (an address) is throttled on failures."""
        return self._admit(token, now, client, lambda key_id: session.execute(
            select(ApiKey).where(ApiKey.key_id == key_id)).scalar_one_or_none())

    def authenticate_loaded(self, rows: dict[str, ApiKey], token: str, now: datetime,
                            client: str | None = None) -> Principal:
        """``authenticate`` against key rows the caller already read (``rows`` by key id): a batch of
        requests checks its keys after one query instead of one query each."""
        return self._admit(token, now, client, rows.get)

    def _admit(self, token: str, now: datetime, client: str | None,
               lookup: Callable[[str], ApiKey | None]) -> Principal:
        subjects = [f"client:{client}"] if client else []
        self.throttle.check(subjects, now, "API key checks")
        try:
            key_id, secret = split_key(token)
            row = self._checked(lookup(key_id), token, secret)
        except Unauthenticated:
            self.throttle.failed(subjects, now)
            raise
        check_key_usable(row, now)
        if row.last_used_at is None or now - row.last_used_at > timedelta(minutes=1):
            row.last_used_at = now
        return principal_of(row)

    def _checked(self, row: ApiKey | None, token: str, secret: str) -> ApiKey:
        digest = hashlib.sha256(token.encode()).hexdigest()
        if row is not None and self._verified.get(digest) == row.id:
            return row
        matches = verify_secret(secret, row.secret_hash if row is not None else DUMMY_KEY_DIGEST)
        if row is None or not matches:
            raise Unauthenticated("unknown API key")
        self._remember(digest, row.id)
        return row

    def _remember(self, digest: str, row_id: int) -> None:
        self._verified[digest] = row_id
        self._verified.move_to_end(digest)
        while len(self._verified) > self.capacity:
            self._verified.popitem(last=False)


def check_key_usable(row: ApiKey, now: datetime) -> None:
    if row.revoked_at is not None:
        raise Unauthenticated(f"API key {row.key_id} was revoked")
    if row.expires_at is not None and row.expires_at <= now:
        raise Unauthenticated(f"API key {row.key_id} expired at {row.expires_at.isoformat()}")
    if row.user.disabled:
        raise Unauthenticated(f"user {row.user.username} is disabled")


def principal_of(row: ApiKey) -> Principal:
    user = row.user
    return Principal(
        user_id=user.id,
        username=user.username,
        role=user.role,
        tenant_id=user.tenant_id,
        provider_id=user.provider_id,
        key_id=row.key_id,
        scopes=frozenset(row.scopes),
        site_id=row.site_id,
    )
