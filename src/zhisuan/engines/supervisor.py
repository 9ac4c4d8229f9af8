"""Replica supervisor: runs one engine replica as a local process and keeps it serving.

- start: picks a free loopback port, builds the launch plan for it, writes the plan's files,
  starts the process (own session and process group, killed by the kernel if this process dies,
  output to a log file, a pid file next to it), waits until its health endpoint answers — a
  leftover of a previous control plane under the same replica id is killed first
  (``engines.leftovers``);
- health: polls ``health_path`` every ``health_interval_s``; ``unhealthy_after`` failures in a row
  mark it unhealthy (the gateway stops routing to it); a replica unhealthy for
  ``restart_unhealthy_after_s`` is killed and restarted;
- restart: a process that exits is started again after a backoff that doubles from
  ``backoff_initial_s`` up to ``backoff_max_s`` and resets once a replica stayed healthy for
  ``stable_after_s``;
- drain and stop: the gateway is told to stop routing (``on_change`` with state ``draining``), the
  supervisor waits for in-flight requests (``inflight()``) to finish, up to ``drain_timeout_s``,
  then SIGTERM, then SIGKILL after ``kill_timeout_s``.

``on_change(replica)`` reports every state change (starting, healthy, unhealthy, draining,
stopped) with the replica's current port, so a router can follow it.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from zhisuan.engines.leftovers import die_with_parent, reap, write_pid_file
from zhisuan.engines.spec import LaunchPlan

PlanFactory = Callable[[int], LaunchPlan]


def free_loopback_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class SupervisorPolicy:
    health_interval_s: float = 1.0
    health_timeout_s: float = 2.0
    start_timeout_s: float = 120.0
    unhealthy_after: int = 3
    restart_unhealthy_after_s: float = 30.0
    backoff_initial_s: float = 0.5
    backoff_max_s: float = 30.0
    stable_after_s: float = 30.0
    drain_timeout_s: float = 30.0
    kill_timeout_s: float = 10.0


@dataclass
class ReplicaProcess:
    replica_id: str
    model: str
    state: str = "stopped"  # starting | healthy | unhealthy | draining | stopped
    port: int = 0
    pid: int | None = None
    restarts: int = 0
    last_exit: int | None = None
    base_url: str = ""
    # The key the running engine demands (see LaunchPlan.secret); never logged.
    secret: str | None = field(default=None, repr=False)


@dataclass
class ReplicaSupervisor:
    replica_id: str
    model: str
    plan_for_port: PlanFactory
    log_dir: Path
    policy: SupervisorPolicy = field(default_factory=SupervisorPolicy)
    on_change: Callable[[ReplicaProcess], None] = lambda r: None
    inflight: Callable[[], int] = lambda: 0
    replica: ReplicaProcess = field(init=False)
    _proc: asyncio.subprocess.Process | None = field(default=None, init=False)
    _task: asyncio.Task[None] | None = field(default=None, init=False)
    _stopping: bool = field(default=False, init=False)
    _healthy_event: asyncio.Event = field(default_factory=asyncio.Event, init=False)

    def __post_init__(self) -> None:
        self.replica = ReplicaProcess(self.replica_id, self.model)

    def _set(self, state: str) -> None:
        if self.replica.state != state:
            self.replica.state = state
            self.on_change(self.replica)
        if state == "healthy":
            self._healthy_event.set()

    async def start(self, wait_healthy: bool = True) -> ReplicaProcess:
        self._stopping = False
        self._task = asyncio.ensure_future(self._run())
        if wait_healthy:
            await asyncio.wait_for(self._healthy_event.wait(), self.policy.start_timeout_s)
        return self.replica

    @property
    def pid_file(self) -> Path:
        return self.log_dir / f"{self.replica_id}.pid"

    async def _spawn(self) -> asyncio.subprocess.Process:
        port = free_loopback_port()
        plan = self.plan_for_port(port)
        for path, content in plan.files.items():
            Path(path).parent.mkdir(parents=True, exist_ok=True)
            Path(path).write_text(content)
        self.log_dir.mkdir(parents=True, exist_ok=True)
        reap(self.pid_file)
        log = open(self.log_dir / f"{self.replica_id}.log", "ab")  # noqa: SIM115 - handed to the child
        try:
            proc = await asyncio.create_subprocess_exec(
                *plan.argv, env={**os.environ, **plan.environment()}, stdout=log, stderr=asyncio.subprocess.STDOUT,
                stdin=asyncio.subprocess.DEVNULL, start_new_session=True, preexec_fn=die_with_parent)
        finally:
            log.close()
        write_pid_file(self.pid_file, proc.pid)
        self.replica.port = port
        self.replica.pid = proc.pid
        self.replica.base_url = plan.base_url
        self.replica.secret = plan.secret
        self._health_url = plan.base_url + plan.health_path
        self._health_headers = {"Authorization": f"Bearer {plan.secret}"} if plan.secret else {}
        return proc

    async def _healthy(self, client: httpx.AsyncClient) -> bool:
        try:
            r = await client.get(self._health_url, headers=self._health_headers, timeout=self.policy.health_timeout_s)
            return r.status_code == 200
        except httpx.HTTPError:
            return False

    async def _run(self) -> None:
        backoff = self.policy.backoff_initial_s
        async with httpx.AsyncClient() as client:
            while not self._stopping:
                self._proc = proc = await self._spawn()
                self._set("starting")
                started = time.monotonic()
                healthy_since: float | None = None
                failures = 0
                unhealthy_since: float | None = None
                while not self._stopping and proc.returncode is None:
                    ok = await self._healthy(client)
                    now = time.monotonic()
                    if ok:
                        failures, unhealthy_since = 0, None
                        if self.replica.state != "draining":
                            self._set("healthy")
                        healthy_since = healthy_since or now
                        if now - healthy_since >= self.policy.stable_after_s:
                            backoff = self.policy.backoff_initial_s
                    else:
                        failures += 1
                        healthy_since = None
                        starting = self.replica.state == "starting"
                        if starting and now - started > self.policy.start_timeout_s:
                            await self._kill(proc)
                        elif not starting and failures >= self.policy.unhealthy_after:
                            if self.replica.state != "draining":
                                self._set("unhealthy")
                            unhealthy_since = unhealthy_since or now
                            if now - unhealthy_since >= self.policy.restart_unhealthy_after_s:
                                await self._kill(proc)
                    with contextlib.suppress(asyncio.TimeoutError):
                        await asyncio.wait_for(proc.wait(), self.policy.health_interval_s)
                if self._stopping:
                    break
                self.replica.last_exit = proc.returncode
                self.replica.restarts += 1
                self._set("unhealthy")
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, self.policy.backoff_max_s)

    async def _kill(self, proc: asyncio.subprocess.Process) -> None:
        if proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGTERM)
            try:
                await asyncio.wait_for(proc.wait(), self.policy.kill_timeout_s)
            except TimeoutError:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
                await proc.wait()
        # Workers the engine forked that outlived it are still in its group: kill them, drop the file.
        reap(self.pid_file)

    async def stop(self, drain: bool = True) -> None:
        """Drain (stop new traffic, let in-flight requests finish), then stop the process."""
        self._set("draining")
        if drain:
            deadline = time.monotonic() + self.policy.drain_timeout_s
            while self.inflight() > 0 and time.monotonic() < deadline:
                await asyncio.sleep(0.05)
        self._stopping = True
        if self._proc is not None:
            await self._kill(self._proc)
        if self._task is not None:
            await self._task
        self.replica.pid = None
        self._set("stopped")
