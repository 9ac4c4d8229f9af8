"""Domain errors of the economics core.

Every error is a ``ValueError`` (so generic input handling still catches it) and names the
offending input in ``field``, so the API layer can map it to a 4xx answer with a pointer to the
field. Nothing is ever partially written: the core is pure, and every function that "appends"
validates its whole batch before returning a new value.
"""


class EconomicsError(ValueError):
    """Base class: bad input to the economics core. ``field`` names the offending input."""

    def __init__(self, message: str, field: str = "") -> None:
        super().__init__(f"{field}: {message}" if field else message)
        self.field = field
        self.message = message


class InvalidAmountError(EconomicsError):
    """A price, rate, quantity or fraction is negative, zero, non-finite, a float, or out of range."""


class InvalidTimeError(EconomicsError):
    """A naive datetime, an end before (or equal to) a start, or an instant outside a window."""


class UnknownModelError(EconomicsError):
    """An accelerator model (or tenant/provider) the inputs do not know about."""


class CurrencyMismatchError(EconomicsError):
    """Two amounts, books or contracts in different currencies were combined."""


class DuplicateUsageError(EconomicsError):
    """A usage event reuses an idempotency key with a different payload (or, in strict mode, at all)."""


class RateNotFoundError(EconomicsError):
    """No price book version or rate entry applies to a usage record."""


class ContractStateError(EconomicsError):
    """An illegal contract lifecycle transition or amendment."""
