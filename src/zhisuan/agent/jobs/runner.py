"""``WorkerRunner``: the node agent's side of the ``local`` engine — start, watch, stop and page the logs
of job workers on this machine.

Every worker runs under a small wrapper process (``wrapper.py``) in its own session, so workers
survive agent restarts; everything a runner knows is on disk (``records``), so a new runner on the
same root adopts running workers and learns how the others ended while no runner was alive. ``ensure``
holds a file lock while it checks and starts, so no two runners (or threads) start a key twice.
"""

from __future__ import annotations

import fcntl
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, BinaryIO

from zhisuan.agent.jobs import records
from zhisuan.agent.jobs.launch import KEY_PATTERN, WorkerLaunch, WorkerStatus, validate_launch
from zhisuan.agent.jobs.limits import plan_limits, remove_cgroup
from zhisuan.agent.jobs.logs import read_page
from zhisuan.agent.jobs.outcome import decide_outcome
from zhisuan.agent.jobs.progress import progress_path, read_newest
from zhisuan.agent.jobs.tenancy import (
    RunAs,
    agent_identity,
    ensure_tenant_user,
    prepare_tenant_dir,
    resolve_workdir,
    untraversable_ancestor,
)

WRAPPER = Path(__file__).with_name("wrapper.py")
DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
STREAM_SUFFIX = {"stdout": "out", "stderr": "err"}
POLL_S = 0.02
KILL_WAIT_S = 10.0  # SIGKILLed processes cannot refuse, only be slow to go (uninterruptible I/O, load)


def _utc_now() -> datetime:
    return datetime.now(UTC)


def _from_epoch(seconds: float | None) -> datetime | None:
    return None if seconds is None else datetime.fromtimestamp(seconds, UTC)


class WorkerRunner:
    """``root`` is ``<data dir>/jobs``: ``tenants/<tenant>/`` (each tenant's working directory),
    ``state/<key>/`` (records) and ``logs/<key>.{out,err}`` (agent only). ``run_as_tenant_users``
    defaults to "when running as root". ``kill_grace_s`` is the SIGTERM→SIGKILL grace of the time limit."""

    def __init__(
        self,
        root: Path,
        *,
        run_as_tenant_users: bool | None = None,
        clock: Callable[[], datetime] = _utc_now,
        cgroup_root: Path | None = Path("/sys/fs/cgroup"),
        kill_grace_s: float = 5.0,
    ) -> None:
        is_root = os.geteuid() == 0
        self.run_as_tenant_users = is_root if run_as_tenant_users is None else run_as_tenant_users
        if self.run_as_tenant_users and not is_root:
            raise ValueError("run_as_tenant_users: needs the agent to run as root")
        self.root = Path(root).absolute()
        self._clock = clock
        self._cgroup_root = cgroup_root
        self._kill_grace_s = kill_grace_s
        self._tenants, self._state, self._logs = self.root / "tenants", self.root / "state", self.root / "logs"
        # Directories above the root that we create ourselves must let tenant users through (o+x) whatever
        # the process umask (``zhisuan up`` runs with 077 to keep its data dir private).
        for parent in reversed(self.root.parents):
            if not parent.exists():
                parent.mkdir()
                os.chmod(parent, 0o711)
        for directory, mode in ((self.root, 0o711), (self._tenants, 0o711), (self._state, 0o700), (self._logs, 0o700)):
            directory.mkdir(parents=True, exist_ok=True)
            os.chmod(directory, mode)
        if self.run_as_tenant_users:
            blocked = untraversable_ancestor(self.root.parent)
            if blocked is not None:
                raise ValueError(f"root: tenant users cannot enter {blocked} (no o+x), so not their directories")
        self._children: dict[str, subprocess.Popen[bytes]] = {}
        self._lock = threading.RLock()

    # -- start ------------------------------------------------------------------------------------------

    def ensure(self, launch: WorkerLaunch) -> WorkerStatus:
        """Start the worker unless this key was already started (by any runner on this root); its status."""
        validate_launch(launch)
        with self._lock, self._locked():
            if not (self._state / launch.key).exists():
                self._start_locked(launch)
        return self.status(launch.key)

    def _start_locked(self, launch: WorkerLaunch) -> None:
        run_as = ensure_tenant_user(launch.tenant) if self.run_as_tenant_users else agent_identity()
        tenant_dir = prepare_tenant_dir(self._tenants, launch.tenant, run_as)
        workdir = resolve_workdir(tenant_dir, launch.workdir)  # the worker creates it, as the tenant
        state_dir = self._state / launch.key
        state_dir.mkdir(mode=0o700)
        try:
            self._start(launch, run_as, tenant_dir, workdir, state_dir)
        except BaseException:
            shutil.rmtree(state_dir, ignore_errors=True)
            raise

    def _start(self, launch: WorkerLaunch, run_as: RunAs, tenant_dir: Path, workdir: Path, state_dir: Path) -> None:
        plan = plan_limits(self._cgroup_root, launch.key, launch.cpu_milli, launch.memory_mib)
        user_note = f"runs as user {run_as.user}" + ("" if run_as.uid is not None else " (the agent's own user)")
        argv = ["/bin/sh", "-c", launch.script, launch.key] if launch.script is not None else list(launch.command)
        env = {"PATH": DEFAULT_PATH, "HOME": str(tenant_dir), "USER": run_as.user, "LOGNAME": run_as.user,
               "LANG": "C.UTF-8", **launch.env,
               "ZHISUAN_PROGRESS_FILE": str(progress_path(tenant_dir, launch.key))}
        records.write_record(state_dir / records.SPEC, {
            "argv": argv, "env": env, "cwd": str(workdir), "uid": run_as.uid, "gid": run_as.gid,
            "rlimits": [list(limit) for limit in plan.rlimits],
            "cgroup_procs": str(plan.cgroup_dir / "cgroup.procs") if plan.cgroup_dir else None,
            "max_run_s": launch.max_run_s, "kill_grace_s": self._kill_grace_s,
            "exit_path": str(state_dir / records.EXIT), "cancel_path": str(state_dir / records.CANCEL),
        })
        record: dict[str, Any] = {
            "key": launch.key, "tenant": launch.tenant, "user": run_as.user, "pid": None, "pid_start": None,
            "started_at": self._clock().isoformat(), "max_run_s": launch.max_run_s,
            "cgroup_dir": str(plan.cgroup_dir) if plan.cgroup_dir else None, "notes": [user_note, *plan.notes],
            "progress_path": env["ZHISUAN_PROGRESS_FILE"],
        }
        # Written before the start: a runner that dies right after Popen leaves "lost", never a second copy.
        records.write_record(state_dir / records.LAUNCH, record)
        out_path, err_path = self._log_path(launch.key, "stdout"), self._log_path(launch.key, "stderr")
        with _private_append(out_path) as out, _private_append(err_path) as err:
            process = subprocess.Popen(
                [sys.executable, "-I", "-S", str(WRAPPER), str(state_dir / records.SPEC)],
                stdin=subprocess.DEVNULL, stdout=out, stderr=err, env={}, cwd="/", start_new_session=True,
            )
        self._children[launch.key] = process
        record.update(pid=process.pid, pid_start=records.process_start_ticks(process.pid))
        records.write_record(state_dir / records.LAUNCH, record)

    @contextmanager
    def _locked(self) -> Iterator[None]:
        fd = os.open(self._state / ".lock", os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)

    # -- observe ----------------------------------------------------------------------------------------

    def status(self, key: str) -> WorkerStatus:
        """The worker's state now; an unknown key is ``lost``. An ended state is recorded and fixed."""
        with self._lock:
            state_dir = self._state_dir(key)
            final = records.read_record(state_dir / records.FINAL) if state_dir else None
            if final is not None:
                remove_cgroup(Path(final["cgroup_dir"]) if final.get("cgroup_dir") else None)
                return _status_from(final)
            launch = records.read_record(state_dir / records.LAUNCH) if state_dir else None
            if state_dir is not None and launch is not None and launch["pid"] is None:
                with self._locked():  # another runner may be mid-start: wait for it (held for milliseconds)
                    launch = records.read_record(state_dir / records.LAUNCH)
            if state_dir is None or launch is None:
                return WorkerStatus(key, "lost", None, None, None, None, "unknown worker", ())
            return self._observe(key, state_dir, launch)

    def _observe(self, key: str, state_dir: Path, launch: dict[str, Any]) -> WorkerStatus:
        self._reap(key)
        exit_record = records.read_record(state_dir / records.EXIT)
        alive = exit_record is None and records.is_same_process(launch["pid"], launch["pid_start"])
        if exit_record is None and not alive:  # it may have written the record just before exiting
            exit_record = records.read_record(state_dir / records.EXIT)
        cancel = records.read_record(state_dir / records.CANCEL)
        outcome = decide_outcome(
            exit_record, alive=alive, cancel_requested_at=cancel["at"] if cancel else None,
            max_run_s=launch["max_run_s"], started=launch["pid"] is not None,
        )
        reason = f"running as user {launch['user']}" if outcome.state == "running" else outcome.reason
        ended_at = None
        if outcome.state != "running":
            ended_at = _from_epoch(exit_record.get("ended_at")) if exit_record else None
            ended_at = ended_at or self._clock()
        status = WorkerStatus(
            key=key, state=outcome.state, exit_code=outcome.exit_code, pid=launch["pid"],
            started_at=datetime.fromisoformat(launch["started_at"]), ended_at=ended_at, reason=reason,
            notes=tuple(launch["notes"]),
        )
        if status.ended:
            cgroup = launch.get("cgroup_dir")
            removed = remove_cgroup(Path(cgroup) if cgroup else None)
            final = {**_record_of(status), "cgroup_dir": None if removed else cgroup}
            records.write_record(state_dir / records.FINAL, final)
        return status

    def statuses(self) -> list[WorkerStatus]:
        """Every worker with records on this root, live or ended (until forgotten)."""
        keys = sorted(entry.name for entry in self._state.iterdir() if KEY_PATTERN.fullmatch(entry.name))
        return [self.status(key) for key in keys]

    def read_log(self, key: str, stream: str, offset: int, limit: int = 65536) -> tuple[str, int, bool]:
        """Bytes ``[offset, next_offset)`` of stdout or stderr as text; ``complete`` once the worker has
        ended and nothing follows. An unknown key has no log: ``("", offset, True)``."""
        if stream not in STREAM_SUFFIX:
            raise ValueError(f"stream: must be one of {sorted(STREAM_SUFFIX)}, got {stream!r}")
        status = self.status(key)
        ended = status.ended
        if status.state == "lost" and self._state_dir(key) is None:
            return "", offset, True
        return read_page(self._log_path(key, stream), offset, limit, ended=ended)

    # -- stop, forget -----------------------------------------------------------------------------------

    def stop(self, key: str, grace_s: float = 10) -> None:
        """SIGTERM to the worker's process group, SIGKILL after ``grace_s``; then it is ``cancelled``.
        Stopping an ended or unknown worker does nothing. Blocks until the whole group is gone (≤ grace_s +
        1 s, plus up to ``KILL_WAIT_S`` for members that outlive the wrapper)."""
        status = self.status(key)
        state_dir = self._state_dir(key)
        if status.ended or state_dir is None:
            return
        launch = records.read_record(state_dir / records.LAUNCH) or {}
        records.write_record(state_dir / records.CANCEL, {"at": time.time()})
        pid, start = launch.get("pid"), launch.get("pid_start")
        if pid is not None and records.is_same_process(pid, start):
            self._signal_group(pid, signal.SIGTERM)
            if not self._wait_gone(key, pid, start, grace_s):
                _kill_cgroup(launch.get("cgroup_dir"))
                self._signal_group(pid, signal.SIGKILL)
                self._wait_gone(key, pid, start, 1.0)
            self._finish_group(pid, launch.get("cgroup_dir"))
        self.status(key)

    def _finish_group(self, pgid: int, cgroup_dir: str | None) -> None:
        """Members of the wrapper's group that outlive it (still waking up to their SIGKILL on a loaded
        machine, or a command that dodged the TERM) must not run on — and write files — after the stop:
        SIGKILL again and wait, up to ``KILL_WAIT_S``. A live group with the wrapper's pid can only be its
        own: Linux does not reuse a pid still in use as a process group id."""
        deadline = time.monotonic() + KILL_WAIT_S
        while _group_alive(pgid) and time.monotonic() < deadline:
            _kill_cgroup(cgroup_dir)
            self._signal_group(pgid, signal.SIGKILL)
            time.sleep(POLL_S)

    def forget(self, key: str) -> None:
        """Drop an ended worker's records and logs. Refuses a running worker (stop it first)."""
        status = self.status(key)
        state_dir = self._state_dir(key)
        if state_dir is None:
            return
        if not status.ended:
            raise ValueError(f"key: worker {key} is still running; stop it before forgetting it")
        with self._lock:
            self._children.pop(key, None)
            final = records.read_record(state_dir / records.FINAL) or {}
            remove_cgroup(Path(final["cgroup_dir"]) if final.get("cgroup_dir") else None)
            for stream in STREAM_SUFFIX:
                self._log_path(key, stream).unlink(missing_ok=True)
            shutil.rmtree(state_dir, ignore_errors=True)

    # -- helpers ----------------------------------------------------------------------------------------

    def progress(self, key: str) -> dict[str, Any] | None:
        """The worker's newest progress line (``ZHISUAN_PROGRESS_FILE``), or None."""
        state_dir = self._state_dir(key)
        launch = records.read_record(state_dir / records.LAUNCH) if state_dir else None
        if not launch or not launch.get("progress_path"):
            return None
        return read_newest(Path(launch["progress_path"]))

    def _state_dir(self, key: str) -> Path | None:
        if not isinstance(key, str) or not KEY_PATTERN.fullmatch(key):
            return None
        directory = self._state / key
        return directory if directory.is_dir() else None

    def _log_path(self, key: str, stream: str) -> Path:
        return self._logs / f"{key}.{STREAM_SUFFIX[stream]}"

    def _reap(self, key: str) -> None:
        """Collect the wrapper's exit if this runner started it (else it stays a zombie until we do)."""
        process = self._children.get(key)
        if process is not None and process.poll() is not None:
            del self._children[key]

    def _wait_gone(self, key: str, pid: int, start: int | None, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while True:
            self._reap(key)
            if not records.is_same_process(pid, start):
                return True
            if time.monotonic() >= deadline:
                return False
            time.sleep(POLL_S)

    @staticmethod
    def _signal_group(pid: int, number: int) -> None:
        with suppress(ProcessLookupError):
            os.killpg(pid, number)


def _private_append(path: Path) -> BinaryIO:
    """A log file only the agent can read (0600; its directory is 0700 too): the worker writes it through
    the inherited descriptor, other tenants cannot open it."""
    return os.fdopen(os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600), "ab")


def _group_alive(pgid: int) -> bool:
    """Whether a process of group ``pgid`` still runs (zombies do not count: they run no code)."""
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        if len(fields) > 2 and fields[2] == str(pgid) and fields[0] not in ("Z", "X"):
            return True
    return False


def _kill_cgroup(directory: str | None) -> None:
    """SIGKILL every process of the worker's cgroup, including ones that left its process group."""
    if directory:
        with suppress(OSError):
            (Path(directory) / "cgroup.kill").write_text("1")


def _record_of(status: WorkerStatus) -> dict[str, Any]:
    return {
        "key": status.key, "state": status.state, "exit_code": status.exit_code, "pid": status.pid,
        "started_at": status.started_at.isoformat() if status.started_at else None,
        "ended_at": status.ended_at.isoformat() if status.ended_at else None,
        "reason": status.reason, "notes": list(status.notes),
    }


def _status_from(record: dict[str, Any]) -> WorkerStatus:
    return WorkerStatus(
        key=record["key"], state=record["state"], exit_code=record["exit_code"], pid=record["pid"],
        started_at=datetime.fromisoformat(record["started_at"]) if record["started_at"] else None,
        ended_at=datetime.fromisoformat(record["ended_at"]) if record["ended_at"] else None,
        reason=record["reason"], notes=tuple(record["notes"]),
    )
