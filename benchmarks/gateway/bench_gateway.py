"""zhisuan's gateway vs LiteLLM's proxy, side by side, in front of the same fast fake upstream.

    uv run python benchmarks/gateway/bench_gateway.py --repeats 3 --duration 8 \
        --out benchmarks/gateway/results/<date>.json

LiteLLM runs from a virtualenv of its own, ``~/.cache/zhisuan-bench/litellm-1.80.17``, created on the
first run (``python -m venv`` + ``pip install 'litellm[proxy]==1.80.17'``); no other LiteLLM version
is accepted (1.82.7 and 1.82.8 were malicious). ``--litellm none`` measures zhisuan alone.

Layout on a 2-core box: the gateway under test is pinned to core 0 (taskset); the fake upstream
and the load client share core 1. Every repeat runs, for non-streaming then streaming: the upstream
alone (baseline), zhisuan and LiteLLM (the order flips every repeat) with 32 concurrent keep-alive
connections (load.py), then one connection per target taking turns request by request — upstream
alone, zhisuan, LiteLLM, upstream alone, … (interleaved.py) — for the per-request latency at c=1,
so that a noisy neighbour's disk flushes or CPU bursts hit every target alike.
Reported per run: requests/s, p50/p99 latency added over the upstream alone, CPU time of the gateway
process per request (utime + stime from /proc, children included). Finally a metering check
(metering_check.py): N requests with a key of their own — plain, streamed, and streams the client
aborts part-way — must leave exactly N usage records in the gateway's sink, with matching tokens.

zhisuan runs with keys (an in-memory key grant), limits (RPM, TPM and a token budget per key and
per tenant, shared through Redis) and metering (usage events committed with fdatasync to the
spool before each response, shipped to a SQLite sink) switched on.
LiteLLM runs with one worker and its master key (auth on); its per-key limits and spend tracking
need its PostgreSQL schema (Prisma), which is not set up here.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx

HERE = Path(__file__).resolve().parent
PY = sys.executable
KEY = "sk-bench-zhisuan-key"
LITELLM_KEY = "sk-bench-litellm-master"
METER_KEY = "sk-bench-zhisuan-meter"
# The one LiteLLM release this benchmark runs. 1.82.7 and 1.82.8 were published with malicious code:
# never install them, nor any version this file was not reviewed against.
LITELLM_VERSION = "1.80.17"
LITELLM_CACHE = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "zhisuan-bench"


def installed_version(python: Path, package: str) -> str | None:
    probe = f"import importlib.metadata as m; print(m.version({package!r}))"
    r = subprocess.run([str(python), "-c", probe], capture_output=True, text=True)
    return r.stdout.strip() if r.returncode == 0 else None


def ensure_litellm(version: str = LITELLM_VERSION, cache: Path = LITELLM_CACHE) -> Path:
    """The litellm CLI of a virtualenv of its own under ``cache``, created with
    ``pip install 'litellm[proxy]==<version>'`` when missing. Any version but the pinned one is refused."""
    if version != LITELLM_VERSION:
        raise SystemExit(f"refusing litellm {version}: this benchmark runs litellm {LITELLM_VERSION} only")
    venv = cache / f"litellm-{version}"
    python, cli = venv / "bin" / "python", venv / "bin" / "litellm"
    if cli.exists() and installed_version(python, "litellm") == version:
        return cli
    print(f"creating {venv} with litellm[proxy]=={version} (once)", file=sys.stderr, flush=True)
    subprocess.run([sys.executable, "-m", "venv", "--clear", str(venv)], check=True)
    subprocess.run([str(python), "-m", "pip", "install", "--quiet", f"litellm[proxy]=={version}"], check=True)
    got = installed_version(python, "litellm")
    if got != version:  # a resolver surprise must not run an unreviewed release
        raise SystemExit(f"{venv} holds litellm {got}, not {version}; remove it")
    return cli


def wait(url: str, timeout: float = 90, headers: dict[str, str] | None = None) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if httpx.get(url, timeout=2, headers=headers).status_code < 500:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise TimeoutError(url)


def cpu_seconds(pid: int) -> float:
    """utime + stime of a process and its reaped children, in seconds."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    ticks = sum(int(x) for x in fields[11:15])
    return ticks / os.sysconf("SC_CLK_TCK")


def tree_cpu(pid: int) -> float:
    total = cpu_seconds(pid)
    for child in Path(f"/proc/{pid}/task").iterdir():
        kids = child / "children"
        if kids.exists():
            for c in kids.read_text().split():
                with contextlib.suppress(FileNotFoundError, ProcessLookupError):
                    total += tree_cpu(int(c))
    return total


def load(url: str, key: str, *, stream: bool, concurrency: int, duration: float) -> dict[str, Any]:
    args = ["taskset", "-c", "1", PY, str(HERE / "load.py"), "--url", url, "--key", key, "--concurrency",
            str(concurrency), "--duration", str(duration)]
    if stream:
        args.append("--stream")
    out = subprocess.run(args, capture_output=True, text=True, check=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def start_zhisuan(work: Path, upstream_port: int, port: int, fsync: bool = True,
                  slow_port: int | None = None, src: Path | None = None) -> subprocess.Popen[bytes]:
    """``src``: run the gateway from that source tree (a checkout's ``src``) instead of this one."""
    limits = {"rpm": 100_000_000, "tpm": 10_000_000_000, "token_budget": 10**15}
    # slots: the gateway caps what it sends the replica at once (its fair queue's fast path: a counter);
    # 64 > the 32 connections of the load, so nothing waits — what is measured is the cap's cost.
    models: dict[str, Any] = {"fake-model": [{"id": "up-0", "host": "127.0.0.1", "port": upstream_port,
                                              "slots": 64}]}
    if slow_port is not None:  # streams slowly enough for the metering check's aborts to land mid-stream
        models["slow-model"] = [{"id": "slow-0", "host": "127.0.0.1", "port": slow_port}]
    cfg = {"spool_dir": str(work / "spool"), "port": port, "fsync": fsync,
           "redis_url": "redis://127.0.0.1:6379/0", "sink": f"sqlite:{work / 'usage.sqlite'}", "models": models,
           "keys": [{"token": token, "key_id": f"{name}-{os.getpid()}", "tenant_id": f"bench-{os.getpid()}",
                     "key_limits": limits, "tenant_limits": limits}
                    for name, token in (("bench", KEY), ("meter", METER_KEY))]}
    (work / "zhisuan.json").write_text(json.dumps(cfg))
    env = os.environ | ({"PYTHONPATH": str(src.resolve())} if src is not None else {})
    p = subprocess.Popen(["taskset", "-c", "0", PY, "-m", "zhisuan.gateway", "--config", str(work / "zhisuan.json")],
                         stdout=subprocess.DEVNULL, start_new_session=True, env=env)
    wait(f"http://127.0.0.1:{port}/health")
    return p


def start_litellm(litellm: str, work: Path, upstream_port: int, port: int) -> subprocess.Popen[bytes]:
    cfg = (
        "model_list:\n"
        "  - model_name: fake-model\n"
        "    litellm_params:\n"
        "      model: openai/fake-model\n"
        f"      api_base: http://127.0.0.1:{upstream_port}/v1\n"
        "      api_key: none\n"
        "general_settings:\n"
        f"  master_key: {LITELLM_KEY}\n"
        "litellm_settings:\n"
        "  drop_params: true\n"
        "  set_verbose: false\n"
    )
    (work / "litellm.yaml").write_text(cfg)
    env = {**os.environ, "LITELLM_LOG": "ERROR", "LITELLM_TELEMETRY": "False", "DISABLE_ADMIN_UI": "True"}
    p = subprocess.Popen(["taskset", "-c", "0", litellm, "--config", str(work / "litellm.yaml"), "--host", "127.0.0.1",
                          "--port", str(port), "--num_workers", "1"], stdout=subprocess.DEVNULL,
                         stderr=open("/tmp/zs-gw-bench-litellm.log", "w"), env=env,  # noqa: SIM115
                         start_new_session=True)
    wait(f"http://127.0.0.1:{port}/health/liveliness", timeout=180)
    return p


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def litellm_cli(arg: str | None) -> str | None:
    """``auto``: the pinned release in its cached virtualenv (created if missing); a path: that CLI,
    if its virtualenv holds the pinned release; ``none``: no LiteLLM."""
    if arg == "none":
        return None
    if arg in (None, "auto"):
        return str(ensure_litellm())
    got = installed_version(Path(arg).parent / "python", "litellm")
    if got != LITELLM_VERSION:
        raise SystemExit(f"{arg} runs litellm {got}; this benchmark runs litellm {LITELLM_VERSION} only")
    return arg


def measure(targets: dict[str, tuple[str, str, int]], base_url: str, order: list[str], stream: bool,
            a: argparse.Namespace, rep: int) -> list[dict[str, Any]]:
    """One repeat of one mode: the upstream alone at c=32, then each gateway in ``order`` — c=32, and c=1
    taking turns request by request with the upstream alone (interleaved.py). The gateway not under
    test is stopped (SIGSTOP) meanwhile: both are pinned to core 0 and an idle proxy's timers must
    not bill the other one's latency."""
    base = load(base_url, "none", stream=stream, concurrency=32, duration=a.duration)
    rows = []
    for name in order:
        url, key, pid = targets[name]
        with only_running(pid, [t[2] for t in targets.values()]):
            c0 = tree_cpu(pid)
            r = load(url, key, stream=stream, concurrency=32, duration=a.duration)
            cpu = tree_cpu(pid) - c0  # the load client's warm-up requests count too: CPU over all it sent
            c1 = interleaved({"upstream": (base_url, "none"), name: (url, key)}, stream, a.latency_duration)
        mine, alone = c1[name], c1["upstream"]
        rows.append({"repeat": rep, "gateway": name, "stream": stream, "rps": r["rps"], "errors": r["errors"],
                     "requests": r["requests"],
                     "cpu_ms_per_req": 1000 * cpu / max(1, r["requests"] * (1 + 1 / a.duration)),
                     "added_p50_ms_c32": r["p50_ms"] - base["p50_ms"], "added_p99_ms_c32": r["p99_ms"] - base["p99_ms"],
                     "added_p50_ms_c1": mine["p50_ms"] - alone["p50_ms"],
                     "added_p99_ms_c1": mine["p99_ms"] - alone["p99_ms"], "c1_requests": mine["requests"],
                     "c1_errors": mine["errors"], "upstream_alone_rps": base["rps"],
                     "upstream_alone_p50_ms_c1": alone["p50_ms"]})
    return rows


@contextlib.contextmanager
def only_running(pid: int, pids: list[int]) -> Iterator[None]:
    """Stops the process groups of ``pids`` other than ``pid`` for the duration."""
    others = [p for p in pids if p != pid]
    for p in others:
        os.killpg(p, signal.SIGSTOP)
    try:
        yield
    finally:
        for p in others:
            os.killpg(p, signal.SIGCONT)


def interleaved(targets: dict[str, tuple[str, str]], stream: bool, duration: float) -> dict[str, Any]:
    args = ["taskset", "-c", "1", PY, str(HERE / "interleaved.py"), "--duration", str(duration)]
    for name, (url, key) in targets.items():
        args += ["--target", f"{name}={url},{key}"]
    if stream:
        args.append("--stream")
    out = subprocess.run(args, capture_output=True, text=True, check=True).stdout
    return dict(json.loads(out.strip().splitlines()[-1]))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--litellm", default="auto",
                    help=f"auto (default): litellm[proxy]=={LITELLM_VERSION} in its own virtualenv under "
                         f"{LITELLM_CACHE}, created if missing; a path to that CLI; or none")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--duration", type=float, default=8.0)
    ap.add_argument("--latency-duration", type=float, default=6.0, help="seconds of the interleaved c=1 run")
    ap.add_argument("--meter", type=int, default=300, help="requests of the metering check (0: skip)")
    ap.add_argument("--out", type=Path, default=None)
    ap.add_argument("--no-fsync", action="store_true", help="spool written before ack but not fdatasync'd")
    ap.add_argument("--nofsync-reference", action="store_true",
                    help="also measure a second zhisuan without fdatasync, to show what the disk flush costs")
    ap.add_argument("--before-src", type=Path, default=None,
                    help="also measure 'zhisuan-before': the same gateway run from this source tree (e.g. a "
                         "`git archive <commit> src` unpacked), for before/after in one run")
    a = ap.parse_args()
    litellm = litellm_cli(a.litellm)
    work = Path(tempfile.mkdtemp(prefix="zs-gw-bench-"))
    procs: list[subprocess.Popen[bytes]] = []
    results: list[dict[str, Any]] = []
    meter: dict[str, Any] | None = None
    try:
        meter = run(a, litellm, work, procs, results)
    finally:
        for p in reversed(procs):
            p.terminate()
            try:
                p.wait(15)
            except subprocess.TimeoutExpired:
                p.kill()
        if a.out:
            a.out.write_text(json.dumps({"runs": results, "metering_check": meter}, indent=1))
        shutil.rmtree(work, ignore_errors=True)
    summary(results)
    if meter is not None:
        print("\nmetering check:", json.dumps(meter))
        if not meter["exact"]:
            raise SystemExit("metering check FAILED")


def run(a: argparse.Namespace, litellm: str | None, work: Path, procs: list[subprocess.Popen[bytes]],
        results: list[dict[str, Any]]) -> dict[str, Any] | None:
    up_port, slow_port, zs_port, ll_port = free_port(), free_port(), free_port(), free_port()
    for port, extra in ((up_port, []), (slow_port, ["--chunk-delay-ms", "20"])):
        procs.append(subprocess.Popen(["taskset", "-c", "1", PY, str(HERE / "fake_upstream.py"), "--port", str(port),
                                       *extra], stdout=subprocess.DEVNULL))
        wait(f"http://127.0.0.1:{port}/health")
    zs = start_zhisuan(work, up_port, zs_port, fsync=not a.no_fsync, slow_port=slow_port)
    procs.append(zs)
    targets = {"zhisuan": (f"http://127.0.0.1:{zs_port}/v1/chat/completions", KEY, zs.pid)}
    if a.nofsync_reference and not a.no_fsync:  # same gateway, spool written before ack but not fdatasync'd
        ref_port = free_port()
        (work / "nofsync").mkdir()
        ref = start_zhisuan(work / "nofsync", up_port, ref_port, fsync=False)
        procs.append(ref)
        targets["zhisuan-nofsync"] = (f"http://127.0.0.1:{ref_port}/v1/chat/completions", KEY, ref.pid)
    if a.before_src is not None:
        before_port = free_port()
        (work / "before").mkdir()
        before = start_zhisuan(work / "before", up_port, before_port, fsync=not a.no_fsync, src=a.before_src)
        procs.append(before)
        targets["zhisuan-before"] = (f"http://127.0.0.1:{before_port}/v1/chat/completions", KEY, before.pid)
    if litellm:
        ll = start_litellm(litellm, work, up_port, ll_port)
        procs.append(ll)
        targets["litellm"] = (f"http://127.0.0.1:{ll_port}/v1/chat/completions", LITELLM_KEY, ll.pid)
    base_url = f"http://127.0.0.1:{up_port}/v1/chat/completions"
    for rep in range(a.repeats):
        order = list(targets) if rep % 2 == 0 else list(reversed(targets))
        for stream in (False, True):
            for row in measure(targets, base_url, order, stream, a, rep + 1):
                results.append(row)
                print(json.dumps(row), flush=True)
    if not a.meter:
        return None
    from metering_check import run_check  # type: ignore[import-not-found]

    return dict(run_check(f"http://127.0.0.1:{zs_port}/v1", METER_KEY, f"meter-{os.getpid()}", "slow-model",
                          work / "usage.sqlite", a.meter))


def summary(results: list[dict[str, Any]]) -> None:
    print("\n| gateway | mode | req/s (median, min–max) | added p50 / p99 at c=32 (ms) | added p50 / p99 at c=1 (ms) "
          "| CPU per request (ms) |")
    print("|---|---|---|---|---|---|")
    for name in dict.fromkeys(r["gateway"] for r in results):
        for stream in (False, True):
            rows = [r for r in results if r["gateway"] == name and r["stream"] == stream]
            if not rows:
                continue

            def med(k: str, rows: list[dict[str, Any]] = rows) -> float:
                return statistics.median(r[k] for r in rows)

            rps = [r["rps"] for r in rows]
            print(f"| {name} | {'stream' if stream else 'non-stream'} | {med('rps'):,.0f} "
                  f"({min(rps):,.0f}–{max(rps):,.0f}) | {med('added_p50_ms_c32'):.2f} / {med('added_p99_ms_c32'):.2f} "
                  f"| {med('added_p50_ms_c1'):.2f} / {med('added_p99_ms_c1'):.2f} | {med('cpu_ms_per_req'):.3f} |")
    for stream in (False, True):
        ratios = []
        for repeat in sorted({r["repeat"] for r in results}):
            by = {r["gateway"]: r for r in results if r["repeat"] == repeat and r["stream"] == stream}
            if "zhisuan" in by and "litellm" in by:
                ratios.append((by["zhisuan"]["rps"] / by["litellm"]["rps"],
                               by["litellm"]["cpu_ms_per_req"] / by["zhisuan"]["cpu_ms_per_req"]))
        if ratios:
            print(f"{'stream' if stream else 'non-stream'}: zhisuan/LiteLLM req/s ×"
                  f"{statistics.median(r[0] for r in ratios):.0f}, LiteLLM/zhisuan CPU per request "
                  f"×{statistics.median(r[1] for r in ratios):.0f} (medians of per-repeat ratios)")


if __name__ == "__main__":
    main()
