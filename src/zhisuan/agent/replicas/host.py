"""The engine replicas a node agent runs on its machine, supervised on an event loop of their own.

The agent's main loop is synchronous; the supervisors (``engines.supervisor``) are asyncio. They run
on one event-loop thread that lives as long as the agent: each engine is spawned from that thread
with a parent-death signal (``engines.leftovers.die_with_parent``), so a ``kill -9`` of the agent
takes its engines with it, and its pid file lets the next agent on this data directory kill any
member of the engine's process group that outlived it (``reap_all`` at start). Never orphaned.

Each replica: the launch profile of its engine for its chip (``engines.profiles.launch_plan``) with
the assigned devices made visible, listening on the agent's advertised address, a fresh random
secret per launch (held in memory; reported to the control plane, which hands it to gateways),
restarted with backoff when it dies. Its load is the engine's busy slots (llama.cpp ``/slots``),
sampled each step. Draining: gateways learn it from the control plane within their poll interval,
so the engine keeps serving for ``drain_grace_s`` and then until its slots are idle (bounded by the
supervisor's drain timeout) before it is stopped.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import secrets
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import httpx

from zhisuan.engines.leftovers import reap_all
from zhisuan.engines.profiles import launch_plan
from zhisuan.engines.spec import DeviceAssignment, LaunchPlan, ModelSpec, ProfileError
from zhisuan.engines.supervisor import ReplicaSupervisor, SupervisorPolicy

log = logging.getLogger("zhisuan.agent.replicas")

Key = tuple[int, int]  # (deployment id, replica index)
LIVE = ("starting", "healthy", "unhealthy", "draining")


def spec_of(model: dict[str, Any]) -> ModelSpec:
    return ModelSpec(name=str(model["name"]), source=str(model["source"]), engine=str(model["engine"]),
                     context_length=int(model["context_length"]), stacks=tuple(model.get("stacks") or ("cpu",)),
                     extra_args=tuple(model.get("extra_args") or ()), embeddings=bool(model.get("embeddings")))


def assignment_of(item: dict[str, Any], address: str) -> DeviceAssignment:
    return DeviceAssignment(port=0, host=address, stack=str(item["stack"]),
                            device_indices=tuple(int(i) for i in item["device_indices"]),
                            visible_devices_env=item.get("visible_devices_env"),
                            threads=int(item["threads"]), parallel=int(item["parallel"]))


def busy_slots(client: httpx.Client, base_url: str, secret: str | None) -> int:
    """Requests the engine is processing now (llama.cpp ``GET /slots``); 0 when it cannot say."""
    try:
        r = client.get(base_url + "/slots", headers={"Authorization": f"Bearer {secret}"} if secret else {},
                       timeout=1.0)
        if r.status_code == 200 and isinstance(r.json(), list):
            return sum(1 for slot in r.json() if isinstance(slot, dict) and slot.get("is_processing"))
    except (httpx.HTTPError, ValueError):
        pass
    return 0


@dataclass
class RunningReplica:
    key: Key
    supervisor: ReplicaSupervisor
    slots: int
    load: int = 0
    drain_started: float | None = None
    stopping: concurrent.futures.Future[None] | None = field(default=None, repr=False)
    report_stopped: bool = True  # a drain the control plane asked for: tell it when done


class ReplicaHost:
    def __init__(self, log_dir: Path, address: str, *, policy: SupervisorPolicy | None = None,
                 drain_grace_s: float = 3.0, plan: Callable[..., LaunchPlan] = launch_plan) -> None:
        self.log_dir, self.address, self.policy = log_dir, address, policy or SupervisorPolicy()
        self.drain_grace_s, self.plan = drain_grace_s, plan
        self.running: dict[Key, RunningReplica] = {}
        self.failed: dict[Key, str] = {}
        self.finished: set[Key] = set()  # drained and stopped, not yet acknowledged by the control plane
        log_dir.mkdir(parents=True, exist_ok=True)
        killed = reap_all(log_dir)
        if killed:
            log.warning("killed %d engine process(es) a previous agent left running", len(killed))
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, name="zhisuan-replicas", daemon=True)
        self.thread.start()
        self.http = httpx.Client()

    def launch_problem(self, spec: ModelSpec, assignment: DeviceAssignment) -> str | None:
        if not Path(spec.source).exists():
            return "the model's weights are not on this node"  # no path: tenants read it
        try:
            self.plan(spec, assignment)
        except ProfileError as error:
            return str(error)
        return None

    def start(self, item: dict[str, Any]) -> None:
        key: Key = (int(item["deployment_id"]), int(item["index"]))
        spec, assignment = spec_of(item["model"]), assignment_of(item, self.address)
        problem = self.launch_problem(spec, assignment)
        if problem is not None:
            self.failed[key] = problem
            log.warning("replica %s-%d cannot start: %s", item["name"], key[1], problem)
            return
        secret = secrets.token_urlsafe(32)

        def plan_for(port: int) -> LaunchPlan:
            return self.plan(spec, replace(assignment, port=port), secret=secret)

        running = RunningReplica(key, ReplicaSupervisor(
            f"{item['name']}-{key[1]}", spec.name, plan_for, self.log_dir, self.policy), int(item["parallel"]))
        running.supervisor.inflight = lambda: self._draining_load(running)
        self.running[key] = running
        asyncio.run_coroutine_threadsafe(running.supervisor.start(wait_healthy=False), self.loop).result(30)
        log.info("replica %s-%d of %s: starting on %s", item["name"], key[1], spec.name, self.address)

    def _draining_load(self, running: RunningReplica) -> int:
        """What the supervisor waits for before stopping a draining engine (see the module's docstring)."""
        if running.drain_started is not None and time.monotonic() - running.drain_started < self.drain_grace_s:
            return 1
        return running.load

    def drain(self, key: Key, report: bool = True) -> None:
        running = self.running.get(key)
        if running is None or running.stopping is not None:
            return
        running.drain_started, running.report_stopped = time.monotonic(), report
        running.stopping = asyncio.run_coroutine_threadsafe(running.supervisor.stop(), self.loop)

    def sample(self) -> None:
        """Load of each live engine, and the drains that finished."""
        for key, running in list(self.running.items()):
            r = running.supervisor.replica
            if r.state in ("healthy", "draining") and r.base_url:
                running.load = busy_slots(self.http, r.base_url, r.secret)
            if running.stopping is not None and running.stopping.done():
                del self.running[key]
                if running.report_stopped:
                    self.finished.add(key)

    def reports(self) -> list[dict[str, Any]]:
        out = []
        for (deployment_id, index), running in self.running.items():
            r = running.supervisor.replica
            if r.state not in LIVE:
                continue  # not spawned yet
            out.append({"deployment_id": deployment_id, "index": index, "state": r.state, "port": r.port or None,
                        "restarts": r.restarts, "in_flight": running.load, "slots": running.slots,
                        "secret": r.secret, "message": "" if r.last_exit is None else f"last exit {r.last_exit}"})
        out += [{"deployment_id": d, "index": i, "state": "failed", "message": why[:1000]}
                for (d, i), why in self.failed.items()]
        out += [{"deployment_id": d, "index": i, "state": "stopped"} for d, i in sorted(self.finished)]
        return out

    def apply(self, assignments: list[dict[str, Any]]) -> None:
        """Run what is assigned, drain what the control plane drains, stop what is no longer ours."""
        wanted: dict[Key, dict[str, Any]] = {(int(a["deployment_id"]), int(a["index"])): a for a in assignments}
        for key, item in wanted.items():
            if item["desired"] == "run" and key not in self.running and key not in self.failed:
                self.start(item)
            elif item["desired"] == "drain":
                if key in self.running:
                    self.drain(key)
                elif key not in self.failed:
                    self.finished.add(key)  # nothing runs here: the control plane may stop it at once
        for key in [k for k in self.running if k not in wanted]:
            self.drain(key, report=False)
        self.failed = {k: why for k, why in self.failed.items() if k in wanted}
        self.finished &= set(wanted)

    def close(self) -> None:
        """The agent stops: stop every engine (no drain: the agent's own exit), then the loop."""
        async def stop_all() -> None:
            await asyncio.gather(*(r.supervisor.stop(drain=False) for r in self.running.values()),
                                 return_exceptions=True)

        try:
            asyncio.run_coroutine_threadsafe(stop_all(), self.loop).result(60)
        finally:
            self.running.clear()
            self.loop.call_soon_threadsafe(self.loop.stop)
            self.thread.join(10)
            self.http.close()
