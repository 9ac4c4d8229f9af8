"""Leasing economics: price books, contracts, metering, rating, invoices, settlements, price index.

Pure and I/O-free: frozen dataclasses in, frozen dataclasses out; Decimal money (CNY, fen,
ROUND_HALF_UP per invoice line); UTC-aware datetimes only; ``now`` is always a parameter.
Errors derive from ``EconomicsError(ValueError)`` and name the offending ``field``.
"""

from zhisuan.core.economics.errors import (
    ContractStateError,
    CurrencyMismatchError,
    DuplicateUsageError,
    EconomicsError,
    InvalidAmountError,
    InvalidTimeError,
    RateNotFoundError,
    UnknownModelError,
)

__all__ = [
    "ContractStateError",
    "CurrencyMismatchError",
    "DuplicateUsageError",
    "EconomicsError",
    "InvalidAmountError",
    "InvalidTimeError",
    "RateNotFoundError",
    "UnknownModelError",
]
