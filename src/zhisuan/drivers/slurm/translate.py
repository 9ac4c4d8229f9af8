"""A placed job (``LaunchSpec``) → the ``sbatch`` options and batch script that run it. Pure.

One Slurm job per launch: ``-N <workers>`` with one task per node, ``--nodelist`` the placed nodes,
``--gres=gpu:<type>:<devices per worker>``; the batch script exports the rendezvous variables and the
tenant's environment, then ``srun`` starts one task per node whose stdout/stderr go to per-rank files
``<log_dir>/<key>-<rank>.out|.err`` (srun's ``%t`` is the task's rank). Inside each task
``RANK = SLURM_PROCID`` and ``NODE_RANK = SLURM_NODEID``, and ``MASTER_ADDR`` is the address Slurm uses
for the first node of the allocation (its ``NodeAddr``; its name when that cannot be read), so the
rank numbering and the master always agree with Slurm's own node order — on a real cluster as on
loopback test nodes.

Slurm picks the device indices itself (there is no way to ask for GPUs 2 and 5 by index); with whole
nodes, the usual case for gangs, it is the same set. Fractional device shares are requested as whole
devices (the site has no ``shard`` gres configured here).
"""

from __future__ import annotations

import math
import re
import shlex
from collections.abc import Mapping
from dataclasses import dataclass

from zhisuan.drivers.base import LaunchSpec, rendezvous_env

ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
JOB_KEY = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")
# Variables the launch itself sets (or Slurm needs): a tenant's env may not override them.
RESERVED_ENV = frozenset({"MASTER_ADDR", "MASTER_PORT", "WORLD_SIZE", "RANK", "NODE_RANK", "LOCAL_RANK"})
RESERVED_ENV_PREFIXES = ("SLURM_", "SRUN_", "SBATCH_", "ZHISUAN_")
MAX_ENV_BYTES = 64 * 1024
IMAGE_COMMENT_PREFIX = "zhisuan:image-ignored="


class InvalidLaunch(ValueError):
    """This spec cannot be expressed as a Slurm job (the driver reports it as ``SubmitRejected``)."""


@dataclass(frozen=True)
class JobPaths:
    """Where one job lives on the (shared) filesystem: all absolute."""

    workdir: str  # the job's --chdir, inside the tenant's own directory
    log_dir: str  # the job's own: per-rank <key>-<rank>.out / .err and the batch script's <key>-batch.log
    payload: str  # where the driver writes spec.script, when there is one


@dataclass(frozen=True)
class SbatchRequest:
    args: tuple[str, ...]  # sbatch options; the script goes on stdin
    script: str
    payload: str | None  # the tenant's script text, to be written at JobPaths.payload


def time_limit_minutes(max_run_s: int) -> int:
    """Slurm's ``--time`` in minutes: ``ceil(max_run_s / 60)``, at least 1."""
    if max_run_s <= 0:
        raise InvalidLaunch(f"max_run_s must be positive, got {max_run_s}")
    return max(1, math.ceil(max_run_s / 60))


def rank_log_path(log_dir: str, key: str, rank: int, stream: str) -> str:
    return f"{log_dir}/{key}-{rank}.{'out' if stream == 'stdout' else 'err'}"


def checked_env(env: Mapping[str, str]) -> dict[str, str]:
    """The tenant's variables, refused when a name is malformed or reserved or the whole is oversized."""
    items = dict(env.items())
    for name, value in items.items():
        if not isinstance(name, str) or not ENV_NAME.fullmatch(name):
            raise InvalidLaunch(f"env: {name!r} is not a valid variable name")
        if name in RESERVED_ENV or name.startswith(RESERVED_ENV_PREFIXES):
            raise InvalidLaunch(f"env: {name} is set by the platform and cannot be overridden")
        if not isinstance(value, str) or "\0" in value:
            raise InvalidLaunch(f"env: {name} must be a string without NUL bytes")
    if sum(len(k) + len(v.encode()) for k, v in items.items()) > MAX_ENV_BYTES:
        raise InvalidLaunch(f"env: larger than {MAX_ENV_BYTES} bytes")
    return items


def _uniform_worker_shape(spec: LaunchSpec) -> tuple[int, str | None, int, int]:
    """(devices per worker, model, cpus per task, memory MiB) — Slurm asks the same of every node."""
    if not spec.workers:
        raise InvalidLaunch("a job needs at least one worker")
    nodes = [w.node for w in spec.workers]
    if len(set(nodes)) != len(nodes):
        raise InvalidLaunch("the Slurm driver runs one worker per node; two workers share a node")
    shapes = {(len(w.device_indices), w.model if w.device_indices else None) for w in spec.workers}
    if len(shapes) != 1:
        raise InvalidLaunch(f"every worker of a Slurm gang needs the same devices, got {sorted(map(str, shapes))}")
    ((devices, model),) = shapes
    cpus = max(1, max(math.ceil(w.cpu_milli / 1000) for w in spec.workers))
    memory = max(1, max(w.memory_mib for w in spec.workers))
    return devices, model, cpus, memory


def sbatch_args(spec: LaunchSpec, paths: JobPaths, gres_type: str | None, partition: str | None,
                run_as: tuple[int, int] | None = None) -> tuple[str, ...]:
    """sbatch's options; ``run_as`` (uid, gid) makes Slurm run the job as the tenant's own user."""
    if not JOB_KEY.fullmatch(spec.key):
        raise InvalidLaunch(f"key {spec.key!r} is not a safe Slurm job name")
    devices, model, cpus, memory = _uniform_worker_shape(spec)
    args = [f"--job-name={spec.key}", f"--nodes={len(spec.workers)}", "--ntasks-per-node=1",
            f"--nodelist={','.join(w.node for w in spec.workers)}"]
    if partition:
        args.append(f"--partition={partition}")
    if devices:
        if not gres_type:
            raise InvalidLaunch(f"no GPU gres type on this Slurm site holds {model}")
        args.append(f"--gres=gpu:{gres_type}:{devices}")
    args += [f"--cpus-per-task={cpus}", f"--mem={memory}M", f"--time={time_limit_minutes(spec.max_run_s)}",
             f"--chdir={paths.workdir}", f"--output={paths.log_dir}/{spec.key}-batch.log",
             "--no-requeue"]  # after a node fault the control plane restarts from the checkpoint, not Slurm
    if run_as is not None:
        args += [f"--uid={run_as[0]}", f"--gid={run_as[1]}"]
    if spec.image:
        args.append(f"--comment={IMAGE_COMMENT_PREFIX}{spec.image}")
    return tuple(args)


def progress_path(log_dir: str, key: str, rank: int | str) -> str:
    """``ZHISUAN_PROGRESS_FILE`` of a rank: in the job's own log directory (the tenant's, shared with the
    control plane), which the driver's ``poll`` reads rank 0's newest line from."""
    return f"{log_dir}/{key}-progress-{rank}.jsonl"


def _rank_wrapper(spec: LaunchSpec, paths: JobPaths) -> str:
    """What each srun task runs before the tenant's command: its rank, its progress file, and a non-CUDA
    vendor's variable."""
    lines = ['export RANK="$SLURM_PROCID" NODE_RANK="$SLURM_NODEID" LOCAL_RANK=0',
             "export ZHISUAN_PROGRESS_FILE=" + shlex.quote(progress_path(paths.log_dir, spec.key, "")[:-6])
             + '"$SLURM_PROCID".jsonl']
    vendor_env = spec.workers[0].visible_devices_env
    if spec.workers[0].device_indices and vendor_env and vendor_env != "CUDA_VISIBLE_DEVICES":
        # Slurm's gpu gres sets CUDA_VISIBLE_DEVICES; other vendors' runtimes read their own variable
        lines.append(f'export {vendor_env}="${{CUDA_VISIBLE_DEVICES:-$SLURM_STEP_GPUS}}"')
    lines.append('exec "$@"')
    return "; ".join(lines)


def batch_script(spec: LaunchSpec, paths: JobPaths) -> str:
    """The batch script (runs once, on the first node): rendezvous, env, then one srun task per node."""
    env = checked_env(spec.env)
    if spec.script is None and not spec.command:
        raise InvalidLaunch("command or script is required")
    _, _, cpus, _ = _uniform_worker_shape(spec)
    shared = rendezvous_env(spec, spec.workers[0], "$MASTER_ADDR")
    lines = [
        "#!/bin/sh",
        f"# zhisuan job {spec.job_id} attempt {spec.attempt} ({spec.key}), written by zhisuan.drivers.slurm",
        'first_node=$(scontrol show hostnames "$SLURM_JOB_NODELIST" | head -n 1)',
        "# the address Slurm itself reaches the first node at; its name when that cannot be read",
        "master_addr=$(scontrol -o show node \"$first_node\" 2>/dev/null | sed -n 's/.* NodeAddr=\\([^ ]*\\).*/\\1/p')",
        'export MASTER_ADDR="${master_addr:-$first_node}"',
    ]
    for name, value in shared.items():
        if name not in ("MASTER_ADDR", "RANK", "NODE_RANK"):
            lines.append(f"export {name}={shlex.quote(value)}")
    lines += [f"export {name}={shlex.quote(value)}" for name, value in sorted(env.items())]
    command = ("/bin/sh", paths.payload) if spec.script is not None else tuple(spec.command)
    srun = ["srun", "--ntasks-per-node=1", f"--cpus-per-task={cpus}", "--kill-on-bad-exit=1",
            f"--output={rank_log_path(paths.log_dir, spec.key, 0, 'stdout').removesuffix('-0.out')}-%t.out",
            f"--error={rank_log_path(paths.log_dir, spec.key, 0, 'stderr').removesuffix('-0.err')}-%t.err",
            "/bin/sh", "-c", _rank_wrapper(spec, paths), "zhisuan-worker", *command]
    lines.append("exec " + " ".join(shlex.quote(part) for part in srun))
    return "\n".join(lines) + "\n"


def translate(spec: LaunchSpec, paths: JobPaths, gres_type: str | None, partition: str | None = None,
              run_as: tuple[int, int] | None = None) -> SbatchRequest:
    """The whole submission; raises ``InvalidLaunch`` naming what cannot be expressed."""
    return SbatchRequest(sbatch_args(spec, paths, gres_type, partition, run_as), batch_script(spec, paths),
                         spec.script)
