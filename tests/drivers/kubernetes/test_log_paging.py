"""``whole_characters``: a log page never ends inside a UTF-8 sequence (property-based)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from zhisuan.drivers.kubernetes.driver import whole_characters


@given(st.text(min_size=1), st.integers(min_value=0))
def test_a_cut_page_keeps_only_whole_characters(text: str, cut: int) -> None:
    data = text.encode()
    page = data[: 4 + cut % max(1, len(data) - 3)]  # pages of at least 4 bytes (one character always fits)
    kept = whole_characters(page)
    assert page.startswith(kept) and len(page) - len(kept) <= 3
    kept.decode("utf-8")  # strict: raises if a character was cut
    if kept != page:  # trimmed only when the page really ended inside a character
        with pytest.raises(UnicodeDecodeError):
            page.decode("utf-8")


def test_ascii_is_never_trimmed() -> None:
    assert whole_characters(b"abc") == b"abc"
    assert whole_characters("世".encode()[:2]) == "世".encode()[:2]  # all there is: returned as it is
