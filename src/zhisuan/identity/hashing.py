"""How secrets are stored: scrypt for passwords, a SHA-256 digest for platform-made API key secrets.

Passwords are chosen by people, so a leaked table must make each guess expensive: scrypt from the
standard library, stored as ``scrypt$<n>$<r>$<p>$<salt b64>$<hash b64>``. It is memory-hard, so a
guess costs an attacker ~16 MiB and tens of milliseconds at the default n = 2**14.

API key secrets are 256 random bits the platform generates (``secrets.token_urlsafe(32)``):
nobody can guess one, leaked table or not, so a slow hash adds no protection and only costs every
first check ~37 ms of CPU. New keys are stored as ``sha256$<hex>`` (the digest of the secret, as
services store their access tokens); keys stored as scrypt before keep verifying: the stored
form's scheme says which check applies.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets

R, P, DKLEN = 8, 1, 32
KEY_DIGEST_SCHEME = "sha256"


def hash_secret(secret: str, n: int = 2**14) -> str:
    """The slow, salted form of a human-chosen secret (a password)."""
    salt = secrets.token_bytes(16)
    digest = hashlib.scrypt(secret.encode(), salt=salt, n=n, r=R, p=P, dklen=DKLEN, maxmem=64 * 2**20)
    return "$".join(
        ["scrypt", str(n), str(R), str(P), base64.b64encode(salt).decode(), base64.b64encode(digest).decode()]
    )


def digest_key_secret(secret: str) -> str:
    """The stored form of a platform-generated API key secret: ``sha256$<hex digest>``. No salt is
    needed: secrets are random and unique, so equal digests and precomputed tables cannot occur."""
    return f"{KEY_DIGEST_SCHEME}${hashlib.sha256(secret.encode()).hexdigest()}"


def dummy_hash(n: int) -> str:
    """A hash no secret matches, with cost ``n``: checking a secret against it costs what checking
    against a real one does, so an unknown user answers as slowly as a wrong password."""
    return _DUMMY_HASHES.get(n) or _DUMMY_HASHES.setdefault(n, hash_secret(secrets.token_urlsafe(32), n=n))


_DUMMY_HASHES: dict[int, str] = {}

# What an unknown key id is checked against: the new keys' scheme, so it costs what a wrong secret
# for a new key costs (no timing tells which key ids exist).
DUMMY_KEY_DIGEST = digest_key_secret(secrets.token_urlsafe(32))


def verify_secret(secret: str, stored: str) -> bool:
    """Whether ``secret`` matches ``stored`` (either scheme), compared in constant time."""
    scheme, _, rest = stored.partition("$")
    if scheme == KEY_DIGEST_SCHEME:
        return hmac.compare_digest(digest_key_secret(secret), stored)
    if scheme == "scrypt":
        return _verify_scrypt(secret, rest)
    return False


def _verify_scrypt(secret: str, rest: str) -> bool:
    try:
        n, r, p, salt_b64, digest_b64 = rest.split("$")
    except ValueError:
        return False
    salt, expected = base64.b64decode(salt_b64), base64.b64decode(digest_b64)
    actual = hashlib.scrypt(
        secret.encode(), salt=salt, n=int(n), r=int(r), p=int(p), dklen=len(expected), maxmem=64 * 2**20
    )
    return hmac.compare_digest(actual, expected)
