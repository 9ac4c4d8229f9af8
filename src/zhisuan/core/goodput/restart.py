"""What the platform does when a job's attempt fails: restart (after how long, avoiding which
hardware) or stop — and whose fault it was.

Rules, in order:

1. A stop the user asked for (cancel) or a success is not a failure: never restarted here.
2. ``max_restarts`` bounds restarts of one job whatever the cause (a job that cannot run anywhere
   must not loop forever).
3. Hardware and platform failures (``node_fault``, ``device_fault``, ``agent_lost``, ``hang``,
   ``preempted``) restart, avoiding the nodes involved (they are cordoned separately).
4. A failure of the program itself (``exit_nonzero``) with the same ``signature`` (e.g. exit code and
   last error line) seen on ``same_failure_limit`` attempts that ran on *pairwise different* node sets
   is the user's error: it would fail anywhere, so it is not retried. The same signature on the same
   nodes is not evidence — the node may be the cause — so it restarts on other nodes.
5. The delay before restart attempt k (k = 1, 2, …) is ``min(backoff_max_s, backoff_base_s · 2^(k−1))``
   for program failures; hardware failures restart at once (the faulty node is already excluded, and
   every second waiting is lost training time).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

HARDWARE_KINDS = frozenset({"node_fault", "device_fault", "agent_lost", "hang", "preempted"})
PROGRAM_KINDS = frozenset({"exit_nonzero"})
FAILURE_KINDS = HARDWARE_KINDS | PROGRAM_KINDS


@dataclass(frozen=True)
class RestartPolicy:
    max_restarts: int = 5
    backoff_base_s: float = 10.0
    backoff_max_s: float = 600.0
    same_failure_limit: int = 2

    def __post_init__(self) -> None:
        if self.max_restarts < 0:
            raise ValueError("max_restarts must be ≥ 0")
        if self.backoff_base_s < 0 or self.backoff_max_s < self.backoff_base_s:
            raise ValueError("backoff must satisfy 0 ≤ backoff_base_s ≤ backoff_max_s")
        if self.same_failure_limit < 1:
            raise ValueError("same_failure_limit must be ≥ 1")


@dataclass(frozen=True)
class Failure:
    """One failed attempt: what kind, a signature comparing program failures, the nodes it ran on."""

    kind: str
    nodes: frozenset[str]
    signature: str = ""

    def __post_init__(self) -> None:
        if self.kind not in FAILURE_KINDS:
            raise ValueError(f"kind must be one of {sorted(FAILURE_KINDS)} (got {self.kind!r})")


@dataclass(frozen=True)
class RestartDecision:
    restart: bool
    delay_s: float
    reason: str
    user_error: bool = False
    avoid_nodes: frozenset[str] = frozenset()


def decide_restart(policy: RestartPolicy, earlier: Sequence[Failure], latest: Failure) -> RestartDecision:
    """Decide for ``latest`` given the job's ``earlier`` failures (oldest first)."""
    restarts_so_far = len(earlier)
    if restarts_so_far >= policy.max_restarts:
        return RestartDecision(False, 0.0, f"gave up after {restarts_so_far} restarts (max_restarts "
                                           f"{policy.max_restarts}); last failure: {describe(latest)}")
    if latest.kind in PROGRAM_KINDS:
        same = [f for f in (*earlier, latest) if f.kind == latest.kind and f.signature == latest.signature]
        if _distinct_hardware(same) >= policy.same_failure_limit:
            return RestartDecision(False, 0.0, f"user error: {describe(latest)} on {len(same)} attempts on "
                                               "different nodes — it would fail anywhere", user_error=True)
        k = 1 + sum(1 for f in earlier if f.kind in PROGRAM_KINDS)
        delay = min(policy.backoff_max_s, policy.backoff_base_s * 2 ** min(k - 1, 32))
        return RestartDecision(True, delay, f"restart {restarts_so_far + 1} in {delay:g} s on other nodes "
                                            f"after {describe(latest)}", avoid_nodes=latest.nodes)
    return RestartDecision(True, 0.0, f"restart {restarts_so_far + 1} at once on healthy nodes after "
                                      f"{describe(latest)}", avoid_nodes=latest.nodes)


def _distinct_hardware(failures: Sequence[Failure]) -> int:
    """The largest number of these failures whose node sets are pairwise disjoint (greedy, in order:
    exact for the one-or-two-node-set histories seen in practice, never an overcount)."""
    chosen: list[frozenset[str]] = []
    for f in failures:
        if all(not (f.nodes & c) for c in chosen):
            chosen.append(f.nodes)
    return len(chosen)


def describe(failure: Failure) -> str:
    where = ", ".join(sorted(failure.nodes)) or "no node"
    what = failure.kind.replace("_", " ")
    return f"{what} ({failure.signature}) on {where}" if failure.signature else f"{what} on {where}"
