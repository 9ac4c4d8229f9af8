"""The live meter: table cases and the property that the breakdown adds up to the wall time."""

from hypothesis import given
from hypothesis import strategies as st

from zhisuan.core.goodput.meter import Attempt, Checkpoint, measure


def test_one_fault_splits_into_every_category() -> None:
    # Submitted at 0, admitted at 10, first progress at 15, checkpoints at 40 (2 s) and 70 (2 s),
    # fault at 85 → requeued; admitted at 95, progress at 100 (resumed), done at 150 with a checkpoint at 120.
    attempts = [
        Attempt(0, 10, 15, (Checkpoint(40, 25, 2.0), Checkpoint(70, 50, 2.0)), 85, faulted=True),
        Attempt(85, 95, 100, (Checkpoint(120, 75, 3.0),), 150),
    ]
    b = measure(attempts, now=500)
    assert (b.queueing, b.restart, b.lost, b.checkpoint) == (20, 10, 15, 7)
    assert b.productive == (70 - 15 - 4) + (150 - 100 - 3)
    assert b.wall == 150
    assert b.ettr == b.productive / 130


def test_a_running_job_is_measured_to_now_and_a_queued_one_is_all_queueing() -> None:
    assert measure([Attempt(0, 5, 6)], now=20).as_dict() == {
        "queueing": 5, "productive": 14, "checkpoint": 0, "lost": 0, "restart": 1, "wall": 20, "ettr": 14 / 15}
    waiting = measure([Attempt(0)], now=30)
    assert (waiting.queueing, waiting.wall, waiting.ettr) == (30, 30, None)


def test_attempts_without_progress() -> None:
    b = measure([Attempt(0, 2, None, (), 10, faulted=True), Attempt(10, 12, None, (), 20)], now=99)
    assert (b.queueing, b.lost, b.productive) == (4, 8, 8)


times = st.floats(min_value=0, max_value=1e6, allow_nan=False, allow_infinity=False)


@st.composite
def timelines(draw: st.DrawFn) -> tuple[list[Attempt], float]:
    start = draw(times)
    attempts, t = [], start
    for k in range(draw(st.integers(1, 5))):
        marks = sorted(draw(st.lists(times, min_size=3, max_size=3)))
        admitted, progress, end = (t + m for m in marks)
        ckpts = tuple(Checkpoint(at, i, draw(st.floats(0, 1e4))) for i, at in enumerate(sorted(
            draw(st.lists(st.floats(progress, end), max_size=4)))))
        last = k == 4 or draw(st.booleans())
        attempts.append(Attempt(t, draw(st.sampled_from([admitted, None])) if last else admitted,
                                draw(st.sampled_from([progress, None])), ckpts,
                                draw(st.sampled_from([end, None])) if last else end,
                                faulted=not last or draw(st.booleans())))
        t = end
        if last:
            break
    return attempts, draw(st.floats(t, t + 1e6))


@given(timelines())
def test_the_breakdown_adds_up_to_the_wall_time(timeline: tuple[list[Attempt], float]) -> None:
    attempts, now = timeline
    b = measure(attempts, now)
    final = attempts[-1].ended_at if attempts[-1].ended_at is not None else now
    wall = final - attempts[0].queued_at
    assert abs(b.wall - wall) <= 1e-9 * max(1.0, wall)
    assert b.ettr is None or 0 <= b.ettr <= 1 + 1e-12
