"""loops.warm_freeze: after the start-up grace, a ``zhisuan up`` process freezes what its first minute
built; a process that never froze (the tests, tools) is left alone."""

from __future__ import annotations

import gc

import pytest

from zhisuan.loops.warm_freeze import freeze_warm_objects


def test_a_process_that_did_not_freeze_at_start_up_is_left_alone() -> None:
    if gc.get_freeze_count():
        pytest.skip("this test process froze objects itself")
    assert freeze_warm_objects() == 0 and gc.get_freeze_count() == 0


def test_what_the_first_minute_built_is_frozen_after_the_start_up_freeze() -> None:
    if gc.get_freeze_count():
        pytest.skip("this test process froze objects itself")
    gc.freeze()  # as ``zhisuan up`` does before serving
    try:
        at_start = gc.get_freeze_count()
        warm = [[number] for number in range(5_000)]  # built by the first beats: lives as long
        assert freeze_warm_objects() >= at_start + len(warm)
        collected_later = {id(tracked) for tracked in gc.get_objects(generation=2)}
        assert not any(id(item) in collected_later for item in warm)  # frozen: no longer walked
    finally:
        gc.unfreeze()
