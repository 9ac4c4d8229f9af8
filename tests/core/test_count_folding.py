"""The fold loop's decision: whether, and in how many chunks of how many rows, to fold a count table."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from zhisuan.core.count_folding import FoldPlan, needs_vacuum, plan_fold


def test_a_table_at_or_below_the_threshold_is_left_alone() -> None:
    assert plan_fold(512, 40, fold_after=512, chunk_rows=100, max_chunks=10).chunks == 0
    assert plan_fold(0, 0, fold_after=512, chunk_rows=100, max_chunks=10).chunks == 0


def test_a_table_above_it_is_folded_in_chunks_up_to_the_cap() -> None:
    assert plan_fold(513, 40, fold_after=512, chunk_rows=10_000, max_chunks=50) == FoldPlan(1, 10_000)
    assert plan_fold(20_001, 40, fold_after=512, chunk_rows=10_000, max_chunks=50) == FoldPlan(3, 10_000)
    assert plan_fold(5_000_000, 40, fold_after=512, chunk_rows=10_000, max_chunks=50) == FoldPlan(50, 10_000)


def test_a_folded_table_with_many_keys_is_not_folded_again() -> None:
    """3,000 keys (a hundred sites): one row per key is already folded, though above ``fold_after``."""
    assert plan_fold(3_000, 3_000, fold_after=512, chunk_rows=10_000, max_chunks=50).chunks == 0
    assert plan_fold(6_001, 3_000, fold_after=512, chunk_rows=10_000, max_chunks=50).chunks == 1


def test_a_chunk_holds_more_rows_than_there_are_keys() -> None:
    assert plan_fold(100, 24, fold_after=10, chunk_rows=7, max_chunks=3) == FoldPlan(3, 48)


@given(rows=st.integers(0, 10**7), keys=st.integers(0, 10**4), fold_after=st.integers(0, 10**4),
       chunk_rows=st.integers(1, 10**5), max_chunks=st.integers(1, 500))
def test_the_chunks_cover_the_rows_or_reach_the_cap(rows: int, keys: int, fold_after: int, chunk_rows: int,
                                                    max_chunks: int) -> None:
    plan = plan_fold(rows, keys, fold_after, chunk_rows, max_chunks)
    assert plan.chunk_rows >= max(chunk_rows, 2 * keys)
    if rows <= max(fold_after, 2 * keys):
        assert plan.chunks == 0
    else:
        assert 1 <= plan.chunks <= max_chunks
        assert plan.chunks * plan.chunk_rows >= rows or plan.chunks == max_chunks
        assert (plan.chunks - 1) * plan.chunk_rows < rows


def test_empty_chunks_are_refused() -> None:
    with pytest.raises(ValueError):
        plan_fold(1_000, 1, fold_after=1, chunk_rows=0, max_chunks=1)


def test_a_table_is_vacuumed_once_its_dead_rows_are_many_and_most_of_it() -> None:
    assert not needs_vacuum(dead_rows=9_000, live_rows=10)
    assert needs_vacuum(dead_rows=10_001, live_rows=10)
    assert not needs_vacuum(dead_rows=30_000, live_rows=8_000)
    assert needs_vacuum(dead_rows=1_000_000, live_rows=300)
