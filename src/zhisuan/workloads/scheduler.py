"""The job scheduler: one pass admits, launches, follows and stops jobs. Run by the control plane every second.

A pass, in the house's loop shape (load in a short transaction, decide in pure code, call engines
outside any transaction, apply guarded by the lease token):

1. lease   — take ``job-scheduler`` (one control-plane process applies at a time);
1b. faults — jobs on nodes cordoned for a fault, and hung jobs, are marked to stop (``faults``);
2. admit   — load the queue snapshot (``snapshot.load_cycle``), ``core.queueing.schedule`` decides
             admissions, preemptions and pending reasons; apply: hold each admitted job's devices,
             CPU and memory in the ledger (all or nothing per job), mark victims to stop, record reasons;
3. launch  — for each admitted job, ``driver.submit`` (idempotent by ``zs-<job>-<attempt>``) outside
             any transaction; then ``starting`` with the engine's handle. An engine that cannot be
             reached: the job's holds are released and it is queued again with that reason;
4. follow  — ``driver.poll`` per site; ``core.job_lifecycle.follow_engine`` maps the engine's view
             onto the job; ended attempts release their holds (platform faults unbilled); a failed
             attempt of a job that opted in restarts (``faults``: requeued, away from cordoned nodes);
5. stop    — ``driver.cancel`` for jobs a tenant cancelled or the queue preempted, until they end.

A control plane that restarts mid-run re-reads handles from the database and keeps following: it
adopts running jobs and never submits an attempt twice.
"""

from __future__ import annotations

import logging
import socket
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from zhisuan.catalog.loader import Catalog
from zhisuan.core.goodput.restart import RestartPolicy
from zhisuan.core.job_lifecycle import EngineView, follow_engine
from zhisuan.drivers.base import EngineJobState, EngineUnavailable, SubmitRejected
from zhisuan.inventory.models import Site
from zhisuan.store.base import transaction
from zhisuan.store.leases import acquire_lease, lease_is_held
from zhisuan.workloads import faults, launch
from zhisuan.workloads.admission import apply_cycle
from zhisuan.workloads.agent_sync import record_progress
from zhisuan.workloads.engines import DriverBook, SiteEngine, site_engine_of
from zhisuan.workloads.models import Job
from zhisuan.workloads.release import end_attempt
from zhisuan.workloads.service import add_event, set_state
from zhisuan.workloads.site_sync import sync_site

log = logging.getLogger("zhisuan.jobs")
LEASE = "job-scheduler"
SYNC_EVERY = timedelta(seconds=60)
# While jobs run on an engine site its nodes are read this often: a node the engine reports down (Slurm:
# not responding) is cordoned and its jobs are stopped within seconds, not a minute.
SYNC_EVERY_BUSY = timedelta(seconds=5)


@dataclass
class Wakeups:
    """Shortcuts through the loops' intervals on one box: a submit wakes the scheduler, a launch or a
    stop wakes the local agent, a worker that changed state wakes the scheduler again."""

    scheduler: threading.Event = field(default_factory=threading.Event)
    agent: threading.Event = field(default_factory=threading.Event)


@dataclass
class JobScheduler:
    sessions: sessionmaker[Session]
    catalog: Catalog
    jobs_dir: Path
    clock: Callable[[], datetime]
    holder: str = socket.gethostname()
    ttl: timedelta = timedelta(seconds=30)
    wake_agents: Callable[[], None] = lambda: None
    restart_policy: RestartPolicy = field(default_factory=RestartPolicy)

    def __post_init__(self) -> None:
        self.book = DriverBook(self.sessions, self.jobs_dir)
        self.synced: dict[int, datetime] = {}

    def sync_engine_sites(self, now: datetime) -> None:
        """Engine-managed sites' nodes follow their engine (new nodes, drains, nodes down) every minute,
        every few seconds while jobs run there."""
        with self.sessions() as session:
            sites = session.execute(select(Site.id, Site.name).where(
                Site.engine.in_(("slurm", "kubernetes")))).all()
            busy = set(session.execute(select(Job.site_id).where(
                Job.state.in_(("starting", "running"))).distinct()).scalars())
        for site_id, name in sites:
            last = self.synced.get(site_id)
            if last is not None and now - last < (SYNC_EVERY_BUSY if site_id in busy else SYNC_EVERY):
                continue
            self.synced[site_id] = now
            try:
                sync_site(self.sessions, self.catalog, self.book, site_id, now)
                self.book.mark_reachable(name)
            except EngineUnavailable as exc:
                self.book.mark_unreachable(name, str(exc), now)
            except Exception:
                log.exception("inventory sync of site %s failed", name)

    def run_pass(self) -> bool:
        """One pass; False if another process holds the lease."""
        now = self.clock()
        with transaction(self.sessions) as session:
            token = acquire_lease(session, LEASE, self.holder, now, self.ttl)
        if token is None:
            return False
        self.probe_unreachable(now)
        self.sync_engine_sites(now)
        self.stop_faulty(token, now)
        apply_cycle(self.sessions, self.catalog, self.book, token, now)
        launched = self.launch_admitted(token)
        self.follow(token)
        stopping = self.stop_requested(token)
        if launched or stopping:
            self.wake_agents()
        return True

    def stop_faulty(self, token: str, now: datetime) -> None:
        """Jobs on nodes cordoned for a fault, and hung jobs, are stopped (then restarted: ``follow``)."""
        with transaction(self.sessions) as session:
            if self.guarded(session, token):
                faults.request_fault_stops(session, now)

    def guarded(self, session: Session, token: str) -> bool:
        return lease_is_held(session, LEASE, token, self.clock())

    # ------------------------------------------------------------------ launch

    def launch_admitted(self, token: str) -> int:
        with self.sessions() as session:
            jobs = session.execute(select(Job.id).where(Job.state == "admitted", Job.stop_requested.is_(None))
                                   .order_by(Job.id)).scalars().all()
        for job_id in jobs:
            with self.sessions() as session:
                spec, site = launch.spec_for(session, self.catalog, job_id)
            if spec is None or site is None:
                continue
            try:
                handle: str | None = self.book.driver(site).submit(spec)
                error, fatal = "", False
                self.book.mark_reachable(site.name)
            except EngineUnavailable as exc:
                handle, error, fatal = None, f"site {site.name}: engine unreachable ({exc}); queued again", False
                self.book.mark_unreachable(site.name, str(exc), self.clock())
            except SubmitRejected as exc:
                handle, error, fatal = None, f"site {site.name} refused the job: {exc}", True
            self.apply_launch(token, job_id, spec.attempt, handle, error, fatal, site)
        return len(jobs)

    def apply_launch(self, token: str, job_id: int, attempt: int, handle: str | None, error: str, fatal: bool,
                     site: SiteEngine) -> None:
        now = self.clock()
        with transaction(self.sessions) as session:
            job = session.get(Job, job_id)
            if not self.guarded(session, token) or job is None or job.state != "admitted" or job.attempt != attempt:
                return
            if handle is not None:
                job.engine_handle = handle
                set_state(session, job, "starting", f"submitted to the {site.engine} engine of site {site.name} "
                          f"as {handle}", now)
                for note in launch.launch_notes(job, site):
                    add_event(session, job, "starting", note, now)
                return
            end_attempt(session, job, now, "platform fault", billable=False)
            if fatal:
                job.ended_at = now
                set_state(session, job, "failed", error, now)
            else:
                set_state(session, job, "queued", error, now)

    # ------------------------------------------------------------------ follow

    def sites_of(self, session: Session, jobs: list[Job]) -> dict[int, SiteEngine]:
        ids = {j.site_id for j in jobs if j.site_id is not None}
        rows = list(session.execute(select(Site).where(Site.id.in_(ids))).scalars()) if ids else []
        return {s.id: site_engine_of(s) for s in rows}

    def poll_sites(self, watched: list[tuple[int, str, int | None]],
                   sites: dict[int, SiteEngine]) -> dict[str, EngineJobState]:
        by_site: dict[int, list[str]] = {}
        for _, handle, site_id in watched:
            if site_id is not None:
                by_site.setdefault(site_id, []).append(handle)
        seen: dict[str, EngineJobState] = {}
        for site_id, handles in by_site.items():
            site = sites[site_id]
            try:
                seen.update(self.book.driver(site).poll(handles))
                self.book.mark_reachable(site.name)
            except EngineUnavailable as exc:  # keep the jobs as they are: they are followed again later
                self.book.mark_unreachable(site.name, str(exc), self.clock())
        return seen

    def follow(self, token: str) -> None:
        with self.sessions() as session:
            jobs = session.execute(select(Job).where(Job.state.in_(("starting", "running")),
                                                     Job.engine_handle.is_not(None))).scalars().all()
            watched = [(j.id, str(j.engine_handle), j.site_id) for j in jobs]
            sites = self.sites_of(session, list(jobs))
        seen = self.poll_sites(watched, sites)
        faulted = {where for _, handle, where in watched
                   if where is not None and handle in seen and seen[handle].platform_fault}
        if faulted:  # re-read those engines' nodes first: the failure is then pinned on the node that is down
            for where in faulted:
                self.synced.pop(where, None)
            self.sync_engine_sites(self.clock())
        ended: list[tuple[SiteEngine, str]] = []
        now = self.clock()
        with transaction(self.sessions) as session:
            if not self.guarded(session, token):
                return
            for job_id, handle, site_id in watched:
                job = session.get(Job, job_id)
                if job is None or handle not in seen or job.engine_handle != handle:
                    continue
                if self.apply_engine_state(session, job, seen[handle], now) and site_id in sites:
                    ended.append((sites[site_id], handle))
        for site, handle in ended:  # a gang's other ranks stop with it (no-op when all ended)
            self.cancel_quietly(site, handle)

    def apply_engine_state(self, session: Session, job: Job, engine: EngineJobState, now: datetime) -> bool:
        """Apply what the engine reports; True when the attempt ended."""
        if engine.state == "running" and job.started_at is None:
            job.started_at = engine.started_at or now
        if engine.progress is not None and job.state == "running":
            record_progress(session, job, dict(engine.progress), now)
        step = follow_engine(job.state, job.stop_requested,
                             EngineView(engine.state, engine.reason, engine.exit_code, engine.platform_fault))
        if step is None:
            return False
        if not step.ends_attempt:
            if step.state == "running" and job.progress is None:
                job.progress_at = now  # the hang clock starts when the attempt runs
            set_state(session, job, step.state, step.reason, now)
            return False
        job.exit_code = engine.exit_code
        outcome = "preempted" if step.preempted else step.state if step.billable else "platform fault"
        decision, failure = None, None
        if step.state == "failed" and faults.opted_in(job):
            failure = faults.classify(job, engine, faults.current_cordons(session))
            decision = faults.restart_decision(job, failure, self.restart_policy)
        end_attempt(session, job, now, outcome, billable=step.billable)
        if job.site_id is not None and not step.billable:
            self.synced.pop(job.site_id, None)  # an engine site re-reads its nodes now: cordon the failed one
        if step.preempted:
            job.preemptions += 1
            add_event(session, job, "preempted", job.reason if job.stop_requested else step.reason, now)
            set_state(session, job, "queued", step.reason, now)
        elif decision is not None and failure is not None and decision.restart:
            add_event(session, job, "failed", step.reason, now)
            faults.requeue(session, job, failure, decision, now)
            set_state(session, job, "queued", decision.reason, now)
        else:
            job.ended_at, job.platform_fault = now, not step.billable
            set_state(session, job, step.state, faults.failed_transition(step, decision), now)
        return True

    # ------------------------------------------------------------------ stop

    def stop_requested(self, token: str) -> int:
        with self.sessions() as session:
            jobs = session.execute(select(Job).where(
                Job.stop_requested.is_not(None), Job.state.in_(("admitted", "starting", "running")))).scalars().all()
            targets = [(j.id, j.engine_handle, j.site_id) for j in jobs]
            sites = self.sites_of(session, list(jobs))
        unlaunched = [job_id for job_id, handle, _ in targets if handle is None]
        for _, handle, site_id in targets:
            if handle is not None and site_id in sites:
                self.cancel_quietly(sites[site_id], handle)
        if unlaunched:
            self.stop_unlaunched(token, unlaunched)
        return len(targets)

    def stop_unlaunched(self, token: str, job_ids: list[int]) -> None:
        """Admitted but never submitted: nothing runs; end the attempt here."""
        now = self.clock()
        with transaction(self.sessions) as session:
            if not self.guarded(session, token):
                return
            for job_id in job_ids:
                job = session.get(Job, job_id)
                if job is None or job.state != "admitted" or job.engine_handle is not None:
                    continue
                self.apply_engine_state(session, job, EngineJobState("cancelled", "stopped before launch"), now)

    def cancel_quietly(self, site: SiteEngine, handle: str) -> None:
        try:
            self.book.driver(site).cancel(handle)
        except EngineUnavailable as exc:
            self.book.mark_unreachable(site.name, str(exc), self.clock())
        except Exception:
            log.exception("cancel of %s on site %s failed", handle, site.name)

    def probe_unreachable(self, now: datetime) -> None:
        """Ask engines marked unreachable whether they answer again (their jobs resume being admitted)."""
        for name in list(self.book.unreachable):
            site = next((s for s in self.book.drivers if s.name == name), None)
            if site is None:
                self.book.mark_reachable(name)
                continue
            try:
                self.book.driver(site).import_inventory()
                self.book.mark_reachable(name)
            except Exception as exc:
                self.book.mark_unreachable(name, str(exc), now)
