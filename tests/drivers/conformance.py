"""The conformance suite every workload driver passes (``zhisuan.drivers.base.Driver``).

Each driver's test module builds its driver against a real engine (or, for Kubernetes, the labelled
in-process fake of the API server) and calls ``check_driver`` with a ``SpecFactory`` that makes a
``LaunchSpec`` for that site's nodes. The checks are the interface's promises: idempotent submit,
states reaching an end, exit codes, logs per worker from an offset, cancel, unknown handles lost.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Sequence

from zhisuan.drivers.base import ENGINE_STATES, Driver, EngineJobState, LaunchSpec

# (key, command, workers) -> spec placed on this site's nodes
SpecFactory = Callable[[str, Sequence[str], int], LaunchSpec]


def wait_for(driver: Driver, handle: str, states: set[str], timeout_s: float = 60.0) -> EngineJobState:
    deadline = time.monotonic() + timeout_s
    state = driver.poll([handle])[handle]
    while state.state not in states:
        assert time.monotonic() < deadline, f"{handle}: still {state.state} ({state.reason}) after {timeout_s} s"
        time.sleep(0.2)
        state = driver.poll([handle])[handle]
    return state


def read_all(driver: Driver, handle: str, rank: int, stream: str) -> str:
    text, offset = "", 0
    for _ in range(1000):
        chunk = driver.logs(handle, rank, stream, offset, limit=7)  # tiny pages: offsets must chain
        text += chunk.data
        if chunk.next_offset == offset:
            return text
        assert chunk.next_offset > offset
        offset = chunk.next_offset
    raise AssertionError("log paging never ended")


def unique_key() -> str:
    return f"zs-{uuid.uuid4().int % 10**8}-1"


def check_submit_is_idempotent_and_runs(driver: Driver, make_spec: SpecFactory, workers: int = 1) -> None:
    spec = make_spec(unique_key(), ["sh", "-c", 'echo "hello rank=$RANK of $WORLD_SIZE"; echo oops >&2'], workers)
    handle = driver.submit(spec)
    assert driver.submit(spec) == handle, "a second submit of the same key must return the same handle"
    state = wait_for(driver, handle, {"succeeded", "failed", "lost"})
    assert state.state == "succeeded", state
    assert state.exit_code in (0, None)
    for rank in range(workers):
        out = read_all(driver, handle, rank, "stdout")
        assert f"hello rank={rank} of {workers}" in out, (rank, out)
        assert "oops" in read_all(driver, handle, rank, "stderr")
        # reading past the end returns nothing and does not move
        end = driver.logs(handle, rank, "stdout", 10**6)
        assert end.data == ""


def check_failure_keeps_exit_code(driver: Driver, make_spec: SpecFactory) -> None:
    handle = driver.submit(make_spec(unique_key(), ["sh", "-c", "exit 3"], 1))
    state = wait_for(driver, handle, {"succeeded", "failed", "lost"})
    assert state.state == "failed", state
    assert state.exit_code == 3, state
    assert not state.platform_fault


def check_cancel(driver: Driver, make_spec: SpecFactory) -> None:
    handle = driver.submit(make_spec(unique_key(), ["sleep", "120"], 1))
    wait_for(driver, handle, {"running"})
    driver.cancel(handle)
    state = wait_for(driver, handle, {"cancelled", "failed", "succeeded", "lost"})
    assert state.state == "cancelled", state
    driver.cancel(handle)  # no-op on an ended job


def check_unknown_handle_is_lost(driver: Driver) -> None:
    handle = "999999999"
    assert driver.poll([handle])[handle].state == "lost"
    driver.cancel(handle)  # no-op


def check_inventory(driver: Driver, expect_nodes: int, expect_devices_per_node: int) -> None:
    nodes = driver.import_inventory()
    assert len(nodes) == expect_nodes, nodes
    for node in nodes:
        assert len(node.devices) == expect_devices_per_node, node
        assert node.state in ("ready", "drained", "down")
        assert sorted(d.index for d in node.devices) == list(range(expect_devices_per_node))


def check_driver(driver: Driver, make_spec: SpecFactory, *, expect_nodes: int, expect_devices_per_node: int,
                 gang_workers: int = 1) -> None:
    """Every promise of the interface, in one call (each check also exists on its own)."""
    assert isinstance(driver, Driver)
    assert set(ENGINE_STATES) >= {"pending", "running", "succeeded", "failed", "cancelled", "lost"}
    check_inventory(driver, expect_nodes, expect_devices_per_node)
    check_submit_is_idempotent_and_runs(driver, make_spec, workers=gang_workers)
    check_failure_keeps_exit_code(driver, make_spec)
    check_cancel(driver, make_spec)
    check_unknown_handle_is_lost(driver)
