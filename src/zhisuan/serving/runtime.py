"""The serving runtime of one machine: runs the replicas placed on its node and reports them.

One pass (``reconcile``), every few seconds, in the control-plane process of that machine:
1. load, in a short transaction, the replicas placed on this node whose deployment is active;
2. decide (pure: ``plan_replica_changes``) which replicas to start and which to drain, comparing
   that with the engine processes this runtime already runs (one per replica, so a deployment
   scaled out or in on this node starts or drains only the difference);
3. start / drain engine processes outside any transaction (``engines.deployment.Deployment``:
   supervised, health-checked, restarted when they die, registered in the gateway's router);
4. write back, in a second short transaction guarded by this node's runtime lease, each replica's
   observed state, port and restarts; a replica that finished draining is stopped and its ledger
   allocations end (``service.stop_replica``).

A replica whose weights are missing on this machine, or whose engine cannot build a launch plan,
is reported ``failed`` with the reason instead of being retried forever.

Before its first pass the runtime kills engines a previous control plane of this machine left
running (pid files in its log directory, ``engines.leftovers``): the deployments they served are
started again, with new secrets, by the pass itself. Each replica is registered in the gateway's
router under its deployment id (names are unique per owner only) with its owner tenant and secret.
"""

from __future__ import annotations

import asyncio
import logging
import socket
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

from sqlalchemy.orm import Session, sessionmaker

from zhisuan.catalog.loader import Catalog
from zhisuan.engines.deployment import Deployment
from zhisuan.engines.leftovers import reap_all
from zhisuan.engines.profiles import launch_plan
from zhisuan.engines.spec import DeviceAssignment, ModelSpec, ProfileError
from zhisuan.engines.supervisor import SupervisorPolicy
from zhisuan.gateway.router import Router
from zhisuan.inventory.models import Node
from zhisuan.serving import service
from zhisuan.serving.fleet import ReplicaKeys
from zhisuan.serving.models import ENDED_REPLICA, DeploymentReplica, ModelDeployment
from zhisuan.store.base import transaction
from zhisuan.store.leases import acquire_lease, lease_is_held, release_lease

log = logging.getLogger("zhisuan.serving")


@dataclass(frozen=True)
class LocalReplica:
    index: int
    assignment: DeviceAssignment
    draining: bool


@dataclass(frozen=True)
class Desired:
    """A deployment's replicas on this node, as the database wants them."""

    deployment_id: int
    name: str
    spec: ModelSpec
    replicas: tuple[LocalReplica, ...]
    tenant_id: int | None = None

    @property
    def process_name(self) -> str:
        """Unique on this machine (names are unique per owner only): ``<name>@<id>``."""
        return f"{self.name}@{self.deployment_id}"

    @property
    def draining(self) -> bool:
        return all(r.draining for r in self.replicas)


@dataclass(frozen=True)
class Observed:
    deployment_id: int
    index: int
    state: str
    port: int | None
    restarts: int
    message: str = ""
    in_flight: int = 0
    slots: int = 1


def plan_replica_changes(desired: list[Desired], running: set[tuple[int, int]]
                         ) -> tuple[list[tuple[Desired, LocalReplica]], list[tuple[int, int]]]:
    """Per replica — (replicas to start, (deployment id, index) to drain) — pure. One engine process
    per replica, so a deployment scaled out or in on this node starts or drains only the difference."""
    wanted = {(d.deployment_id, r.index): (d, r) for d in desired for r in d.replicas if not r.draining}
    start = [pair for key, pair in wanted.items() if key not in running]
    return start, sorted(running - set(wanted))


def model_spec(row: ModelDeployment) -> ModelSpec:
    m = row.model
    return ModelSpec(name=m.name, source=m.source, engine=m.engine, context_length=m.context_length,
                     stacks=tuple(m.stacks), extra_args=tuple(m.extra_args), embeddings=m.embeddings)


def assignment_for(catalog: Catalog, node: Node, row: ModelDeployment, replica: DeploymentReplica) -> DeviceAssignment:
    models = {d.model for d in node.devices if d.index in replica.device_indices}
    env = next((catalog.get(m).visible_devices_env for m in sorted(models)), None)
    stack = "cpu" if not replica.device_indices else (service.accelerator_stack(row.model.stacks) or "cpu")
    return DeviceAssignment(port=0, stack=stack, device_indices=tuple(replica.device_indices),
                            visible_devices_env=env, threads=max(1, row.cpu_milli // 1000), parallel=2)


class ServingRuntime:
    def __init__(self, sessions: sessionmaker[Session], catalog: Catalog, router: Router, log_dir: Path,
                 node_id: int, *, clock: Callable[[], datetime], policy: SupervisorPolicy | None = None,
                 keys: ReplicaKeys | None = None) -> None:
        """``keys``: where this runtime publishes its replicas' secrets for other gateways (``fleet``)."""
        self.sessions, self.catalog, self.router = sessions, catalog, router
        self.keys = keys
        self.log_dir, self.node_id, self.clock = log_dir, node_id, clock
        self.policy = policy
        self.running: dict[tuple[int, int], Deployment] = {}  # (deployment id, replica index) → its engine
        self.failed: dict[tuple[int, int], str] = {}
        self.reaped = False
        self.lease = f"serving-runtime:{node_id}"
        # Stable across restarts of this machine's control plane, so a restart takes the lease back
        # at once; another machine claiming the same node waits for the lease to expire.
        self.holder = f"serving@{socket.gethostname()}"

    def load(self) -> tuple[list[Desired], str | None]:
        with transaction(self.sessions) as session:
            token = acquire_lease(session, self.lease, self.holder, self.clock(), ttl=timedelta(seconds=60))
            node = session.get(Node, self.node_id)
            if token is None or node is None:
                return [], None
            by_deployment: dict[int, list[tuple[ModelDeployment, DeploymentReplica]]] = {}
            for row, replica in service.replicas_on_node(session, self.node_id):
                if replica.state not in ENDED_REPLICA:
                    by_deployment.setdefault(row.id, []).append((row, replica))
            desired = [Desired(row_id, pairs[0][0].name, model_spec(pairs[0][0]), tuple(
                LocalReplica(r.index, assignment_for(self.catalog, node, d, r), r.state == "draining")
                for d, r in pairs), tenant_id=pairs[0][0].tenant_id) for row_id, pairs in by_deployment.items()]
            return desired, token

    def launch_problem(self, desired: Desired) -> str | None:
        """Why this machine cannot run the deployment at all (checked before spawning)."""
        if not Path(desired.spec.source).exists():
            # No path in the message: tenants read it (operators see the model's source).
            return "the model's weights are not on this node"
        try:
            launch_plan(desired.spec, desired.replicas[0].assignment)
        except ProfileError as error:
            return str(error)
        return None

    async def reconcile(self) -> None:
        if not self.reaped:
            killed = await asyncio.to_thread(reap_all, self.log_dir)
            if killed:
                log.warning("killed %d engine process(es) a previous control plane left running", len(killed))
            self.reaped = True
        desired, token = await asyncio.to_thread(self.load)
        if token is None:
            return
        start, drain = plan_replica_changes(desired, set(self.running))
        for d, r in start:
            problem = self.launch_problem(d)
            if problem is not None:
                self.failed[(d.deployment_id, r.index)] = problem
                continue
            deployment = Deployment(d.spec, [r.assignment], self.router, self.log_dir, policy=self.policy,
                                    name=d.process_name, indices=[r.index], tenant_id=d.tenant_id)
            await deployment.start(wait_healthy=False)
            self.running[(d.deployment_id, r.index)] = deployment
            log.info("deployment %s: started replica %d of %s", d.name, r.index, d.spec.name)
        drained = []
        for key in drain:
            deployment = self.running.pop(key)
            await deployment.stop()
            drained.append(key)
            log.info("deployment %s: replica %d drained and stopped", deployment.name, key[1])
        self.publish_keys()
        await asyncio.to_thread(self.apply, token, self.observe(), drained)

    def publish_keys(self) -> None:
        if self.keys is None:
            return
        for (did, _), dep in self.running.items():
            for p in dep.replicas:
                if p.secret and p.port and p.state in service.RUNNING_REPLICA:
                    self.keys.put(did, int(p.replica_id.rsplit("-", 1)[1]), p.secret, p.port)

    def observe(self) -> list[Observed]:
        # A supervisor reports "stopped" before its first spawn: only finish_drain stops a replica.
        seen = []
        for (did, _), dep in self.running.items():
            for p, slots in zip(dep.replicas, dep.slots, strict=True):
                if p.state in service.RUNNING_REPLICA:
                    routed = self.router.by_id.get(p.replica_id)
                    seen.append(Observed(did, int(p.replica_id.rsplit("-", 1)[1]), p.state, p.port or None,
                                         p.restarts, in_flight=routed.outstanding if routed else 0, slots=slots))
        seen += [Observed(did, index, "failed", None, 0, why) for (did, index), why in self.failed.items()]
        return seen

    def apply(self, token: str, observed: list[Observed], drained: list[tuple[int, int]]) -> None:
        now = self.clock()
        with transaction(self.sessions) as session:
            if not lease_is_held(session, self.lease, token, now):
                return
            for seen in observed:
                record_replica(session, seen, now)
            for deployment_id, index in drained:
                finish_drain(session, deployment_id, self.node_id, now, index)

    async def run(self, interval_s: float) -> None:
        while True:
            try:
                await self.reconcile()
            except Exception:
                log.exception("serving runtime pass failed; retrying in %.0f s", interval_s)
            await asyncio.sleep(interval_s)

    async def shutdown(self) -> None:
        """Control plane stopping: stop the engines (drained), leave the deployments desired."""
        running, self.running = self.running, {}
        await asyncio.gather(*(d.stop() for d in running.values()))
        with transaction(self.sessions) as session:
            for row, replica in service.replicas_on_node(session, self.node_id):
                if (row.id, replica.index) in running and replica.state in service.RUNNING_REPLICA:
                    replica.state, replica.port = "pending", None
                    replica.message = "control plane stopped; restarts with it"
                    service.refresh_status(row, self.clock())
            release_lease(session, self.lease, self.holder)


def record_replica(session: Session, seen: Observed, now: datetime) -> None:
    """Store what the supervisor saw; a replica the API already marked draining stays draining."""
    row = session.get(ModelDeployment, seen.deployment_id)
    if row is None:
        return
    replica = next((r for r in row.replica_rows if r.index == seen.index), None)
    if replica is None or replica.state in ENDED_REPLICA:
        return
    if seen.state == "failed":
        service.stop_replica(session, row, replica, now, seen.message)
        replica.state = "failed"
    else:
        replica.in_flight, replica.slots, replica.reported_at = seen.in_flight, seen.slots, now
        if (replica.state != "draining" or seen.state in ("draining", "stopped")) and \
                (replica.state, replica.port, replica.restarts) != (seen.state, seen.port, seen.restarts):
            replica.state, replica.port, replica.restarts = seen.state, seen.port, seen.restarts
            replica.message, replica.updated_at = seen.message, now
    service.refresh_status(row, now)


def finish_drain(session: Session, deployment_id: int, node_id: int, now: datetime, index: int | None = None) -> None:
    """The deployment's replicas on this node (only ``index``, if given) drained: stop them."""
    row = session.get(ModelDeployment, deployment_id)
    if row is None:
        return
    for replica in row.replica_rows:
        if replica.node_id == node_id and replica.state not in ENDED_REPLICA and index in (None, replica.index):
            service.stop_replica(session, row, replica, now, "drained and stopped")
    service.refresh_status(row, now)
