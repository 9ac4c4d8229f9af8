"""Log pages by byte offset: every byte read exactly once, characters never split, bad bytes replaced."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from zhisuan.agent.jobs.logs import decode_page, read_page


def page_all(path: Path, limit: int, *, ended: bool) -> tuple[str, int]:
    text, offset, pages = "", 0, 0
    while True:
        chunk, offset_after, complete = read_page(path, offset, limit, ended=ended)
        text += chunk
        if complete or offset_after == offset:
            return text, offset_after
        offset, pages = offset_after, pages + 1
        assert pages < 100_000


@settings(max_examples=60, deadline=None)
@given(content=st.text(max_size=300), limit=st.integers(1, 40))
def test_paging_valid_utf8_gives_the_exact_text(tmp_path_factory: pytest.TempPathFactory, content: str,
                                                limit: int) -> None:
    path = tmp_path_factory.mktemp("log") / "w.out"
    path.write_bytes(content.encode())
    text, end = page_all(path, limit, ended=True)
    assert (text, end) == (content, len(content.encode()))


@settings(max_examples=60, deadline=None)
@given(data=st.binary(max_size=200), limit=st.integers(1, 40))
def test_paging_any_bytes_covers_every_byte_like_one_read(tmp_path_factory: pytest.TempPathFactory, data: bytes,
                                                          limit: int) -> None:
    path = tmp_path_factory.mktemp("log") / "w.out"
    path.write_bytes(data)
    text, end = page_all(path, limit, ended=True)
    assert end == len(data)
    # paging may cut an invalid sequence differently from one read, but never loses a valid character
    assert text.replace("\ufffd", "") == data.decode("utf-8", "replace").replace("\ufffd", "")


def test_a_partial_character_waits_while_the_worker_runs(tmp_path: Path) -> None:
    path = tmp_path / "w.out"
    path.write_bytes("ab€".encode()[:4])  # "ab" + 2 of the 3 bytes of "€"
    assert read_page(path, 0, 100, ended=False) == ("ab", 2, False)
    assert read_page(path, 2, 100, ended=False) == ("", 2, False)
    assert read_page(path, 2, 100, ended=True) == ("\ufffd", 4, True)


def test_a_limit_smaller_than_a_character_still_advances(tmp_path: Path) -> None:
    path = tmp_path / "w.out"
    path.write_bytes("€x".encode())
    assert read_page(path, 0, 1, ended=True) == ("€", 3, False)
    assert read_page(path, 3, 1, ended=True) == ("x", 4, True)


@pytest.mark.parametrize(("data", "at_end", "expected"), [
    (b"hello", False, ("hello", 5)),
    ("é".encode()[:1], False, ("", 0)),
    ("é".encode()[:1], True, ("\ufffd", 1)),
    (b"a\xffb", False, ("a\ufffdb", 3)),
])
def test_decode_page(data: bytes, at_end: bool, expected: tuple[str, int]) -> None:
    assert decode_page(data, at_end=at_end) == expected


@pytest.mark.parametrize(("offset", "limit", "field"), [(-1, 10, "offset"), (0, 0, "limit")])
def test_bad_paging_arguments(tmp_path: Path, offset: int, limit: int, field: str) -> None:
    with pytest.raises(ValueError, match=f"^{field}:"):
        read_page(tmp_path / "none", offset, limit, ended=True)
