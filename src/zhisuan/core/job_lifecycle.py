"""How a job's state follows its engine's: one pure function, table-tested.

The job lifecycle is queued → admitted → starting → running → succeeded | failed | cancelled, and
preempted → queued again. Once admitted, the engine is the source of truth; ``follow_engine`` says
what the engine's view (``EngineView``) and the control plane's own request to stop
(``stop_requested``: "cancel" or "preempt") mean for the job:

    engine pending            → starting (unchanged)
    engine running            → running
    engine succeeded          → succeeded                              (ledger released)
    engine failed/cancelled/lost, stop "preempt"  → preempted → queued, attempt + 1  (released)
    engine failed/cancelled/lost, stop "cancel"   → cancelled                        (released)
    engine failed/cancelled/lost, stop "fault"    → failed, platform fault (a node it ran on was cordoned)
    engine failed/cancelled/lost, stop "hang"     → failed ("hang": no progress within hang_timeout_s)
    engine failed             → failed (exit code, reason); platform fault if the engine says so
    engine cancelled          → cancelled on the site, outside zhisuan (counted as a platform fault:
                                the tenant did not ask for it)
    engine lost               → failed, platform fault ("the engine no longer knows the job")

Platform faults are not billed (``billable`` False on the transition): node failure, an engine
that lost or cancelled the job by itself, a Slurm NODE_FAIL, a Kubernetes eviction.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class EngineView:
    """What a driver reported (``drivers.base.EngineJobState`` has these fields)."""

    state: str  # pending | running | succeeded | failed | cancelled | lost
    reason: str = ""
    exit_code: int | None = None
    platform_fault: bool = False


@dataclass(frozen=True)
class Transition:
    state: str  # the job's next state ("queued" after a preemption)
    reason: str
    ends_attempt: bool  # the ledger holds of this attempt are released
    billable: bool = True  # False: the attempt's time is a platform fault and is not billed
    preempted: bool = False


def follow_engine(job_state: str, stop_requested: str | None, engine: EngineView) -> Transition | None:
    """The job's transition for what the engine reports, or None when nothing changes."""
    if engine.state == "pending":
        return None
    if engine.state == "running":
        return None if job_state == "running" else Transition("running", engine.reason or "running", False)
    if engine.state == "succeeded":
        return Transition("succeeded", engine.reason or "exit code 0", True)
    if stop_requested == "preempt":
        return Transition("queued", "preempted: its capacity was reclaimed; queued again", True, preempted=True)
    if stop_requested == "cancel":
        return Transition("cancelled", "cancelled", True)
    if stop_requested == "fault":
        return Transition("failed", "platform fault: a node it ran on was cordoned for a fault (not billed)", True,
                          billable=False)
    if stop_requested == "hang":
        return Transition("failed", "hang: no progress report within the job's hang_timeout_s; stopped", True)
    if engine.state == "failed":
        code = f"exit code {engine.exit_code}" if engine.exit_code is not None else "failed"
        reason = engine.reason or code
        if engine.platform_fault:
            return Transition("failed", f"platform fault: {reason} (not billed)", True, billable=False)
        return Transition("failed", reason, True)
    if engine.state == "cancelled":
        return Transition("cancelled", f"cancelled on the site, outside zhisuan: {engine.reason or 'no reason given'}"
                          " (not billed)", True, billable=False)
    return Transition("failed", f"platform fault: the engine no longer knows the job ({engine.reason or 'lost'}; "
                      "not billed)", True, billable=False)
