"""The process that runs one worker's command and writes how it ended — standalone, stdlib only.

Run as ``python -I -S wrapper.py <spec.json>`` in a new session (it is the process-group leader), so
it outlives the agent: its exit record is there for whichever runner looks next. It ignores SIGTERM,
SIGINT and SIGHUP so a stop signal sent to the whole group ends the command while the wrapper stays to
record it. The command's process (forked, same group) joins the worker's cgroup, sets rlimits, drops to
the tenant's user, then creates (if missing) and enters the working directory *as that user*, and execs
with exactly the spec's environment. A close-on-exec pipe carries an exec failure back (command not
found → 127).

Time limit: after ``max_run_s`` the group gets SIGTERM, then SIGKILL after ``kill_grace_s``. When the
command has ended, the rest of the group (stray background processes) is killed too.
"""

from __future__ import annotations

import json
import os
import resource
import select
import signal
import sys
import time

HELD_SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)
RESET_SIGNALS = (*HELD_SIGNALS, signal.SIGPIPE, signal.SIGXFSZ)


def _write_json(path: str, record: dict) -> None:  # type: ignore[type-arg]
    temporary = f"{path}.tmp"
    with open(temporary, "w") as handle:
        json.dump(record, handle)  # no fsync: a machine crash ends the worker and this record alike
    os.rename(temporary, path)


def _exec_command(spec: dict, error_fd: int) -> None:  # type: ignore[type-arg]
    """In the forked child: never returns."""
    step = "prepare"
    try:
        for number in RESET_SIGNALS:
            signal.signal(number, signal.SIG_DFL)
        # A stop writes its record *before* signalling the group, so a SIGTERM this process ignored
        # (it came between the fork and the reset above) shows here: never run a cancelled command.
        if os.path.exists(spec["cancel_path"]):
            os._exit(128 + signal.SIGTERM)
        if spec["cgroup_procs"]:
            step = "join cgroup"
            with open(spec["cgroup_procs"], "w") as procs:
                procs.write(str(os.getpid()))
        step = "set limits"
        for which, soft, hard in spec["rlimits"]:
            resource.setrlimit(which, (soft, hard))
        if spec["uid"] is not None:
            step = "switch user"
            os.setgroups([])
            os.setgid(spec["gid"])
            os.setuid(spec["uid"])
        step = "enter workdir"  # created and entered as the tenant: a symlink swapped in gains nothing
        os.makedirs(spec["cwd"], exist_ok=True)
        os.chdir(spec["cwd"])
        step = "exec"
        _exec_on_path(spec["argv"], spec["env"])
    except BaseException as exc:  # noqa: BLE001 - anything here must reach the parent, then exit
        missing = step == "exec" and isinstance(exc, (FileNotFoundError, NotADirectoryError))
        code = 127 if missing else 126
        what = f"command not found: {spec['argv'][0]}" if missing else f"cannot {step}: {exc}"
        try:
            os.write(error_fd, json.dumps({"code": code, "message": what}).encode())
            os.write(2, f"zhisuan: {what}\n".encode())
        finally:
            os._exit(code)


def _exec_on_path(argv: list[str], env: dict[str, str]) -> None:
    """``execvpe`` by hand: ``os.execvpe`` imports modules lazily, and after the switch to the tenant's
    user the interpreter's own library may be unreadable (e.g. under root's home)."""
    program = argv[0]
    if "/" in program:
        os.execve(program, argv, env)
    denied: OSError | None = None
    for directory in env.get("PATH", "").split(":"):
        try:
            os.execve(os.path.join(directory or ".", program), argv, env)
        except (FileNotFoundError, NotADirectoryError):
            continue
        except PermissionError as exc:
            denied = exc
    raise denied or FileNotFoundError(program)


def _kill_all(spec: dict, group: int) -> None:  # type: ignore[type-arg]
    """SIGKILL to the worker's cgroup (reaches processes that left the group with setsid) and group."""
    if spec["cgroup_procs"]:
        try:
            with open(os.path.join(os.path.dirname(spec["cgroup_procs"]), "cgroup.kill"), "w") as kill:
                kill.write("1")
        except OSError:
            pass  # kernels before 5.14 have no cgroup.kill; the group kill below still runs
    os.killpg(group, signal.SIGKILL)


def _wait(pidfd: int, timeout: float) -> bool:
    """True when the process behind ``pidfd`` has ended within ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            return False
        ready, _, _ = select.select([pidfd], [], [], remaining)
        if ready:
            return True


def main(spec_path: str) -> None:
    with open(spec_path) as handle:
        spec = json.load(handle)
    for number in HELD_SIGNALS:
        signal.signal(number, signal.SIG_IGN)
    read_fd, write_fd = os.pipe()  # both close-on-exec: EOF without data means the exec happened
    child = os.fork()
    if child == 0:
        os.close(read_fd)
        _exec_command(spec, write_fd)
    os.close(write_fd)
    pidfd = os.pidfd_open(child)
    with os.fdopen(read_fd, "rb") as errors:
        failure = errors.read()
    record: dict = {"exit_code": None, "signal": None, "timed_out": False, "error": None}  # type: ignore[type-arg]
    if failure:
        record["error"] = json.loads(failure)["message"]
    group = os.getpgrp()
    if not _wait(pidfd, float(spec["max_run_s"])):
        record["timed_out"] = True
        os.killpg(group, signal.SIGTERM)
        if not _wait(pidfd, float(spec["kill_grace_s"])):
            record.update(signal=int(signal.SIGKILL), ended_at=time.time())
            _write_json(spec["exit_path"], record)
            _kill_all(spec, group)  # ends this wrapper too; the record is already written
    _, status = os.waitpid(child, 0)
    if os.WIFSIGNALED(status):
        record["signal"] = os.WTERMSIG(status)
    record["exit_code"] = os.waitstatus_to_exitcode(status) if os.WIFEXITED(status) else 128 + record["signal"]
    record["ended_at"] = time.time()
    _write_json(spec["exit_path"], record)
    _kill_all(spec, group)  # stray background processes of the command; ends this wrapper too


if __name__ == "__main__":
    main(sys.argv[1])
