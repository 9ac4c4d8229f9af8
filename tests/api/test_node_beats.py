"""Cheap heartbeats (inventory.beats): a beat that changes nothing is buffered, its time written by the
next flush — and liveness stays as documented: unreachable 30 s after the last beat (buffered or not),
ready again on the next beat; another API process's buffer holds the monitor back."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import event, select, update

from tests.api.conftest import Api, Clock, h100_node
from zhisuan.core.liveness import listening_since
from zhisuan.identity.models import ApiKey
from zhisuan.inventory.beats import BeatBuffer, mark_flushed
from zhisuan.inventory.models import BeatFlush, Node
from zhisuan.loops.heartbeat_monitor import monitor_pass
from zhisuan.store.base import transaction

TIMEOUT = timedelta(seconds=30)
INTERVAL = timedelta(seconds=10)
HOLDER = "this-process"
HEALTHY = {"node": "gpu-a", "devices": [{"index": 0, "healthy": True}, {"index": 1, "healthy": True}]}
# The same report in other bytes: not a known beat (inventory.known_beats), still one that changes nothing.
HEALTHY_SPELT_OUT = {"node": "gpu-a", "devices": [{"index": 0, "healthy": True, "health_detail": ""},
                                                  {"index": 1, "healthy": True, "health_detail": ""}]}


@pytest.fixture
def buffered(world: Api) -> Iterator[BeatBuffer]:
    """The world's app with the beat buffer a serving process has (its flusher is driven by hand here)."""
    ctx = world.client.app.state.ctx  # type: ignore[attr-defined]
    ctx.beats = BeatBuffer(HOLDER, timedelta(seconds=300))
    yield ctx.beats
    ctx.beats = None


def sessions(api: Api) -> Any:
    return api.client.app.state.ctx.sessions  # type: ignore[attr-defined]


def flush(api: Api, beats: BeatBuffer, clock: Clock) -> list[int]:
    return beats.flush(sessions(api), clock())


def run_monitor(api: Api, clock: Clock, beats: BeatBuffer | None, started: Any = None) -> list[int]:
    heard_since = None if started is None else listening_since(started, INTERVAL)
    return monitor_pass(sessions(api), clock(), TIMEOUT, HOLDER, beats, heard_since)


def stored(api: Api) -> Node:
    with transaction(sessions(api)) as session:
        node = session.execute(select(Node).where(Node.name == "gpu-a")).scalar_one()
        session.expunge(node)
        return node


class Statements:
    def __init__(self, api: Api) -> None:
        self.engine = api.client.app.state.engine  # type: ignore[attr-defined]
        self.seen: list[str] = []

    def __enter__(self) -> list[str]:
        event.listen(self.engine, "before_cursor_execute", self.record)
        return self.seen

    def __exit__(self, *_: object) -> None:
        event.remove(self.engine, "before_cursor_execute", self.record)

    def record(self, _conn: Any, _cursor: Any, statement: str, *_: Any) -> None:
        self.seen.append(statement.lstrip().split()[0].upper())


def test_an_unchanged_beat_is_one_read_and_its_time_is_written_by_the_flush(
        world: Api, clock: Clock, buffered: BeatBuffer) -> None:
    registered = world.ok("POST", "/agent/register", "agent1", h100_node("gpu-a", 2))
    world.ok("POST", "/agent/heartbeat", "agent1", HEALTHY)  # the first: in full (key hashed, digest kept)
    first = stored(world).last_heartbeat_at
    clock.advance(seconds=10)
    with Statements(world) as statements:
        ack = world.ok("POST", "/agent/heartbeat", "agent1", HEALTHY_SPELT_OUT)
    assert ack == {"node_id": registered["node_id"], "status": "ready", "heartbeat_interval_s": 10.0}
    assert [s for s in statements if s not in ("BEGIN", "ROLLBACK", "COMMIT")] == ["SELECT"]
    assert stored(world).last_heartbeat_at == first  # not written yet
    assert buffered.pending(registered["node_id"]) == clock()
    assert flush(world, buffered, clock) == []
    assert stored(world).last_heartbeat_at == clock()
    assert buffered.pending(registered["node_id"]) is None


def test_a_buffered_beat_keeps_its_node_ready_and_silence_still_makes_it_unreachable(
        world: Api, clock: Clock, buffered: BeatBuffer) -> None:
    world.ok("POST", "/agent/register", "agent1", h100_node("gpu-a", 2))
    world.ok("POST", "/agent/heartbeat", "agent1", HEALTHY)
    clock.advance(seconds=20)
    world.ok("POST", "/agent/heartbeat", "agent1", HEALTHY)  # buffered only
    clock.advance(seconds=15)  # 35 s after the last written beat, 15 s after the buffered one
    assert run_monitor(world, clock, buffered) == []  # the monitor writes the buffer before it decides
    assert stored(world).status == "ready"
    clock.advance(seconds=16)  # 31 s of silence
    assert len(run_monitor(world, clock, buffered)) == 1
    assert stored(world).status == "unreachable"
    ack = world.ok("POST", "/agent/heartbeat", "agent1", HEALTHY)  # a state change: the full path, at once
    assert ack["status"] == "ready" and stored(world).status == "ready"


def test_without_the_flush_the_same_silence_would_be_misread(
        world: Api, clock: Clock, buffered: BeatBuffer) -> None:
    """Why the monitor must take the buffer into account: ignoring it marks a beating node."""
    world.ok("POST", "/agent/register", "agent1", h100_node("gpu-a", 2))
    world.ok("POST", "/agent/heartbeat", "agent1", HEALTHY)
    clock.advance(seconds=20)
    world.ok("POST", "/agent/heartbeat", "agent1", HEALTHY)
    clock.advance(seconds=15)
    assert len(run_monitor(world, clock, None)) == 1


def test_another_process_that_has_not_flushed_holds_the_monitor_back(
        world: Api, clock: Clock, buffered: BeatBuffer) -> None:
    world.ok("POST", "/agent/register", "agent1", h100_node("gpu-a", 2))
    with transaction(sessions(world)) as session:  # a second API process, written up to 10 s from now
        session.add(BeatFlush(holder="other-process", flushed_through=clock() + timedelta(seconds=10)))
    clock.advance(seconds=35)
    # Its buffer may hold a beat of this node from the last 25 s: silent for sure only 25 s.
    assert run_monitor(world, clock, buffered) == []
    clock.advance(seconds=20)  # it has not flushed for 45 s (> timeout): gone, its mark no longer counts
    assert len(run_monitor(world, clock, buffered)) == 1


def test_a_flush_brings_back_a_node_marked_unreachable_before_its_buffered_beat_was_written(
        world: Api, clock: Clock, buffered: BeatBuffer) -> None:
    registered = world.ok("POST", "/agent/register", "agent1", h100_node("gpu-a", 2))
    world.ok("POST", "/agent/heartbeat", "agent1", HEALTHY)
    clock.advance(seconds=20)
    beat_at = clock()
    world.ok("POST", "/agent/heartbeat", "agent1", HEALTHY)  # buffered
    clock.advance(seconds=15)
    assert len(run_monitor(world, clock, None)) == 1  # a monitor that did not see it (a process counted gone)
    assert flush(world, buffered, clock) == [registered["node_id"]]
    node = world.ok("GET", "/nodes/s1/gpu-a", "operator")
    assert node["status"] == "ready" and node["last_heartbeat_at"].startswith(beat_at.isoformat()[:19])


def other_process(world: Api, clock: Clock, flushed_ago_s: float = 1.0) -> BeatBuffer:
    """A second API process serving the beats (``--workers 2``): its own buffer, flushed a moment ago."""
    ctx = world.client.app.state.ctx  # type: ignore[attr-defined]
    ctx.beats = BeatBuffer("other-process", timedelta(seconds=300))
    ctx.verifier._verified.clear()
    with transaction(sessions(world)) as session:
        mark_flushed(session, "other-process", clock() - timedelta(seconds=flushed_ago_s))
    return ctx.beats


@pytest.mark.parametrize("path", ["known", "first", "quick"])
def test_a_beat_acknowledged_by_another_process_after_a_long_silence_is_never_marked_for_it(
        world: Api, clock: Clock, path: str) -> None:
    """Two API processes on one database. The other one serves gpu-a: a beat, then 40 s of silence
    (its agent's beats were lost), then a beat it acknowledges — answered from memory (``known``), as
    a first beat checked in a batch (``first``, a new process), or after its one read (``quick``).
    This process's monitor then runs while the other process's last flush mark (1 s ago) is older
    than that beat. The beat ended the silence before the monitor judged it: the node stays ready —
    a buffered beat would have left the node 40 s quiet as far as the database and the mark showed,
    and it would have been marked unreachable after its agent was told it was heard."""
    from zhisuan.inventory.beats import quick_beat
    from zhisuan.inventory.schemas import Heartbeat

    mine = BeatBuffer(HOLDER, timedelta(seconds=300))
    other = other_process(world, clock)
    world.ok("POST", "/agent/register", "agent1", h100_node("gpu-a", 2))
    world.ok("POST", "/agent/heartbeat", "agent1", HEALTHY)  # in full (now a known beat there)
    clock.advance(seconds=40)
    if path == "first":
        other = other_process(world, clock)  # restarted: nothing known, nothing vouched
    else:
        with transaction(sessions(world)) as session:
            mark_flushed(session, "other-process", clock() - timedelta(seconds=1))
    if path == "quick":
        ctx = world.client.app.state.ctx  # type: ignore[attr-defined]
        answered = quick_beat(ctx, other, world.keys["agent1"], Heartbeat.model_validate(HEALTHY))
        assert answered is not None and answered[0].status == "ready"
    else:
        assert world.ok("POST", "/agent/heartbeat", "agent1", HEALTHY)["status"] == "ready"
    assert run_monitor(world, clock, mine) == []
    assert stored(world).status == "ready"
    flush(world, other, clock)
    clock.advance(seconds=31)  # silent again for longer than the timeout: marked, as documented
    with transaction(sessions(world)) as session:
        mark_flushed(session, "other-process", clock())
    assert len(run_monitor(world, clock, mine)) == 1 and stored(world).status == "unreachable"


def test_a_known_beat_of_a_node_this_process_has_not_heard_for_a_timeout_is_checked_again(
        world: Api, clock: Clock, buffered: BeatBuffer) -> None:
    """Its node may have been marked unreachable by another process meanwhile: the beat is checked
    (and the node brought back by the full path) before it is answered, not answered from memory."""
    world.ok("POST", "/agent/register", "agent1", h100_node("gpu-a", 2))
    world.ok("POST", "/agent/heartbeat", "agent1", HEALTHY)
    clock.advance(seconds=31)
    assert len(run_monitor(world, clock, None)) == 1  # another process's monitor: still known here
    assert len(buffered.known) == 1
    ack = world.ok("POST", "/agent/heartbeat", "agent1", HEALTHY)
    assert ack["status"] == "ready" and stored(world).status == "ready"  # at once, not at the next flush
    assert buffered.take() == ({}, set())  # written by the full path, nothing left for the flush


def test_a_changed_report_is_applied_at_once(world: Api, clock: Clock, buffered: BeatBuffer) -> None:
    world.ok("POST", "/agent/register", "agent1", h100_node("gpu-a", 2))
    world.ok("POST", "/agent/heartbeat", "agent1", HEALTHY)
    world.ok("POST", "/agent/heartbeat", "agent1", {"node": "gpu-a", "devices": [
        {"index": 0, "healthy": True}, {"index": 1, "healthy": True, "health_detail": "ECC: 1 corrected"}]})
    assert world.ok("GET", "/nodes/s1/gpu-a", "operator")["devices"][1]["health_detail"] == "ECC: 1 corrected"
    world.ok("POST", "/agent/heartbeat", "agent1", {"node": "gpu-a", "devices": [
        {"index": 0, "healthy": True}, {"index": 1, "healthy": False, "health_detail": "XID 79"}]})
    node = world.ok("GET", "/nodes/s1/gpu-a", "operator")
    assert node["devices"][1]["health"] == "unhealthy" and node["cordon_reason"] == "device 1: XID 79"
    # A re-registration may change the devices: the next beat, same report as before, is applied in full.
    world.ok("POST", "/agent/register", "agent1", h100_node("gpu-a", 2))
    clock.advance(seconds=1)  # the full path writes the beat's time (a cordoned device keeps the digest unset)
    with Statements(world) as statements:
        world.ok("POST", "/agent/heartbeat", "agent1", HEALTHY)
    assert "UPDATE" in statements


def test_a_revoked_key_is_refused_on_the_next_beat(world: Api, clock: Clock, buffered: BeatBuffer) -> None:
    world.ok("POST", "/agent/register", "agent1", h100_node("gpu-a", 2))
    world.ok("POST", "/agent/heartbeat", "agent1", HEALTHY)
    world.ok("POST", "/agent/heartbeat", "agent1", HEALTHY_SPELT_OUT)  # fast: the grant is cached
    key_id = world.keys["agent1"].split("_")[1]
    with transaction(sessions(world)) as session:
        session.execute(update(ApiKey).where(ApiKey.key_id == key_id).values(revoked_at=clock()))
    refused = world.call("POST", "/agent/heartbeat", "agent1", HEALTHY)  # not the known bytes: checked
    assert refused.status_code == 401 and "revoked" in refused.text
    other_node = world.call("POST", "/agent/heartbeat", "agent2", HEALTHY)  # another site's key: not its node
    assert other_node.status_code == 404


def test_a_repeated_beat_is_answered_from_memory_and_its_time_written_by_the_flush(
        world: Api, clock: Clock, buffered: BeatBuffer) -> None:
    registered = world.ok("POST", "/agent/register", "agent1", h100_node("gpu-a", 2))
    world.ok("POST", "/agent/heartbeat", "agent1", HEALTHY)  # applied in full, then known
    clock.advance(seconds=10)
    with Statements(world) as statements:
        ack = world.ok("POST", "/agent/heartbeat", "agent1", HEALTHY)
    assert ack == {"node_id": registered["node_id"], "status": "ready", "heartbeat_interval_s": 10.0}
    assert statements == []
    assert buffered.pending(registered["node_id"]) == clock()
    assert flush(world, buffered, clock) == []
    assert stored(world).last_heartbeat_at == clock()


def test_a_revoked_key_known_beat_is_acknowledged_until_the_flush_but_never_written(
        world: Api, clock: Clock, buffered: BeatBuffer) -> None:
    world.ok("POST", "/agent/register", "agent1", h100_node("gpu-a", 2))
    world.ok("POST", "/agent/heartbeat", "agent1", HEALTHY)
    written = stored(world).last_heartbeat_at
    key_id = world.keys["agent1"].split("_")[1]
    with transaction(sessions(world)) as session:
        session.execute(update(ApiKey).where(ApiKey.key_id == key_id).values(revoked_at=clock()))
    clock.advance(seconds=10)
    world.ok("POST", "/agent/heartbeat", "agent1", HEALTHY)  # from memory: the revocation is not seen yet
    flush(world, buffered, clock)  # the sweep sees it: the beat is dropped, the key forgotten
    assert stored(world).last_heartbeat_at == written
    refused = world.call("POST", "/agent/heartbeat", "agent1", HEALTHY)
    assert refused.status_code == 401 and "revoked" in refused.text


def test_a_node_cordoned_by_hand_leaves_memory_at_the_flush_and_its_next_beat_says_so(
        world: Api, clock: Clock, buffered: BeatBuffer) -> None:
    world.ok("POST", "/agent/register", "agent1", h100_node("gpu-a", 2))
    world.ok("POST", "/agent/heartbeat", "agent1", HEALTHY)
    world.ok("POST", "/nodes/s1/gpu-a/cordon", "operator", {"reason": "maintenance"})
    clock.advance(seconds=10)
    world.ok("POST", "/agent/heartbeat", "agent1", HEALTHY)
    flush(world, buffered, clock)
    assert stored(world).last_heartbeat_at == clock()  # a valid beat: its time is kept
    clock.advance(seconds=10)
    with Statements(world) as statements:
        world.ok("POST", "/agent/heartbeat", "agent1", HEALTHY)
    assert "SELECT" in statements and stored(world).last_heartbeat_at == clock()


def test_without_a_recent_sweep_nothing_is_answered_from_memory(
        world: Api, clock: Clock, buffered: BeatBuffer) -> None:
    world.ok("POST", "/agent/register", "agent1", h100_node("gpu-a", 2))
    world.ok("POST", "/agent/heartbeat", "agent1", HEALTHY)
    buffered.known.swept_at -= buffered.known.max_unswept_s + 1  # the flusher has been failing
    with Statements(world) as statements:
        world.ok("POST", "/agent/heartbeat", "agent1", HEALTHY)
    assert statements


def test_a_registration_makes_the_next_beat_go_in_full(world: Api, clock: Clock, buffered: BeatBuffer) -> None:
    world.ok("POST", "/agent/register", "agent1", h100_node("gpu-a", 2))
    world.ok("POST", "/agent/heartbeat", "agent1", HEALTHY)
    world.ok("POST", "/agent/register", "agent1", h100_node("gpu-a", 2))
    clock.advance(seconds=1)  # the full path writes the beat's time (a cordoned device keeps the digest unset)
    with Statements(world) as statements:
        world.ok("POST", "/agent/heartbeat", "agent1", HEALTHY)
    assert "UPDATE" in statements


def restart(world: Api) -> BeatBuffer:
    """A new serving process: nothing buffered, nothing known, no key checked yet."""
    ctx = world.client.app.state.ctx  # type: ignore[attr-defined]
    ctx.beats = BeatBuffer(HOLDER, timedelta(seconds=300))
    ctx.verifier._verified.clear()
    return ctx.beats


def test_after_a_restart_no_node_is_judged_before_an_interval_and_the_timeout(
        world: Api, clock: Clock, buffered: BeatBuffer) -> None:
    """Start-up grace (core.liveness): both nodes' last beats are 10 min old when the control plane
    comes back. gpu-b stays silent: unreachable 40 s after the start, not at the first pass. gpu-a
    beats 12 s after the start (its key checked in the beat's one read; written at once, as its last
    written beat is 612 s old — buffered, it could be marked for that silence): its silence then
    counts from that beat."""
    world.ok("POST", "/agent/register", "agent1", h100_node("gpu-a", 2))
    world.ok("POST", "/agent/register", "agent2", h100_node("gpu-b", 2))
    world.ok("POST", "/agent/heartbeat", "agent1", HEALTHY)
    world.ok("POST", "/agent/heartbeat", "agent2", {**HEALTHY, "node": "gpu-b"})
    clock.advance(seconds=600)  # the control plane was down
    beats, started = restart(world), clock()
    assert run_monitor(world, clock, beats, started) == []
    clock.advance(seconds=12)
    with Statements(world) as statements:
        world.ok("POST", "/agent/heartbeat", "agent1", HEALTHY)
    assert [s for s in statements if s not in ("BEGIN", "ROLLBACK", "COMMIT")] == ["SELECT", "UPDATE"]
    clock.advance(seconds=27)  # start + 39 s
    assert run_monitor(world, clock, beats, started) == []
    clock.advance(seconds=2)  # start + 41 s: gpu-b silent since the listening point (start + 10) for 31 s
    marked = run_monitor(world, clock, beats, started)
    assert [world.ok("GET", f"/nodes/{site}/{name}", "operator")["status"] for site, name in
            (("s1", "gpu-a"), ("s2", "gpu-b"))] == ["ready", "unreachable"] and len(marked) == 1
    clock.advance(seconds=2)  # start + 43 s: gpu-a's beat (start + 12) is 31 s old
    assert len(run_monitor(world, clock, beats, started)) == 1
    assert stored(world).status == "unreachable"


def test_a_restart_checks_a_digest_stored_key_in_the_beat_and_refuses_a_wrong_secret(
        world: Api, clock: Clock, buffered: BeatBuffer) -> None:
    world.ok("POST", "/agent/register", "agent1", h100_node("gpu-a", 2))
    world.ok("POST", "/agent/heartbeat", "agent1", HEALTHY)
    beats = restart(world)
    key_id = world.keys["agent1"].split("_")[1]
    world.keys["forged"] = f"zs_{key_id}_{'x' * 43}"
    refused = world.call("POST", "/agent/heartbeat", "forged", HEALTHY_SPELT_OUT)
    assert refused.status_code == 401 and beats.grant_of(world.keys["forged"]) is None
    assert beats.take() == ({}, set())  # nothing buffered for it
    ack = world.ok("POST", "/agent/heartbeat", "agent1", HEALTHY_SPELT_OUT)
    assert beats.grant_of(world.keys["agent1"]) == key_id and beats.pending(ack["node_id"]) == clock()


def heartbeat_count(world: Api, key: str) -> float:
    text = world.client.get("/metrics", headers={"Authorization": f"Bearer {key}"}).text
    prefix = 'zhisuan_http_requests_total{method="POST",route="/agent/heartbeat",status="200"} '
    return sum(float(line[len(prefix):]) for line in text.splitlines() if line.startswith(prefix))


def test_beats_answered_from_memory_are_counted_in_the_request_metrics(
        world: Api, clock: Clock, buffered: BeatBuffer) -> None:
    key = world.ok("POST", "/keys", "operator", {"name": "prometheus", "scopes": ["metrics"]})["key"]
    world.ok("POST", "/agent/register", "agent1", h100_node("gpu-a", 2))
    before = heartbeat_count(world, key)
    world.ok("POST", "/agent/heartbeat", "agent1", HEALTHY)  # in full
    for _ in range(3):
        with Statements(world) as statements:
            world.ok("POST", "/agent/heartbeat", "agent1", HEALTHY)  # from memory
        assert statements == []
    assert heartbeat_count(world, key) - before == 4


def test_first_beats_after_a_restart_are_checked_in_one_statement_per_batch(
        world: Api, clock: Clock, buffered: BeatBuffer) -> None:
    """inventory.first_beats: two steady nodes' first beats, a forged key and a changed report arrive
    together at a new process: one read for all four; the steady two answered and remembered, the
    other two left to the whole way (None)."""
    import asyncio
    import json

    from zhisuan.inventory.first_beats import FirstBeats

    world.ok("POST", "/agent/register", "agent1", h100_node("gpu-a", 2))
    world.ok("POST", "/agent/register", "agent2", h100_node("gpu-b", 2))
    world.ok("POST", "/agent/heartbeat", "agent1", HEALTHY)
    world.ok("POST", "/agent/heartbeat", "agent2", {**HEALTHY, "node": "gpu-b"})
    beats = restart(world)
    first = FirstBeats(sessions(world), beats, clock, 10.0, lambda client, now: False)
    key_id = world.keys["agent1"].split("_")[1]
    changed = {"node": "gpu-b", "devices": [{"index": 0, "healthy": True, "health_detail": "ECC: 1 corrected"},
                                            {"index": 1, "healthy": True}]}
    arrivals = [(world.keys["agent1"], HEALTHY), (world.keys["agent2"], {**HEALTHY, "node": "gpu-b"}),
                (f"zs_{key_id}_{'x' * 43}", HEALTHY), (world.keys["agent2"], changed)]

    async def arrive() -> list[Any]:
        return await asyncio.gather(*(first.resolve(token.encode(), json.dumps(body).encode(), "10.0.0.9")
                                      for token, body in arrivals))

    with Statements(world) as statements:
        answers = asyncio.run(arrive())
    assert [s for s in statements if s not in ("BEGIN", "ROLLBACK", "COMMIT")] == ["SELECT"]
    assert [answer is not None for answer in answers] == [True, True, False, False]
    assert json.loads(answers[0].ack) == {"node_id": stored(world).id, "status": "ready", "heartbeat_interval_s": 10.0}
    assert beats.pending(stored(world).id) == clock() and len(beats.known) == 2
