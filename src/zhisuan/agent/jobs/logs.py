"""Paging a worker's stdout/stderr file by byte offset without losing or splitting bytes.

A page is bytes ``[offset, next_offset)``. It never ends inside a multi-byte UTF-8 character (the
partial character is left for the next page) unless the file has ended there for good, in which case
the stray bytes are decoded with replacement characters. Invalid bytes elsewhere also become U+FFFD,
but ``next_offset`` always counts raw bytes, so paging reads every byte exactly once.
"""

from __future__ import annotations

import codecs
from pathlib import Path

MAX_UTF8_CHARACTER = 4


def decode_page(data: bytes, *, at_end: bool) -> tuple[str, int]:
    """Decode ``data``; return the text and how many bytes it covers (all of them when ``at_end``)."""
    decoder = codecs.getincrementaldecoder("utf-8")("replace")
    text = decoder.decode(data, final=at_end)
    pending, _ = decoder.getstate()
    return text, len(data) - len(pending)


def read_page(path: Path, offset: int, limit: int, *, ended: bool) -> tuple[str, int, bool]:
    """``(text, next_offset, complete)``; ``complete`` when the writer has ended and nothing follows."""
    if offset < 0:
        raise ValueError(f"offset: must be >= 0, got {offset}")
    if limit <= 0:
        raise ValueError(f"limit: must be > 0, got {limit}")
    try:
        handle = path.open("rb")
    except FileNotFoundError:
        return "", offset, ended
    with handle:
        size = handle.seek(0, 2)
        handle.seek(offset)
        data = handle.read(limit)
        at_end = ended and offset + len(data) >= size
        text, used = decode_page(data, at_end=at_end)
        while used == 0 and data and len(data) < MAX_UTF8_CHARACTER:  # limit below one character: widen to it
            more = handle.read(1)
            if not more:
                break
            data += more
            at_end = ended and offset + len(data) >= size
            text, used = decode_page(data, at_end=at_end)
        if used == 0 and data:  # still partial: the writer is mid-character; come back later
            return "", offset, False
    next_offset = offset + used
    return text, next_offset, ended and next_offset >= size
