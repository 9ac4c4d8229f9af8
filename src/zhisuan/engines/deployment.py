"""A model deployment: N supervised replicas, each on the devices placement assigned to it, kept
in the gateway's router as they start, fail, recover, drain and stop.

``assignments`` come from the platform's placement engine (one ``DeviceAssignment`` per replica; the
ledger allocations are written by the caller) — this class only runs and routes. The assignment's
port is replaced by a fresh free loopback port at each (re)start.

Each replica gets its own random secret, made here and held only in memory: the engine demands it
of every caller, the supervisor's health check and the gateway present it (the router's replica
carries it with the owning tenant, so the gateway routes a private service only to its owner).
"""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

from zhisuan.engines.profiles import launch_plan
from zhisuan.engines.spec import DeviceAssignment, LaunchPlan, ModelSpec
from zhisuan.engines.supervisor import ReplicaProcess, ReplicaSupervisor, SupervisorPolicy
from zhisuan.gateway.router import Router


class Deployment:
    def __init__(self, spec: ModelSpec, assignments: list[DeviceAssignment], router: Router, log_dir: Path,
                 *, policy: SupervisorPolicy | None = None, name: str | None = None,
                 indices: list[int] | None = None, tenant_id: int | None = None) -> None:
        """``indices``: the deployment-wide replica numbers of ``assignments`` (default 0…n-1), for
        a machine that runs only some of a deployment's replicas; ``tenant_id``: the owner of a
        private service (None = the platform's public MaaS)."""
        self.spec = spec
        self.router = router
        self.tenant_id = tenant_id
        self.name = name or spec.name
        self.assignments = list(assignments)
        self.supervisors: list[ReplicaSupervisor] = []
        # The engine's parallel slots per replica: the gateway sends it at most that many at once.
        self._slots_of: dict[str, int] = {}
        for i, assignment in zip(indices or range(len(assignments)), assignments, strict=True):
            rid = f"{self.name}-{i}"
            self._slots_of[rid] = max(1, assignment.parallel or 1)
            self.supervisors.append(ReplicaSupervisor(
                rid, spec.name, self._planner(assignment), log_dir, policy or SupervisorPolicy(),
                on_change=self._changed, inflight=self._inflight(rid)))

    def _planner(self, assignment: DeviceAssignment) -> Callable[[int], LaunchPlan]:
        secret = secrets.token_urlsafe(32)

        def plan(port: int) -> LaunchPlan:
            return launch_plan(self.spec, replace(assignment, port=port), secret=secret)

        return plan

    def _inflight(self, rid: str) -> Callable[[], int]:
        def n() -> int:
            r = self.router.by_id.get(rid)
            return r.outstanding if r is not None else 0

        return n

    def _changed(self, rp: ReplicaProcess) -> None:
        r = self.router.by_id.get(rp.replica_id)
        if rp.state == "healthy":
            if r is None or r.port != rp.port:
                self.router.add_replica(rp.model, rp.replica_id, "127.0.0.1", rp.port, tenant_id=self.tenant_id,
                                        secret=rp.secret, slots=self._slots_of.get(rp.replica_id))
            else:
                self.router.set_healthy(rp.replica_id, True)
        elif rp.state in ("starting", "unhealthy"):
            if r is not None:
                self.router.set_healthy(rp.replica_id, False)
        elif rp.state == "draining":
            self.router.drain(rp.replica_id)
        elif rp.state == "stopped":
            self.router.remove_replica(rp.replica_id)

    async def start(self, wait_healthy: bool = True) -> None:
        await asyncio.gather(*(s.start(wait_healthy=wait_healthy) for s in self.supervisors))

    async def stop(self) -> None:
        """Undeploy: drain every replica, then stop it."""
        await asyncio.gather(*(s.stop() for s in self.supervisors))

    @property
    def slots(self) -> list[int]:
        """Each replica's parallel request slots (its capacity, for load = in flight / slots)."""
        return [a.parallel for a in self.assignments]

    @property
    def replicas(self) -> list[ReplicaProcess]:
        return [s.replica for s in self.supervisors]
