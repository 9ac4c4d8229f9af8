"""The Slurm driver: ``zhisuan.drivers.base.Driver`` through Slurm's own CLI (sbatch, squeue --json,
sinfo --json, scancel, scontrol), each call with a short timeout.

- A Slurm job id is the handle. ``submit`` first looks for a job named ``spec.key`` (squeue keeps
  finished jobs for ``MinJobAge``) and returns it, so a control plane that restarts mid-submit never
  starts the work twice.
- Files live under ``root`` (on a real cluster: a filesystem shared by the control plane and the
  nodes), laid out by ``layout.FileLayout``: ``root/tenants/<tenant>/<workdir>`` is the job's working
  directory, ``root/logs/<key>/`` holds its per-rank logs ``<key>-<rank>.out|.err``.
- ``run_as(tenant)`` (optional; the control plane must be root) gives the tenant's own user: the job runs
  as it (``sbatch --uid/--gid``) and its directories are its own (0700), so tenants cannot read each
  other's files. Without it jobs run as the control plane's user.
- The control plane's own environment is not passed on to jobs: the CLI runs with ``PATH``, ``HOME``,
  ``LANG`` and ``SLURM_CONF`` only, and the batch script exports what the job should see.
- ``squeue --json`` ignores its filters in 22.05, so ``submit`` and ``poll`` read the whole queue once
  per call (finished jobs included): one call for any number of handles.
- ``slurmctld`` down, a CLI timeout or a missing CLI → ``EngineUnavailable`` (nothing changed);
  ``sbatch`` refusing the job, or a spec Slurm cannot express → ``SubmitRejected``.
"""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any, ClassVar

from zhisuan.agent.jobs.progress import read_newest
from zhisuan.catalog.loader import Catalog, load_catalog
from zhisuan.drivers.base import (
    STREAMS,
    EngineJobState,
    EngineUnavailable,
    ImportedNode,
    LaunchSpec,
    LogChunk,
    SubmitRejected,
)
from zhisuan.drivers.slurm.gres import gres_type_for_model
from zhisuan.drivers.slurm.layout import FileLayout, TenantIdentity
from zhisuan.drivers.slurm.parse import (
    SlurmJob,
    SlurmOutputError,
    checked,
    engine_state,
    gres_devices,
    imported_nodes,
    job_named,
    parse_jobs,
)
from zhisuan.drivers.slurm.translate import JOB_KEY, InvalidLaunch, progress_path, rank_log_path, translate

# sbatch's words for "the controller is not there" (anything else from sbatch is a refusal of the job)
UNREACHABLE_WORDS = ("Unable to contact slurm controller", "Socket timed out", "Connection refused",
                     "Zero Bytes were transmitted", "Slurm backup controller in standby mode",
                     "Transport endpoint is not connected", "Unable to establish", "Could not establish")
LOST_REASON = "Slurm does not know this job (never submitted, or purged after MinJobAge)"
SAFE_ENV = ("PATH", "HOME", "LANG", "LC_ALL", "TZ")


def default_root() -> Path:
    return Path(os.environ.get("ZHISUAN_SLURM_ROOT") or Path.home() / ".zhisuan" / "slurm")


class SlurmDriver:
    kind: ClassVar[str] = "slurm"

    def __init__(self, conf_path: str | None = None, partition: str | None = None, *,
                 root: str | Path | None = None, catalog: Catalog | None = None,
                 gres_models: Mapping[str, str] | None = None, timeout_s: float = 15.0,
                 run_as: Callable[[str], TenantIdentity] | None = None) -> None:
        self.conf_path = conf_path
        self.partition = partition
        self.root = Path(root) if root is not None else default_root()
        self.catalog = catalog if catalog is not None else load_catalog()
        self.gres_models = dict(gres_models or {})
        self.timeout_s = timeout_s
        self.run_as = run_as
        self.layout = FileLayout(self.root)

    # ---- the CLI -------------------------------------------------------------------------------
    def _env(self) -> dict[str, str]:
        env = {k: os.environ[k] for k in SAFE_ENV if k in os.environ}
        env.setdefault("PATH", "/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin")
        conf = self.conf_path or os.environ.get("SLURM_CONF")
        if conf:
            env["SLURM_CONF"] = conf
        return env

    def _run(self, argv: Sequence[str], stdin: str | None = None) -> subprocess.CompletedProcess[str]:
        try:
            return subprocess.run(list(argv), input=stdin, capture_output=True, text=True, env=self._env(),
                                  timeout=self.timeout_s, check=False)
        except subprocess.TimeoutExpired as exc:
            raise EngineUnavailable(f"{argv[0]} did not answer within {self.timeout_s:g} s") from exc
        except OSError as exc:
            raise EngineUnavailable(f"{argv[0]} cannot run: {exc}") from exc

    def _json(self, argv: Sequence[str]) -> Mapping[str, Any]:
        done = self._run(argv)
        try:
            document = json.loads(done.stdout)
        except json.JSONDecodeError as exc:
            raise EngineUnavailable(f"{argv[0]}: {done.stderr.strip() or 'no JSON output'}") from exc
        try:
            # squeue/sinfo put "cannot contact the controller" into the JSON's errors list
            return _checked_document(document)
        except SlurmOutputError as exc:
            raise EngineUnavailable(f"{argv[0]}: {exc}") from exc

    def _jobs(self) -> list[SlurmJob]:
        return parse_jobs(self._json(["squeue", "--json"]))

    # ---- the interface -------------------------------------------------------------------------
    def import_inventory(self) -> list[ImportedNode]:
        return imported_nodes(self._json(["sinfo", "--json"]), self.catalog, self.gres_models)

    def submit(self, spec: LaunchSpec) -> str:
        if not JOB_KEY.fullmatch(spec.key):
            raise SubmitRejected(f"key {spec.key!r} is not a safe Slurm job name")
        existing = job_named(self._jobs(), spec.key)
        if existing is not None:
            self.layout.remember(existing.job_id, spec.key)
            return existing.job_id
        try:
            owner = self._owner(spec.tenant)
            paths = self.layout.job_paths(spec)
            request = translate(spec, paths, self._gres_type(spec), self.partition, owner)
            self.layout.prepare(spec, paths, owner, request.payload)
        except InvalidLaunch as exc:
            raise SubmitRejected(str(exc)) from exc
        done = self._run(["sbatch", "--parsable", *request.args], stdin=request.script)
        if done.returncode != 0:
            words = done.stderr.strip() or done.stdout.strip() or f"sbatch exited {done.returncode}"
            if any(w in words for w in UNREACHABLE_WORDS):
                raise EngineUnavailable(words)
            raise SubmitRejected(words.removeprefix("sbatch: error: "))
        job_id = done.stdout.strip().split(";")[0]
        self.layout.remember(job_id, spec.key)
        return job_id

    def poll(self, handles: Sequence[str]) -> dict[str, EngineJobState]:
        """Each job's state; a running job's carries rank 0's newest progress line (``ZHISUAN_PROGRESS_FILE``
        is in the job's own log directory, which the control plane shares)."""
        by_id = {job.job_id: job for job in self._jobs()}
        lost = EngineJobState("lost", reason=LOST_REASON)
        out = {h: engine_state(by_id[h]) if h in by_id else lost for h in handles}
        for handle, state in out.items():
            key = self.layout.key_of(handle) if state.state == "running" and handle.isdigit() else None
            if key is not None:
                line = read_newest(Path(progress_path(str(self.layout.log_dir(key)), key, 0)))
                out[handle] = replace(state, progress=line) if line else state
        return out

    def logs(self, handle: str, rank: int, stream: str, offset: int = 0, limit: int = 65536) -> LogChunk:
        if stream not in STREAMS:
            raise ValueError(f"stream must be one of {STREAMS}")
        key = self._key_of(handle)
        if key is None:
            return LogChunk("", offset, complete=True)
        path = Path(rank_log_path(str(self.layout.log_dir(key)), key, rank, stream))
        try:
            with path.open("rb") as f:
                f.seek(max(0, offset))
                data = f.read(max(0, limit))
        except FileNotFoundError:
            data = b""
        if len(data) == limit:  # more may follow: never cut a character in two
            data = data[:complete_utf8_length(data)]
        next_offset = max(0, offset) + len(data)
        complete = False
        if len(data) < limit:  # at the end of what is written: is there more to come?
            try:
                complete = self.poll([handle])[handle].ended
            except EngineUnavailable:
                complete = False  # the files stay readable while the controller is away
        return LogChunk(data.decode("utf-8", errors="replace"), next_offset, complete=complete)

    def cancel(self, handle: str) -> None:
        if not handle.isdigit():
            return
        done = self._run(["scancel", handle])
        if done.returncode != 0:
            words = done.stderr.strip()
            if any(w in words for w in UNREACHABLE_WORDS):
                raise EngineUnavailable(words)
            # "Invalid job id specified" / "Job/step already completing or completed": nothing to do

    def drain(self, node: str, reason: str) -> None:
        self._scontrol_update(node, "drain", reason or "drained by zhisuan")

    def resume(self, node: str) -> None:
        self._scontrol_update(node, "resume", None)

    # ---- helpers -------------------------------------------------------------------------------
    def _scontrol_update(self, node: str, state: str, reason: str | None) -> None:
        argv = ["scontrol", "update", f"nodename={node}", f"state={state}"]
        if reason is not None:
            argv.append(f"reason={reason}")
        done = self._run(argv)
        if done.returncode != 0:
            words = done.stderr.strip()
            if any(w in words for w in UNREACHABLE_WORDS):
                raise EngineUnavailable(words)
            raise ValueError(f"scontrol update {node} state={state}: {words}")

    def _owner(self, tenant: str) -> tuple[int, int] | None:
        identity = self.run_as(tenant) if self.run_as is not None else None
        if identity is None or identity.uid is None:
            return None
        return identity.uid, identity.gid if identity.gid is not None else identity.uid

    def _gres_type(self, spec: LaunchSpec) -> str | None:
        model = spec.workers[0].model if spec.workers else None
        if not model or not spec.workers[0].device_indices:
            return None
        return gres_type_for_model(model, self._gres_types_on({w.node for w in spec.workers}), self.catalog,
                                   self.gres_models)

    def _gres_types_on(self, nodes: set[str]) -> list[str]:
        """The GPU gres types of the placed nodes as Slurm spells them (``--gres`` needs those, not catalog
        keys); of the whole site when Slurm knows none of these nodes (sbatch then names the problem)."""
        reported = self._json(["sinfo", "--json"]).get("nodes", [])
        types = [(str(n.get("name")), t) for n in reported for t, _ in gres_devices(str(n.get("gres") or ""))]
        placed = [t for name, t in types if name in nodes]
        return placed or [t for _, t in types]

    def _key_of(self, handle: str) -> str | None:
        if not handle.isdigit():
            return None
        key = self.layout.key_of(handle)
        if key is not None:
            return key
        job = next((j for j in self._jobs() if j.job_id == handle), None)
        return job.name if job is not None and JOB_KEY.fullmatch(job.name) else None


def _checked_document(document: Any) -> Mapping[str, Any]:
    if not isinstance(document, dict):
        raise SlurmOutputError("not a JSON object")
    return checked(document)


def complete_utf8_length(data: bytes) -> int:
    """Length of the longest prefix of ``data`` that does not end inside a UTF-8 character (all of it when
    that prefix would be empty, so paging always moves on)."""
    for back in range(1, min(4, len(data)) + 1):
        byte = data[-back]
        if byte & 0xC0 == 0x80:  # a continuation byte: look further back for the lead byte
            continue
        width = 1 if byte < 0x80 else 2 if byte >> 5 == 0b110 else 3 if byte >> 4 == 0b1110 else 4
        cut = len(data) if width <= back else len(data) - back
        return cut or len(data)
    return len(data)
