"""The gateway queue's fair order (core.fair_queue): round-robin over parties, FIFO within one,
bounded by what the module's docstring states."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from zhisuan.core.fair_queue import FairQueue, refusal


def drain(q: FairQueue[str]) -> list[str]:
    out = []
    while (item := q.pop()) is not None:
        out.append(item)
    return out


@pytest.mark.parametrize(("pushes", "order"), [
    ([], []),
    ([("A", "a1")], ["a1"]),
    # A noisy party queued first, a quiet one after: the quiet one waits behind one of A's, not all.
    ([("A", "a1"), ("A", "a2"), ("A", "a3"), ("B", "b1")], ["a1", "b1", "a2", "a3"]),
    # Three parties: one each per round, in the order they started waiting.
    ([("A", "a1"), ("A", "a2"), ("B", "b1"), ("C", "c1"), ("B", "b2"), ("C", "c2")],
     ["a1", "b1", "c1", "a2", "b2", "c2"]),
    ([("B", "b1"), ("A", "a1"), ("A", "a2"), ("B", "b2")], ["b1", "a1", "b2", "a2"]),
])
def test_round_robin_over_parties_fifo_within(pushes: list[tuple[str, str]], order: list[str]) -> None:
    q: FairQueue[str] = FairQueue()
    for party, item in pushes:
        q.push(party, item)
    assert len(q) == len(pushes)
    assert drain(q) == order
    assert len(q) == 0


def test_a_party_that_empties_joins_behind_the_parties_not_served_since() -> None:
    q: FairQueue[str] = FairQueue()
    for party, item in [("A", "a1"), ("B", "b1"), ("B", "b2")]:
        q.push(party, item)
    assert q.pop() == "a1"  # A leaves the queue, served
    q.push("A", "a2")  # …and comes back behind B, which has not been served since
    assert drain(q) == ["b1", "a2", "b2"]


def test_a_slot_taken_at_once_counts_as_the_partys_turn() -> None:
    """A's first request took the free slot (no queue); A queues more, then B comes: B is next."""
    q: FairQueue[str] = FairQueue()
    q.admitted("A")
    for party, item in [("A", "a2"), ("A", "a3"), ("B", "b1")]:
        q.push(party, item)
    assert drain(q) == ["b1", "a2", "a3"]


def test_the_least_recently_admitted_party_goes_first() -> None:
    q: FairQueue[str] = FairQueue()
    for party in ("C", "A", "B"):  # admitted at once, in this order
        q.admitted(party)
    for party, item in [("A", "a1"), ("B", "b1"), ("C", "c1"), ("D", "d1")]:
        q.push(party, item)
    assert drain(q) == ["d1", "c1", "a1", "b1"]  # D never admitted, then by oldest turn


def test_removing_a_waiter_keeps_the_others_order_and_count() -> None:
    q: FairQueue[str] = FairQueue()
    for party, item in [("A", "a1"), ("A", "a2"), ("B", "b1")]:
        q.push(party, item)
    assert q.remove("A", "a1")
    assert not q.remove("A", "a1")  # gone already
    assert not q.remove("C", "c1")  # never there
    assert (len(q), q.count("A"), q.count("B")) == (2, 1, 1)
    assert drain(q) == ["a2", "b1"]


@pytest.mark.parametrize(("length", "own", "max_length", "why"), [
    (0, 0, 1, None),
    (9, 9, 10, None),  # room left, however many are the caller's
    (10, 3, 10, "queue_full"),  # others wait too: the model is overloaded
    (10, 10, 10, "party_fills_queue"),  # the caller alone fills it
    (12, 12, 10, "party_fills_queue"),
])
def test_refusal(length: int, own: int, max_length: int, why: str | None) -> None:
    assert refusal(length, own, max_length) == why


# An operation: push a waiter of party p (0..3), pop one, or remove the i-th waiter still queued.
ops = st.lists(st.one_of(st.tuples(st.just("push"), st.integers(0, 3)), st.tuples(st.just("pop"), st.just(0)),
                         st.tuples(st.just("remove"), st.integers(0, 30)),
                         st.tuples(st.just("admit"), st.integers(0, 3))), max_size=120)


@settings(max_examples=300, deadline=None)
@given(ops)
def test_fifo_within_a_party_and_the_round_robin_bound(operations: list[tuple[str, int]]) -> None:
    """For any pushes, pops, removals and admissions at once (only while nobody waits, as in the
    gateway's fast path): each party's waiters leave in the order they came, and a waiter k-th in its
    party's queue when it came leaves after at most k + 1 pops of any other party."""
    q: FairQueue[tuple[int, int]] = FairQueue()
    queued: list[tuple[int, int]] = []  # (party, serial), in push order
    ahead: dict[tuple[int, int], int] = {}  # waiter → its party's waiters ahead of it when it came
    others_popped: dict[tuple[int, int], dict[int, int]] = {}  # waiter → pops per other party since
    popped: list[tuple[int, int]] = []
    for serial, (op, arg) in enumerate(operations):
        if op == "push":
            item = (arg, serial)
            ahead[item] = q.count(arg)
            others_popped[item] = {}
            q.push(arg, item)
            queued.append(item)
        elif op == "pop":
            got = q.pop()
            assert (got is None) == (not queued)
            if got is None:
                continue
            queued.remove(got)
            popped.append(got)
            for waiter in queued:
                if waiter[0] != got[0]:
                    others_popped[waiter][got[0]] = others_popped[waiter].get(got[0], 0) + 1
            assert all(n <= ahead[got] + 1 for n in others_popped[got].values())
        elif op == "admit":
            if not queued:
                q.admitted(arg)
        elif queued:
            victim = queued[arg % len(queued)]
            assert q.remove(victim[0], victim)
            queued.remove(victim)
        assert len(q) == len(queued) == sum(q.count(p) for p in range(4))
    popped.extend(drain(q))  # type: ignore[arg-type]
    for party in range(4):
        mine = [w for w in popped if w[0] == party]
        assert mine == sorted(mine, key=lambda w: w[1])  # FIFO within the party
