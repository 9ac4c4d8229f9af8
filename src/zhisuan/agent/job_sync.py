"""The node agent's half of the ``local`` engine: run the workers the control plane assigns to this node.

One ``step``: for each assignment, ``ensure`` it runs (idempotent — a restarted agent adopts what is
already running rather than starting it twice) or ``stop`` it; then report every worker's state and
the log bytes the control plane does not have yet (from the offsets it returned), at most
``LOG_BYTES_PER_STEP`` per stream; ended workers are forgotten once their logs are all delivered.
The transport is a function (HTTP for ``zhisuan agent``, a direct call for the one-box agent).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from zhisuan.agent.jobs import WorkerLaunch, WorkerRunner, WorkerStatus

log = logging.getLogger("zhisuan.agent.jobs")

LOG_BYTES_PER_STEP = 256 * 1024
ENDED = ("succeeded", "failed", "cancelled", "lost")
# (report body) -> the node's assignments after applying it
Exchange = Callable[[dict[str, Any]], list[dict[str, Any]]]


def launch_of(raw: dict[str, Any]) -> WorkerLaunch:
    return WorkerLaunch(key=raw["key"], tenant=raw["tenant"], command=tuple(raw.get("command") or ()),
                        script=raw.get("script"), env=dict(raw.get("env") or {}), workdir=raw.get("workdir"),
                        cpu_milli=int(raw["cpu_milli"]), memory_mib=int(raw["memory_mib"]),
                        max_run_s=int(raw["max_run_s"]))


class JobSync:
    def __init__(self, runner: WorkerRunner, node: str, exchange: Exchange, stop_grace_s: float = 5.0,
                 on_change: Callable[[], None] | None = None) -> None:
        self.runner, self.node, self.exchange, self.stop_grace_s = runner, node, exchange, stop_grace_s
        self.on_change = on_change  # told when a worker's state changed (the one box wakes its scheduler)
        self.last_states: dict[str, str] = {}
        self.assigned: list[dict[str, Any]] = []
        self.delivered: dict[tuple[str, str], int] = {}  # (key, stream) -> bytes the control plane has
        self.refused: dict[str, WorkerStatus] = {}  # launches the runner refused (bad workdir …)
        self.in_flight: dict[tuple[str, str], int] = {}  # bytes sent in the report being exchanged

    def apply(self, assignments: list[dict[str, Any]]) -> None:
        self.assigned = assignments
        for item in assignments:
            key = item["key"]
            self.delivered[(key, "stdout")] = int(item.get("stdout_offset", 0))
            self.delivered[(key, "stderr")] = int(item.get("stderr_offset", 0))
            try:
                if item["desired"] == "stop":
                    self.runner.stop(key, self.stop_grace_s)
                elif key not in self.refused:
                    self.runner.ensure(launch_of(item["launch"]))
            except ValueError as error:  # the runner refuses a launch it cannot run safely
                self.refused[key] = WorkerStatus(key=key, state="failed", exit_code=None, pid=None, started_at=None,
                                                 ended_at=None, reason=f"refused by the agent: {error}", notes=())
            except Exception:
                log.exception("worker %s: could not apply %s", key, item["desired"])

    def log_piece(self, key: str, stream: str) -> dict[str, Any] | None:
        offset = self.delivered.get((key, stream), 0)
        text, next_offset, _complete = self.runner.read_log(key, stream, offset, LOG_BYTES_PER_STEP)
        if not text:
            return None
        self.in_flight[(key, stream)] = next_offset
        return {"offset": offset, "data": text}

    def reports(self) -> list[dict[str, Any]]:
        assigned = {item["key"] for item in self.assigned}
        out = []
        statuses = {s.key: s for s in self.runner.statuses()} | self.refused
        for key, status in statuses.items():
            if key not in assigned and status.state not in ENDED:
                continue  # not ours to report (another control plane's leftovers are stopped by it)
            out.append({
                "key": key, "state": status.state, "exit_code": status.exit_code, "reason": status.reason[:1000],
                "notes": list(status.notes)[:16],
                "started_at": status.started_at.isoformat() if status.started_at else None,
                "ended_at": status.ended_at.isoformat() if status.ended_at else None,
                "stdout": self.log_piece(key, "stdout") if key not in self.refused else None,
                "stderr": self.log_piece(key, "stderr") if key not in self.refused else None,
                "progress": self.runner.progress(key) if key not in self.refused else None,
            })
        for item in self.assigned:  # told to stop a worker this machine does not have (a wiped root)
            if item["desired"] == "stop" and item["key"] not in statuses:
                out.append({"key": item["key"], "state": "lost", "exit_code": None,
                            "reason": "not on this machine", "notes": []})
        return out

    def forget_delivered(self) -> None:
        assigned = {item["key"] for item in self.assigned}
        for status in self.runner.statuses():
            if status.state in ENDED and status.key not in assigned:
                done = [self.runner.read_log(status.key, stream, self.delivered.get((status.key, stream), 0), 1)[2]
                        for stream in ("stdout", "stderr")]
                if all(done):
                    self.runner.forget(status.key)
        for key in [k for k in self.refused if k not in assigned]:
            del self.refused[key]

    def send(self) -> list[dict[str, Any]]:
        """One exchange; bytes it carried count as delivered (the answer corrects assigned workers)."""
        self.in_flight = {}
        answer = self.exchange({"node": self.node, "workers": self.reports()})
        self.delivered.update(self.in_flight)
        return answer

    def step(self) -> None:
        """Report, take the answer's assignments, apply them, and report again what changed."""
        self.apply(self.send())
        self.apply(self.send())
        self.forget_delivered()
        states = {s.key: s.state for s in self.runner.statuses()}
        if states != self.last_states and self.on_change is not None:
            self.on_change()
        self.last_states = states
