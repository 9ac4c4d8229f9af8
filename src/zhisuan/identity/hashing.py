"""Slow hashing of secrets (API keys, passwords) with scrypt from the standard library.

Stored form: ``scrypt$<n>$<r>$<p>$<salt b64>$<hash b64>``. scrypt is memory-hard, so a leaked
table costs an attacker ~16 MiB and tens of milliseconds per guess at the default n = 2**14.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets

R, P, DKLEN = 8, 1, 32


def hash_secret(secret: str, n: int = 2**14) -> str:
    salt = secrets.token_bytes(16)
    digest = hashlib.scrypt(secret.encode(), salt=salt, n=n, r=R, p=P, dklen=DKLEN, maxmem=64 * 2**20)
    return "$".join(
        ["scrypt", str(n), str(R), str(P), base64.b64encode(salt).decode(), base64.b64encode(digest).decode()]
    )


def dummy_hash(n: int) -> str:
    """A hash no secret matches, with cost ``n``: checking a secret against it costs what checking
    against a real one does, so an unknown user or key id answers as slowly as a wrong secret."""
    return _DUMMY_HASHES.get(n) or _DUMMY_HASHES.setdefault(n, hash_secret(secrets.token_urlsafe(32), n=n))


_DUMMY_HASHES: dict[int, str] = {}


def verify_secret(secret: str, stored: str) -> bool:
    try:
        scheme, n, r, p, salt_b64, digest_b64 = stored.split("$")
    except ValueError:
        return False
    if scheme != "scrypt":
        return False
    salt, expected = base64.b64decode(salt_b64), base64.b64decode(digest_b64)
    actual = hashlib.scrypt(
        secret.encode(), salt=salt, n=int(n), r=int(r), p=int(p), dklen=len(expected), maxmem=64 * 2**20
    )
    return hmac.compare_digest(actual, expected)
