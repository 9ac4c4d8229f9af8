"""A throw-away Slurm cluster on this machine: munged, slurmctld and N slurmd with fake GPUs, all as
root, all under one directory, loopback only, ports picked free.

Used by the Slurm driver's tests (one pytest session fixture) and by the end-to-end demo::

    python -m zhisuan.drivers.slurm.testcluster start --dir /tmp/zs-slurm --nodes 2 --gpus 8 --gpu-type h100
    export SLURM_CONF=/tmp/zs-slurm/etc/slurm.conf     # printed by start (also in /tmp/zs-slurm/env),
    export ZHISUAN_SLURM_ROOT=/tmp/zs-slurm/work       # with the driver's root for logs and workdirs
    python -m zhisuan.drivers.slurm.testcluster freeze sn2 --dir /tmp/zs-slurm   # the machine hangs
    python -m zhisuan.drivers.slurm.testcluster revive sn2 --dir /tmp/zs-slurm   # … is power-cycled
    python -m zhisuan.drivers.slurm.testcluster stop --dir /tmp/zs-slurm

How it works on a machine without GPUs (``../shared/engines-notes.md``): each node's GPUs are character
devices made with ``mknod`` (same numbers as ``/dev/null``) named in ``gres.conf`` with ``File=``, with
``AutoDetect=off`` and ``SlurmdParameters=config_overrides`` so the declared CPUs, memory and GPUs are
trusted on a small VM. Several ``slurmd -N <node>`` share 127.0.0.1, each with its own ``Port=``.

Every daemon runs in the foreground in its own session; its pid (= its process group) is recorded in
``<dir>/run/<name>.pid``. ``stop`` signals those groups and then every process whose environment names
this cluster's ``SLURM_CONF`` (job steps, ``slurmstepd``), so nothing is left running. ``start`` calls
``stop`` first and rebuilds the directory, so a second start or leftovers from a crash are harmless.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import secrets
import shutil
import signal
import socket
import stat
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

DAEMONS = ("munged", "slurmctld", "slurmd")
NODE_MARK = "ZHISUAN_TESTCLUSTER_NODE"
READY_TIMEOUT_S = 30.0


class ClusterStartFailed(RuntimeError):
    """The cluster did not come up; the message carries the tail of the daemons' logs."""


@dataclass(frozen=True)
class TestCluster:
    """A running throw-away cluster. ``env`` is what a driver or the Slurm CLI needs."""

    __test__ = False  # not a pytest test class despite its name

    directory: Path
    nodes: tuple[str, ...]
    gpus_per_node: int
    gpu_type: str
    cpus_per_node: int
    memory_mib_per_node: int
    partition: str = "zs"
    slurmd_timeout_s: int = 10  # a node silent this long is DOWN and its jobs end NODE_FAIL

    @property
    def conf_path(self) -> Path:
        return self.directory / "etc" / "slurm.conf"

    @property
    def env(self) -> dict[str, str]:
        """``SLURM_CONF`` for the Slurm CLI; ``ZHISUAN_SLURM_ROOT`` for the driver's files (logs, workdirs)."""
        return {"SLURM_CONF": str(self.conf_path), "ZHISUAN_SLURM_ROOT": str(self.workdir_root)}

    @property
    def workdir_root(self) -> Path:
        return self.directory / "work"


def free_ports(count: int) -> list[int]:
    """Distinct loopback ports free right now (held open together so they differ)."""
    sockets = []
    try:
        for _ in range(count):
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            sock.bind(("127.0.0.1", 0))
            sockets.append(sock)
        return [s.getsockname()[1] for s in sockets]
    finally:
        for sock in sockets:
            sock.close()


def slurm_conf_text(cluster: TestCluster, ctld_port: int, node_ports: list[int]) -> str:
    """The cluster's slurm.conf: every path under the cluster's directory, every address loopback."""
    d = cluster.directory
    lines = [
        f"ClusterName=zs{secrets.token_hex(3)}",
        "SlurmctldHost=localhost(127.0.0.1)",
        f"SlurmctldPort={ctld_port}",
        "AuthType=auth/munge",
        "CredType=cred/munge",
        f"AuthInfo=socket={d}/run/munge.socket",
        "SlurmUser=root",
        "SlurmdUser=root",
        f"StateSaveLocation={d}/state",
        f"SlurmdSpoolDir={d}/spool/%n",
        f"SlurmctldPidFile={d}/run/slurmctld.daemon.pid",
        f"SlurmdPidFile={d}/run/slurmd.%n.daemon.pid",
        f"SlurmctldLogFile={d}/log/slurmctld.log",
        f"SlurmdLogFile={d}/log/slurmd.%n.log",
        "ProctrackType=proctrack/pgid",
        "TaskPlugin=task/none",
        "MpiDefault=none",
        "SelectType=select/cons_tres",
        "SelectTypeParameters=CR_Core_Memory",
        "GresTypes=gpu",
        "JobAcctGatherType=jobacct_gather/none",
        "AccountingStorageType=accounting_storage/none",
        "JobCompType=jobcomp/none",
        "SchedulerParameters=sched_interval=2",
        "MinJobAge=600",  # finished jobs stay visible to squeue (no slurmdbd here)
        "ReturnToService=2",
        f"SlurmdTimeout={cluster.slurmd_timeout_s}",
        f"MessageTimeout={min(5, max(2, cluster.slurmd_timeout_s // 2))}",
        "SlurmdParameters=config_overrides",
        "KillWait=2",
    ]
    for node, port in zip(cluster.nodes, node_ports, strict=True):
        lines.append(
            f"NodeName={node} NodeHostname=localhost NodeAddr=127.0.0.1 Port={port} "
            f"CPUs={cluster.cpus_per_node} RealMemory={cluster.memory_mib_per_node} "
            f"Gres=gpu:{cluster.gpu_type}:{cluster.gpus_per_node} State=UNKNOWN"
        )
    lines.append(f"PartitionName={cluster.partition} Nodes=ALL Default=YES MaxTime=INFINITE State=UP")
    return "\n".join(lines) + "\n"


def gres_conf_text(cluster: TestCluster) -> str:
    lines = ["AutoDetect=off"]
    last = cluster.gpus_per_node - 1
    for node in cluster.nodes:
        names = f"nvidia[0-{last}]" if last > 0 else "nvidia0"
        files = f"{cluster.directory}/dev/{node}/{names}"
        lines.append(f"NodeName={node} Name=gpu Type={cluster.gpu_type} File={files}")
    return "\n".join(lines) + "\n"


def _make_layout(cluster: TestCluster) -> None:
    d = cluster.directory
    for sub in ("etc", "run", "log", "state", "spool", "munge", "work"):
        (d / sub).mkdir(parents=True, exist_ok=True)
    # jobs may run as tenants' own users: they need to reach slurm.conf, the munge socket and work/
    for shared in (d, d / "etc", d / "run", d / "work"):
        os.chmod(shared, 0o711 if shared in (d, d / "work") else 0o755)
    for node in cluster.nodes:
        (d / "spool" / node).mkdir(exist_ok=True)
        devdir = d / "dev" / node
        devdir.mkdir(parents=True, exist_ok=True)
        for i in range(cluster.gpus_per_node):
            # a character device with /dev/null's numbers: slurmd insists on a real device file per GPU
            os.mknod(devdir / f"nvidia{i}", 0o666 | stat.S_IFCHR, os.makedev(1, 3))
    key = d / "munge" / "munge.key"
    key.write_bytes(secrets.token_bytes(1024))
    os.chmod(key, 0o400)
    os.chmod(d / "munge", 0o700)


def _spawn(cluster: TestCluster, name: str, argv: list[str], extra_env: dict[str, str] | None = None) -> None:
    log = open(cluster.directory / "log" / f"{name}.console", "ab")  # noqa: SIM115 - handed to the child
    env = {**os.environ, **cluster.env, **(extra_env or {})}
    proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, env=env,
                            start_new_session=True, cwd=cluster.directory)
    log.close()
    (cluster.directory / "run" / f"{name}.pid").write_text(f"{proc.pid}\n")


def start_munged(cluster: TestCluster) -> None:
    d = cluster.directory
    _spawn(cluster, "munged", ["munged", "--foreground", "--force", f"--socket={d}/run/munge.socket",
                               f"--key-file={d}/munge/munge.key", f"--pid-file={d}/run/munged.daemon.pid",
                               f"--log-file={d}/log/munged.log", f"--seed-file={d}/munge/munged.seed"])
    _wait(lambda: (d / "run" / "munge.socket").exists(), "munged socket", cluster)


def start_controller(cluster: TestCluster, *, wait_for_nodes: bool = True) -> None:
    """Start (or restart, keeping its saved state) slurmctld; by default until every node has registered
    (a restarted controller reports its nodes ``unknown`` until their slurmd answer)."""
    _spawn(cluster, "slurmctld", ["slurmctld", "-D", "-f", str(cluster.conf_path)])
    _wait(lambda: _scontrol_ping(cluster), "slurmctld answering", cluster)
    if wait_for_nodes:
        _wait(lambda: _all_registered(cluster), "all nodes registered", cluster)


def stop_controller(cluster: TestCluster) -> None:
    """Stop slurmctld only (nodes and jobs keep running): for engine-unavailable tests."""
    _kill_recorded(cluster.directory, "slurmctld")


def stop_node(cluster: TestCluster, node: str) -> None:
    """Kill one node's slurmd (fault injection: slurmctld marks it not responding after SlurmdTimeout)."""
    _kill_recorded(cluster.directory, f"slurmd.{node}")


def wait_idle(cluster: TestCluster) -> None:
    _wait(lambda: _all_idle(cluster), "all nodes idle", cluster)


def start_node(cluster: TestCluster, node: str) -> None:
    # the mark is inherited by the node's slurmstepd processes: freeze_node finds them by it
    _spawn(cluster, f"slurmd.{node}", ["slurmd", "-D", "-N", node, "-f", str(cluster.conf_path)],
           extra_env={NODE_MARK: node})


def node_processes(cluster: TestCluster, node: str) -> list[int]:
    """Everything of ``node`` on this machine: its slurmd and slurmstepd (marked ``NODE_MARK=<node>``) and
    its jobs' tasks (``SLURMD_NODENAME=<node>`` with this cluster's ``SLURM_CONF``)."""
    conf = f"SLURM_CONF={cluster.conf_path}".encode()
    marks = (f"{NODE_MARK}={node}".encode(), f"SLURMD_NODENAME={node}".encode())
    pids = []
    for pid in _pids_with_env(conf):
        try:
            environ = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
        except OSError:
            continue
        if any(mark in environ for mark in marks):
            pids.append(pid)
    return pids


def freeze_node(cluster: TestCluster, node: str) -> list[int]:
    """Fault injection: the machine hangs. Its slurmd, step daemons and job processes are stopped
    (SIGSTOP), so nothing of it answers, runs or writes any more — and, as when a machine dies, no
    connection is reset: the controller and the other nodes only see silence until ``SlurmdTimeout``
    (killing the processes instead would tell srun at once through reset connections). Returns the pids;
    ``revive_node`` ends them and starts the node again."""
    pids = node_processes(cluster, node)
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGSTOP)
    return pids


def revive_node(cluster: TestCluster, node: str) -> None:
    """The hung machine is power-cycled: its processes are killed and its slurmd starts afresh
    (``ReturnToService=2`` brings it back as soon as it registers)."""
    for pid in node_processes(cluster, node):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    (cluster.directory / "run" / f"slurmd.{node}.pid").unlink(missing_ok=True)
    start_node(cluster, node)


def start(directory: Path | str, nodes: int = 2, gpus: int = 8, gpu_type: str = "h100",
          cpus: int = 16, memory_mib: int = 65536, slurmd_timeout_s: int = 10) -> TestCluster:
    """Start a fresh cluster in ``directory`` (anything already running there is stopped first)."""
    for daemon in DAEMONS:
        if shutil.which(daemon) is None:
            raise ClusterStartFailed(f"{daemon} is not installed (Debian packages: slurm-wlm munge)")
    directory = Path(directory).resolve()
    stop(directory)
    shutil.rmtree(directory, ignore_errors=True)
    cluster = TestCluster(directory, tuple(f"sn{i + 1}" for i in range(nodes)), gpus, gpu_type, cpus, memory_mib,
                          slurmd_timeout_s=slurmd_timeout_s)
    _make_layout(cluster)
    ports = free_ports(1 + nodes)
    cluster.conf_path.write_text(slurm_conf_text(cluster, ports[0], ports[1:]))
    (directory / "etc" / "gres.conf").write_text(gres_conf_text(cluster))
    (directory / "env").write_text("".join(f"{k}={v}\n" for k, v in cluster.env.items()))
    try:
        start_munged(cluster)
        start_controller(cluster, wait_for_nodes=False)
        for node in cluster.nodes:
            start_node(cluster, node)
        _wait(lambda: _all_idle(cluster), "all nodes idle", cluster)
    except ClusterStartFailed:
        stop(directory)
        raise
    return cluster


def stop(directory: Path | str) -> None:
    """Stop every daemon and job process of the cluster in ``directory``; safe when nothing runs."""
    directory = Path(directory).resolve()
    run = directory / "run"
    names = [p.name.removesuffix(".pid") for p in run.glob("*.pid") if not p.name.endswith(".daemon.pid")]
    # slurmd first so no new step starts, munged last so daemons can still talk while they go
    order = sorted(names, key=lambda n: (n.startswith("munged"), n.startswith("slurmctld"), n))
    for name in order:
        _kill_recorded(directory, name)
    conf = f"SLURM_CONF={directory / 'etc' / 'slurm.conf'}".encode()
    for pid in _pids_with_env(conf):
        _kill_group_then_pid(pid)


def _kill_recorded(directory: Path, name: str) -> None:
    pid_file = directory / "run" / f"{name}.pid"
    try:
        pid = int(pid_file.read_text())
    except (OSError, ValueError):
        return
    _kill_group_then_pid(pid)
    pid_file.unlink(missing_ok=True)


def _kill_group_then_pid(pid: int) -> None:
    for sig in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.killpg(pid, sig)
            if sig == signal.SIGTERM:
                os.killpg(pid, signal.SIGCONT)  # a frozen node's processes (freeze_node) must see the TERM
        except (ProcessLookupError, PermissionError):
            try:
                os.kill(pid, sig)
                if sig == signal.SIGTERM:
                    os.kill(pid, signal.SIGCONT)
            except (ProcessLookupError, PermissionError):
                return
        deadline = time.monotonic() + 3.0
        while time.monotonic() < deadline:
            if not _alive(pid):
                return
            time.sleep(0.05)


def _alive(pid: int) -> bool:
    with contextlib.suppress(ChildProcessError):
        os.waitpid(pid, os.WNOHANG)  # reap it if it is our child
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def _pids_with_env(needle: bytes) -> list[int]:
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            if needle in (entry / "environ").read_bytes().split(b"\0"):
                pids.append(int(entry.name))
        except OSError:
            continue
    return pids


def _cli_env(cluster: TestCluster) -> dict[str, str]:
    return {**os.environ, **cluster.env}


def _scontrol_ping(cluster: TestCluster) -> bool:
    out = subprocess.run(["scontrol", "ping"], env=_cli_env(cluster), capture_output=True, text=True, timeout=10)
    return "is UP" in out.stdout


def _node_states(cluster: TestCluster) -> dict[str, str]:
    """``{node: state}`` as ``sinfo %T`` prints it (a trailing ``*``: not responding)."""
    out = subprocess.run(["sinfo", "-h", "-N", "-o", "%N %T"], env=_cli_env(cluster), capture_output=True,
                         text=True, timeout=10)
    return dict(line.split() for line in out.stdout.splitlines() if line.strip())


def _all_idle(cluster: TestCluster) -> bool:
    states = _node_states(cluster)
    return all(states.get(node) == "idle" for node in cluster.nodes)


def _all_registered(cluster: TestCluster) -> bool:
    states = _node_states(cluster)
    return all(node in states and not states[node].endswith("*") and states[node] not in ("unknown", "down")
               for node in cluster.nodes)


def _wait(ready: object, what: str, cluster: TestCluster) -> None:
    assert callable(ready)
    deadline = time.monotonic() + READY_TIMEOUT_S
    while time.monotonic() < deadline:
        try:
            if ready():
                return
        except (subprocess.TimeoutExpired, OSError):
            pass
        time.sleep(0.2)
    raise ClusterStartFailed(f"timed out waiting for {what}\n{_log_tails(cluster.directory)}")


def _log_tails(directory: Path, lines: int = 15) -> str:
    parts = []
    for log in sorted((directory / "log").glob("*")):
        tail = log.read_text(errors="replace").splitlines()[-lines:]
        parts.append(f"--- {log.name}\n" + "\n".join(tail))
    return "\n".join(parts)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m zhisuan.drivers.slurm.testcluster",
                                     description="Start or stop a throw-away Slurm cluster with fake GPUs; "
                                                 "freeze a node (the machine hangs) or revive it.")
    parser.add_argument("action", choices=("start", "stop", "freeze", "revive"))
    parser.add_argument("node", nargs="?", help="freeze/revive: the node (sn1, sn2, …)")
    parser.add_argument("--dir", required=True, help="directory holding everything of this cluster")
    parser.add_argument("--nodes", type=int, default=2)
    parser.add_argument("--gpus", type=int, default=8, help="fake GPUs per node")
    parser.add_argument("--gpu-type", default="h100", help="the gres type, e.g. h100")
    parser.add_argument("--slurmd-timeout", type=int, default=10,
                        help="seconds of silence before Slurm declares a node DOWN")
    args = parser.parse_args(argv)
    if args.action == "stop":
        stop(args.dir)
        return 0
    if args.action in ("freeze", "revive"):
        if not args.node:
            parser.error(f"{args.action} needs a node")
        cluster = _running(Path(args.dir).resolve(), args.node)
        if args.action == "freeze":
            print(f"froze {args.node}: pids {' '.join(map(str, freeze_node(cluster, args.node)))}")
        else:
            revive_node(cluster, args.node)
        return 0
    try:
        cluster = start(args.dir, nodes=args.nodes, gpus=args.gpus, gpu_type=args.gpu_type,
                        slurmd_timeout_s=args.slurmd_timeout)
    except ClusterStartFailed as exc:
        print(exc, file=sys.stderr)
        return 1
    for name, value in cluster.env.items():
        print(f"{name}={value}")
    return 0


def _running(directory: Path, node: str) -> TestCluster:
    """Enough of a started cluster to find and restart ``node`` (its slurm.conf is in ``directory``)."""
    return TestCluster(directory, (node,), 0, "", 0, 0)


if __name__ == "__main__":
    sys.exit(main())
