"""Money: Decimal CNY, the fen rounding rule, and input coercion.

Rules (the whole economics core follows them):

* Money is ``decimal.Decimal`` in a named currency (``CNY`` by default); floats are rejected
  because ``0.1`` as a float is not 0.1.
* Intermediate arithmetic is exact: quantities are integers (milli-device-seconds, tokens) and
  every priced amount is computed as ``rate × numerator / denominator`` with a single division in
  a 60-digit context, so the only rounding is the final one.
* Rounding rule: each invoice LINE is rounded to the fen (0.01) with ROUND_HALF_UP (四舍五入);
  invoice total = Σ rounded lines; a provider payout = round_fen(provider revenue × share);
  platform margin = revenue − Σ payouts (never rounded on its own, so the identity is exact).
"""

from dataclasses import dataclass
from decimal import ROUND_HALF_UP, Context, Decimal, InvalidOperation

from zhisuan.core.economics.errors import CurrencyMismatchError, InvalidAmountError

CNY = "CNY"
FEN = Decimal("0.01")
ZERO = Decimal(0)
ONE = Decimal(1)
EXACT = Context(prec=60)
"""Context for intermediate products/quotients: 60 significant digits, far beyond any fen."""


def round_fen(amount: Decimal) -> Decimal:
    """Round to the fen, half up (四舍五入): ``round_fen(Decimal('0.005')) == Decimal('0.01')``."""
    return amount.quantize(FEN, rounding=ROUND_HALF_UP)


def as_decimal(value: object, field: str) -> Decimal:
    """Coerce ``Decimal | int | str`` to a finite Decimal; reject floats, bools and garbage."""
    wrong_type = f"must be a Decimal, int or decimal string, not {type(value).__name__}"
    if isinstance(value, bool | float):
        raise InvalidAmountError(wrong_type, field)
    if isinstance(value, Decimal):
        result = value
    elif isinstance(value, int | str):
        try:
            result = Decimal(value)
        except InvalidOperation as exc:
            raise InvalidAmountError(f"not a decimal number: {value!r}", field) from exc
    else:
        raise InvalidAmountError(wrong_type, field)
    if not result.is_finite():
        raise InvalidAmountError("must be finite", field)
    return result


def positive(value: object, field: str) -> Decimal:
    """A strictly positive Decimal (prices, rates, capacities)."""
    result = as_decimal(value, field)
    if result <= 0:
        raise InvalidAmountError(f"must be > 0, got {result}", field)
    return result


def non_negative(value: object, field: str) -> Decimal:
    """A Decimal ≥ 0 (deposits, discounts)."""
    result = as_decimal(value, field)
    if result < 0:
        raise InvalidAmountError(f"must be >= 0, got {result}", field)
    return result


def fraction(value: object, field: str, *, allow_one: bool = False) -> Decimal:
    """A Decimal in [0, 1) (or [0, 1] with ``allow_one``): discounts, penalty rates, shares."""
    result = non_negative(value, field)
    if result > 1 or (result == 1 and not allow_one):
        raise InvalidAmountError(f"must be in [0, 1{']' if allow_one else ')'}, got {result}", field)
    return result


def check_currency(expected: str, actual: str, field: str) -> None:
    """Raise ``CurrencyMismatchError`` unless both currencies are the same ISO code."""
    if expected != actual:
        raise CurrencyMismatchError(f"expected {expected}, got {actual}", field)


@dataclass(frozen=True, slots=True)
class Money:
    """An amount in a currency. ``+``/``-`` require equal currencies; ``rounded()`` applies the fen rule."""

    amount: Decimal
    currency: str = CNY

    def __post_init__(self) -> None:
        object.__setattr__(self, "amount", as_decimal(self.amount, "amount"))
        if len(self.currency) != 3 or not self.currency.isupper():
            raise CurrencyMismatchError(f"not an ISO 4217 code: {self.currency!r}", "currency")

    def __add__(self, other: "Money") -> "Money":
        check_currency(self.currency, other.currency, "currency")
        return Money(self.amount + other.amount, self.currency)

    def __sub__(self, other: "Money") -> "Money":
        check_currency(self.currency, other.currency, "currency")
        return Money(self.amount - other.amount, self.currency)

    def scaled(self, factor: Decimal) -> "Money":
        """``amount × factor`` exactly (no rounding)."""
        return Money(EXACT.multiply(self.amount, factor), self.currency)

    def rounded(self) -> "Money":
        """Round to the fen, half up."""
        return Money(round_fen(self.amount), self.currency)

    def __str__(self) -> str:
        return f"{self.amount} {self.currency}"
