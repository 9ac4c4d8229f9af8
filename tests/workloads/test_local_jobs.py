"""Jobs end to end on a local site: admitted under quota, held in the ledger, run by the agent, followed,
billed or not, preempted and re-queued, cancelled, adopted after a control-plane restart."""

from __future__ import annotations

from pathlib import Path

from tests.api.econ_setup import START, clock_at
from tests.workloads.conftest import LocalSite, add_local_node
from zhisuan.workloads.scheduler import JobScheduler


def ledger_rows(site: LocalSite, job_id: int) -> list[dict]:  # type: ignore[type-arg]
    rows = site.world.ok("GET", "/allocations", "operator")
    return [r for r in rows if r.get("ref", "").startswith(f"job:{job_id}/")]


def test_a_job_runs_with_its_devices_visible_and_its_logs_readable(local_site: LocalSite) -> None:
    job = local_site.submit("acme", devices_per_worker=2, command=[
        "sh", "-c", 'echo "devices=$CUDA_VISIBLE_DEVICES rank=$RANK world=$WORLD_SIZE"; echo warn >&2'])
    done = local_site.until_state(job["id"], "succeeded", "failed")
    assert done["state"] == "succeeded", done
    assert done["site"] == "loc" and done["model"] == "h100-sxm"
    out = local_site.world.ok("GET", f"/jobs/{job['id']}/logs", "acme")
    indices = ",".join(str(i) for i in done["placement"][0]["device_indices"])
    assert f"devices={indices} rank=0 world=1" in out["data"]
    assert "warn" in local_site.world.ok("GET", f"/jobs/{job['id']}/logs", "acme", stream="stderr")["data"]
    states = [e["state"] for e in local_site.world.ok("GET", f"/jobs/{job['id']}/events", "acme")]
    assert states[:4] == ["queued", "admitted", "starting", "running"] and states[-1] == "succeeded"
    assert local_site.world.call("GET", f"/jobs/{job['id']}/logs", "beta").status_code == 404


def test_logs_and_arguments_keep_every_byte(local_site: LocalSite) -> None:
    job = local_site.submit("acme", command=["printf", "%s|\\n", "  two spaces  ", "tab\tend"])
    assert job["command"] == ["printf", "%s|\\n", "  two spaces  ", "tab\tend"]
    local_site.until_state(job["id"], "succeeded", "failed")
    out = local_site.world.ok("GET", f"/jobs/{job['id']}/logs", "acme")
    assert out["data"] == "  two spaces  |\ntab\tend|\n" and out["next_offset"] == len(out["data"].encode())


def test_a_failing_job_keeps_its_exit_code_and_releases_its_devices(local_site: LocalSite) -> None:
    job = local_site.submit("acme", devices_per_worker=8, command=["sh", "-c", "exit 7"])
    done = local_site.until_state(job["id"], "succeeded", "failed")
    assert done["state"] == "failed" and done["exit_code"] == 7 and not done["platform_fault"]
    after = local_site.submit("beta", devices_per_worker=8, command=["true"])
    assert local_site.until_state(after["id"], "succeeded", "failed")["state"] == "succeeded"


def test_a_model_nobody_has_stays_queued_with_the_reason(local_site: LocalSite) -> None:
    job = local_site.submit("acme", models=["ascend-910b2"], command=["true"])
    for _ in range(3):
        local_site.step()
    queued = local_site.job(job["id"], "acme")
    assert queued["state"] == "queued"
    assert "model not allowed" in queued["reason"], queued["reason"]


def test_cancel_stops_a_running_job(local_site: LocalSite) -> None:
    job = local_site.submit("acme", command=["sleep", "60"])
    local_site.until_state(job["id"], "running")
    local_site.world.ok("POST", f"/jobs/{job['id']}/cancel", "acme", {})
    done = local_site.until_state(job["id"], "cancelled", "failed", "succeeded")
    assert done["state"] == "cancelled"
    assert all(row["end"] is not None for row in ledger_rows(local_site, job["id"]))


def test_spot_borrows_idle_guarantee_and_is_preempted_when_the_owner_submits(local_site: LocalSite) -> None:
    world = local_site.world
    with clock_at(world, START):
        contract = world.ok("POST", "/contracts", "operator", {
            "tenant": "acme", "providers": ["p1"], "capacity": {"kind": "quota", "model": "h100-sxm", "quota": 8},
            "pricing_model": "device_hour", "unit_price": "15", "start": START, "closed_months": 1})
    world.ok("POST", f"/contracts/{contract['id']}/activate", "operator", {})
    spot = local_site.submit("beta", devices_per_worker=8, priority_class="spot", command=["sleep", "120"])
    running = local_site.until_state(spot["id"], "running")
    assert running["borrowing"] and not running["within_guarantee"]
    owner = local_site.submit("acme", devices_per_worker=8, priority_class="reserved", command=["true"])
    done = local_site.until_state(owner["id"], "succeeded", "failed")
    assert done["state"] == "succeeded" and done["within_guarantee"]
    victim = local_site.job(spot["id"])
    assert victim["preemptions"] == 1
    assert victim["state"] in ("queued", "admitted", "starting", "running")
    events = world.ok("GET", f"/jobs/{spot['id']}/events", "beta")
    assert any(e["state"] == "preempted" for e in events)


def test_a_restarted_control_plane_adopts_running_jobs(local_site: LocalSite) -> None:
    job = local_site.submit("acme", command=["sh", "-c", "sleep 2; echo once"])
    local_site.until_state(job["id"], "running")
    app = local_site.world.client.app  # type: ignore[attr-defined]
    # A new scheduler (a restarted control plane) over the same database: it follows, it does not resubmit.
    local_site.scheduler = JobScheduler(app.state.ctx.sessions, app.state.catalog,
                                        app.state.ctx.settings.resolved_jobs_dir(), app.state.ctx.clock,
                                        holder="restarted")
    app.state.ctx.clock.advance(seconds=60)  # the old holder's lease has expired
    done = local_site.until_state(job["id"], "succeeded", "failed")
    assert done["state"] == "succeeded" and done["attempt"] == 1
    assert local_site.world.ok("GET", f"/jobs/{job['id']}/logs", "acme")["data"].count("once") == 1


def test_a_gang_runs_across_two_agents_with_the_rendezvous_variables(local_site: LocalSite, jobs_root: Path) -> None:
    local_site.agents["n2"] = add_local_node(local_site.world, "n2", jobs_root)
    job = local_site.submit("acme", workers=2, devices_per_worker=8, command=[
        "sh", "-c", 'echo "rank=$RANK node_rank=$NODE_RANK world=$WORLD_SIZE master=$MASTER_ADDR:$MASTER_PORT"'])
    done = local_site.until_state(job["id"], "succeeded", "failed")
    assert done["state"] == "succeeded", done
    nodes = sorted(w["node"] for w in done["placement"])
    assert nodes == ["loc/n1", "loc/n2"]  # whole nodes, one worker each
    for rank in (0, 1):
        out = local_site.world.ok("GET", f"/jobs/{job['id']}/logs", "acme", rank=rank)["data"]
        assert f"rank={rank} node_rank={rank} world=2 master=127.0.0.1:" in out, out
