"""How a path or body reference (``/tenants/{ref}``, ``"tenant": "acme"``) names a row: by id or by name.

Only ASCII digits spell an id (``str.isdigit`` also accepts "²" and other Unicode digits, which
``int`` then refuses), and an id must fit the INTEGER columns ids live in (int4 on PostgreSQL), so a
reference like 99999999999999999999 is refused as input instead of overflowing the database driver.
"""

from __future__ import annotations

from zhisuan.errors import InvalidInput

# Row ids are INTEGER primary keys: 32-bit signed on PostgreSQL, so this is the largest possible id.
MAX_ROW_ID = 2**31 - 1


def is_ascii_number(text: str) -> bool:
    return text.isascii() and text.isdigit()


def row_id(ref: str | int, field: str) -> int | None:
    """The id ``ref`` spells, or None when ``ref`` is a name; InvalidInput on ``field`` when out of range."""
    text = str(ref)
    if not is_ascii_number(text):
        return None
    value = int(text)
    if not 1 <= value <= MAX_ROW_ID:
        raise InvalidInput(f"{field}: id {text[:24]} is out of range (1..{MAX_ROW_ID})", field=field)
    return value
