"""Domain errors. Services raise these; the API maps them to HTTP in one place (api/errors.py).

Each carries the offending field (dotted path, like ``devices.0.model``) when there is one, so a
client can point at it.
"""

from __future__ import annotations


class DomainError(Exception):
    """Base of every error a user can cause. ``field`` names the offending input, if any."""

    def __init__(self, message: str, *, field: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.field = field


class NotFound(DomainError):
    """The object does not exist, or the caller may not know that it exists."""


class Conflict(DomainError):
    """The request clashes with existing state (a duplicate name, an overlapping lease…)."""


class InvalidInput(DomainError):
    """Well-formed but unacceptable input (an unknown accelerator model, an end before a start…)."""


class Unauthenticated(DomainError):
    """No credential, or one that is unknown, expired or revoked."""


class Forbidden(DomainError):
    """The caller is known but its role or scope does not allow this."""


class TooManyRequests(DomainError):
    """Too many failed attempts from this client or for this account: wait ``retry_after_s`` seconds."""

    def __init__(self, message: str, *, retry_after_s: float, field: str | None = None) -> None:
        super().__init__(message, field=field)
        self.retry_after_s = retry_after_s
