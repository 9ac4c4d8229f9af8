// The console's script, served from /console/ (the Content-Security-Policy allows no inline script).
// Every piece of API data enters the page as a text node or an attribute value (el() below), never as
// HTML: a job name, a log line or a reason cannot become markup.
"use strict";

const api = "/api/v1";
const $ = (id) => document.getElementById(id);
const ACTIVE = new Set(["queued", "admitted", "starting", "running"]);
const JOB_STATES = new Set([...ACTIVE, "succeeded", "failed", "cancelled", "preempted"]);
const JOBS_EVERY_MS = 3000;      // the jobs table, the open job and the queue
const FLEET_EVERY_MS = 10000;    // fleet summary, nodes, services, usage
const LOG_IDLE_MS = 1500;        // a running job's log with nothing new
const LOG_KEEP_CHARS = 1000000;  // the log view keeps the newest part of a long log

let session = 0;  // counts sign-ins and sign-outs: an answer to an earlier session is never shown

async function call(path, options = {}) {
  const key = sessionStorage.getItem("zhisuan.key");
  const asked = session;
  const headers = Object.assign({"Content-Type": "application/json"}, key ? {"Authorization": "Bearer " + key} : {});
  const response = await fetch(api + path, Object.assign({headers}, options));
  const body = response.status === 204 ? null : await response.json();
  if (asked !== session) { const e = new Error("signed out meanwhile"); e.stale = true; throw e; }
  if (!response.ok) { const e = new Error(body?.error?.message || response.statusText); e.status = response.status; throw e; }
  return body;
}

// --- building the page from data --------------------------------------------------------------

function el(tag, props = {}, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(props)) {
    if (value === undefined || value === null || value === false) continue;
    if (name === "class") node.className = value;
    else if (name === "on") for (const [event, handler] of Object.entries(value)) node.addEventListener(event, handler);
    else node.setAttribute(name, value === true ? "" : String(value));
  }
  for (const child of children.flat(Infinity)) {
    if (child !== undefined && child !== null && child !== false) node.append(child instanceof Node ? child : String(child));
  }
  return node;
}

const fill = (id, ...nodes) => $(id).replaceChildren(...nodes);
const safeClass = (s) => String(s ?? "").toLowerCase().replace(/[^a-z0-9_-]/g, "");
const pill = (s, cls) => el("span", {class: "pill " + safeClass(cls ?? s)}, s);
const statePill = (s) => el("span", {class: "pill job-" + (JOB_STATES.has(s) ? s : "other")}, s);
const muted = (text) => el("span", {class: "muted"}, text);
const when = (iso) => iso ? new Date(iso).toLocaleString() : "—";
// The table's short form: the time of day for today, the date too for older ones (the full time is its title).
function whenShort(iso) {
  if (!iso) return "—";
  const at = new Date(iso);
  const today = at.toDateString() === new Date().toDateString();
  const text = today ? at.toLocaleTimeString() : at.toLocaleString(undefined, {month: "short", day: "numeric", hour: "2-digit", minute: "2-digit"});
  return el("span", {class: "nowrap", title: at.toLocaleString()}, text);
}
const num = (v, digits = 2) => Number(v).toFixed(digits).replace(/\.?0+$/, "") || "0";

function table(columns, rows, empty, options = {}) {
  if (!rows.length) return el("div", {class: "empty"}, empty);
  return el("table", {class: options.class},
    el("thead", {}, el("tr", {}, columns.map(([title]) => el("th", {}, title)))),
    el("tbody", {}, rows.map((row) => {
      const tr = el("tr", {}, columns.map(([, cell]) => el("td", {}, cell(row))));
      if (options.row) options.row(tr, row);
      return tr;
    })));
}

// --- fleet ---------------------------------------------------------------------------------------

function renderDevices(devices) {
  if (!devices.length) return muted("none");
  return devices.map((d) => {
    const cls = d.health !== "healthy" ? "unhealthy" : (d.available ? "" : "unavailable");
    const title = `${d.reported_name} · ${Math.round(d.memory_mib / 1024)} GiB · ${d.health}${d.health_detail ? ": " + d.health_detail : ""}`;
    return el("span", {class: "dev " + cls, title}, `#${d.index} ${d.model}`);
  });
}

function renderServices(deployments) {
  const replicas = (d) => d.replica_states.map((r, i) => [i ? el("br") : null, `${r.node || "?"} `, pill(r.state),
    r.state === "healthy" ? el("span", {title: "requests in flight / parallel slots"}, ` load ${Number(r.load).toFixed(2)}`) : null]);
  return table([["Deployment", (d) => d.name], ["Model", (d) => d.model], ["Engine", (d) => d.engine],
                ["Owner", (d) => d.tenant || "public MaaS"], ["Status", (d) => pill(d.status)], ["Replicas", replicas]],
               deployments, "No model services deployed.");
}

async function showFleet(me) {
  const summary = await call("/fleet/summary");
  const cards = [["Sites", summary.sites], ["Nodes", summary.nodes], ["Accelerators", summary.accelerators],
                 ["Available", summary.accelerators_available], ["PFLOPS (BF16 dense)", Number(summary.pflops_bf16).toFixed(2)],
                 ["H100-equivalents", Number(summary.h100_equivalents).toFixed(1)]];
  fill("cards", ...cards.map(([label, value]) => card(label, value)));
  fill("models", table([["Model", (m) => m.model], ["Vendor", (m) => m.vendor], ["Total", (m) => m.total],
                        ["Available", (m) => m.available], ["Unhealthy", (m) => m.unhealthy]],
                       summary.by_model, "No accelerators under management yet."));
  fill("services", me.role === "provider" ? el("div", {class: "empty"}, "Model services are visible to operators and tenants.")
    : renderServices(await call("/deployments")));
  if (me.role !== "provider") await showUsage(me);
  if (me.role === "tenant") {
    fill("sites", el("div", {class: "empty"}, "Sites and nodes are visible to operators and providers."));
    fill("nodes");
    return;
  }
  const [sites, nodes] = await Promise.all([call("/sites"), call("/nodes?limit=500")]);
  fill("sites", table([["Site", (s) => s.name], ["Engine", (s) => s.engine], ["Region", (s) => s.region],
                       ["Provider", (s) => s.provider], ["Nodes", (s) => s.nodes], ["Accelerators", (s) => s.accelerators]],
                      sites, "No sites yet."));
  fill("nodes", table([["Node", (n) => n.site + "/" + n.name], ["Status", (n) => [pill(n.status), n.drained ? [" ", pill("drained")] : null]],
                       ["CPU", (n) => n.cpu_cores], ["Memory", (n) => Math.round(n.memory_mib / 1024) + " GiB"],
                       ["Accelerators", (n) => renderDevices(n.devices)], ["Last heartbeat", (n) => when(n.last_heartbeat_at)]],
                      nodes, "No nodes yet: start `zhisuan agent` on a machine."));
}

const card = (label, value) => el("div", {class: "card"}, el("div", {class: "label"}, label), el("div", {class: "value"}, value));

// --- jobs: the table ------------------------------------------------------------------------------

const jobs = {me: null, filter: "all", selected: null, job: null, ended: false, asked: 0, busy: false};

function shape(j) {
  const per = j.devices_per_worker === 0 ? "cpu" : (j.milli_per_device < 1000 ? num(j.milli_per_device / 1000, 3) : j.devices_per_worker);
  return `${j.workers}×${per}`;
}

async function refreshJobs() {
  const asked = ++jobs.asked;  // an older answer (another filter) arriving late is dropped
  const list = await call("/jobs" + (jobs.filter === "active" ? "?state=active" : ""));
  if (asked !== jobs.asked || !jobs.me) return;
  const operator = jobs.me.role === "operator";
  const columns = [["ID", (j) => j.id], ["Name", (j) => el("span", {class: "name", title: j.name}, j.name)],
                   ...(operator ? [["Tenant", (j) => j.tenant]] : []),
                   ["State", (j) => statePill(j.state)], ["Class", (j) => j.priority_class],
                   ["Size", (j) => el("span", {title: "workers × devices per worker"}, shape(j))],
                   ["Site", (j) => j.site || "—"], ["Attempt", (j) => j.attempt],
                   ["Reason", (j) => el("span", {class: "reason"}, j.reason)], ["Submitted", (j) => whenShort(j.submitted_at)]];
  const empty = jobs.filter === "active" ? "No active jobs." : "No jobs yet: submit one with `zhisuan job submit --gpus 1 -- python train.py`.";
  fill("jobs", table(columns, list, empty, {class: "jobs", row: (tr, j) => {
    tr.dataset.job = j.id;
    tr.tabIndex = 0;
    tr.title = "Open job " + j.id;
    if (j.id === jobs.selected) tr.classList.add("selected");
    tr.addEventListener("click", () => openJob(j.id));
    tr.addEventListener("keydown", (event) => { if (event.key === "Enter") openJob(j.id); });
  }}));
  const active = list.filter((j) => ACTIVE.has(j.state)).length;
  $("jobs-note").textContent = `${list.length} shown · ${active} active`;
}

function setFilter(filter) {
  jobs.filter = filter;
  $("jobs-all").setAttribute("aria-pressed", String(filter === "all"));
  $("jobs-active").setAttribute("aria-pressed", String(filter === "active"));
  refreshJobs().catch(showJobError);
}

// --- jobs: the open job ---------------------------------------------------------------------------

async function openJob(id) {
  stopLog();
  jobs.selected = id; jobs.job = null; jobs.ended = false;
  for (const tr of document.querySelectorAll("#jobs tr[data-job]")) tr.classList.toggle("selected", tr.dataset.job === String(id));
  $("job-detail").hidden = false;
  $("job-title").textContent = `Job ${id}`;
  $("job-error").textContent = "";
  fill("job-fields"); fill("job-events"); fill("job-state"); $("job-log").textContent = "";
  $("job-cancel").hidden = true;
  try { await refreshDetail(); } catch (e) { showJobError(e); return; }
  if (jobs.selected !== id || !jobs.job) return;
  const ranks = Math.max(1, Math.min(jobs.job.workers, 256));
  fill("log-rank", ...Array.from({length: ranks}, (_, r) => el("option", {value: r}, r)));
  setStream("stdout");
  $("job-detail").scrollIntoView({block: "nearest"});
}

function closeJob() {
  stopLog();
  jobs.selected = null; jobs.job = null;
  $("job-detail").hidden = true;
  for (const tr of document.querySelectorAll("#jobs tr.selected")) tr.classList.remove("selected");
}

// An argument as a shell would need it typed, so the shown command can be copied and run as is.
const shellWord = (arg) => /^[A-Za-z0-9_@%+=:,.\/-]+$/.test(arg) ? arg : "'" + arg.replace(/'/g, "'\\''") + "'";

function jobFields(j) {
  const placement = j.placement.map((w) => `rank ${w.rank}: ${w.node || w.site} · devices ${w.device_indices.join(",") || "none"}` +
    (w.milli_per_device < 1000 ? ` (${w.milli_per_device}‰ each)` : ""));
  const program = j.script !== null ? el("pre", {class: "code"}, j.script) : el("code", {}, j.command.map(shellWord).join(" "));
  return [
    ["Name", j.name], ["Tenant", j.tenant], ["Reason", j.reason],
    ["Class", `${j.priority_class} · priority ${j.priority}` + (j.within_guarantee ? " · within guarantee" : "") + (j.borrowing ? " · borrowing" : "")],
    ["Workers × devices", `${shape(j)} · ${num(j.cpu_cores)} CPU · ${num(j.memory_gib)} GiB memory per worker`],
    ["Models allowed", j.models ? j.models.join(", ") : "any"],
    ["Ran on", j.site ? `${j.site} · ${j.model || "cpu"}` : "—"],
    ["Placement", placement.length ? placement.map((line, i) => [i ? el("br") : null, line]) : "—"],
    [j.script !== null ? "Script" : "Command", program],
    ["Image", j.image || "—"], ["Workdir", j.workdir || "—"], ["Checkpoint dir", j.checkpoint_dir || "—"],
    ["Environment", Object.keys(j.env).length ? Object.keys(j.env).join(", ") : "—"],
    ["Time limit", `${j.max_run_seconds} s`],
    ["Attempt", `${j.attempt}` + (j.preemptions ? ` · preempted ${j.preemptions}×` : "")],
    ["Exit code", j.exit_code === null ? "—" : String(j.exit_code) + (j.platform_fault ? " (platform fault: not billed)" : "")],
    ["Submitted", when(j.submitted_at)], ["Admitted", when(j.admitted_at)], ["Started", when(j.started_at)], ["Ended", when(j.ended_at)],
  ];
}

async function refreshDetail() {
  const id = jobs.selected;
  const [job, events] = await Promise.all([call(`/jobs/${id}`), call(`/jobs/${id}/events`)]);
  if (jobs.selected !== id) return;
  // A preempted job runs again as a new attempt whose logs start from zero: follow that one.
  const rerun = jobs.job !== null && jobs.job.attempt !== job.attempt;
  jobs.job = job; jobs.ended = !ACTIVE.has(job.state);
  if (rerun) startLog();
  $("job-title").textContent = `Job ${job.id} · ${job.name}`;
  fill("job-state", statePill(job.state));
  fill("job-fields", ...jobFields(job).flatMap(([term, value]) => [el("dt", {}, term), el("dd", {}, value)]));
  // A long history (a job pending for hours) scrolls inside its box, kept at the newest unless scrolled up.
  const box = $("job-events");
  const atEnd = !box.childElementCount || box.scrollTop + box.clientHeight >= box.scrollHeight - 8;
  fill("job-events", table([["Time", (e) => whenShort(e.at)], ["Attempt", (e) => e.attempt], ["State", (e) => statePill(e.state)],
                            ["Reason", (e) => e.reason]], events, "No events yet."));
  if (atEnd) box.scrollTop = box.scrollHeight;
  $("job-cancel").hidden = jobs.ended;
}

async function cancelJob() {
  const job = jobs.job;
  if (!job || !window.confirm(`Cancel job ${job.id} (${job.name})? Its workers are stopped.`)) return;
  $("job-cancel").disabled = true;
  try {
    await call(`/jobs/${job.id}/cancel`, {method: "POST", body: "{}"});
    $("job-error").textContent = "";
    await Promise.all([refreshDetail(), refreshJobs()]);
  } catch (e) { showJobError(e); } finally { $("job-cancel").disabled = false; }
}

function showJobError(e) { $("job-error").textContent = e.message || String(e); }

// --- jobs: the log view, followed by byte offset ---------------------------------------------------

const log = {token: 0, timer: null, offset: 0, stream: "stdout"};

function stopLog() { log.token += 1; clearTimeout(log.timer); log.timer = null; }

function setStream(stream) {
  log.stream = stream;
  $("log-stdout").setAttribute("aria-pressed", String(stream === "stdout"));
  $("log-stderr").setAttribute("aria-pressed", String(stream === "stderr"));
  startLog();
}

function startLog() {
  stopLog();
  log.offset = 0;
  $("job-log").textContent = "";
  $("log-status").textContent = "loading…";
  pollLog(log.token);
}

function appendLog(text) {
  const view = $("job-log");
  const atEnd = view.scrollTop + view.clientHeight >= view.scrollHeight - 8;
  view.append(text);
  if (view.textContent.length > LOG_KEEP_CHARS) {
    view.textContent = "[… earlier output not shown here; zhisuan job logs has it all]\n" + view.textContent.slice(-LOG_KEEP_CHARS / 2);
  }
  if (atEnd) view.scrollTop = view.scrollHeight;
}

async function pollLog(token) {
  if (token !== log.token || jobs.selected === null) return;
  const query = new URLSearchParams({rank: $("log-rank").value || "0", stream: log.stream, offset: String(log.offset)});
  let delay = LOG_IDLE_MS;
  try {
    const chunk = await call(`/jobs/${jobs.selected}/logs?${query}`);
    if (token !== log.token) return;
    if (chunk.data) appendLog(chunk.data);
    log.offset = chunk.next_offset;
    const size = (jobs.job?.attempt > 1 ? `attempt ${jobs.job.attempt} · ` : "") + (log.offset ? `${log.offset} bytes` : "no output yet");
    if (chunk.complete) { $("log-status").textContent = `complete · ${log.offset ? size : "no output"}`; return; }
    $("log-status").textContent = `following · ${size}`;
    if (chunk.data) delay = 100;  // more may be waiting beyond one page
  } catch (e) {
    if (token !== log.token) return;
    $("log-status").textContent = e.message;
    if (e.status === 401 || e.status === 403 || e.status === 404 || e.status === 422) return;
    delay = 5000;  // the engine is unreachable for now (409): try again later
  }
  log.timer = setTimeout(() => pollLog(token), delay);
}

// --- the operator's queue ---------------------------------------------------------------------------

async function refreshQueue() {
  const q = await call("/jobs/queue");
  const sum = (rows) => rows.reduce((total, r) => total + r.jobs, 0);
  fill("queue-cards", card("Pending jobs", sum(q.pending)), card("Running jobs", sum(q.running)),
       card("Borrowed devices", num(q.borrowed_devices)), card("Preemptions so far", q.preemptions_total));
  fill("queue-pending", table([["Tenant", (r) => r.tenant], ["Class", (r) => r.priority_class], ["Reason", (r) => r.reason],
                               ["Jobs", (r) => r.jobs]], q.pending, "Nothing is waiting."));
  fill("queue-running", table([["Tenant", (r) => r.tenant], ["Class", (r) => r.priority_class], ["State", (r) => statePill(r.state)],
                               ["Jobs", (r) => r.jobs]], q.running, "Nothing is running."));
  const pairs = new Map();
  for (const [source, field] of [[q.guarantees, "guaranteed"], [q.in_use, "used"]]) {
    for (const [tenant, models] of Object.entries(source)) {
      for (const [model, devices] of Object.entries(models)) {
        const key = tenant + "\u0000" + model;
        const row = pairs.get(key) || {tenant, model, guaranteed: 0, used: 0};
        row[field] = devices;
        pairs.set(key, row);
      }
    }
  }
  const rows = [...pairs.values()].sort((a, b) => a.tenant.localeCompare(b.tenant) || a.model.localeCompare(b.model));
  const meter = (r) => r.guaranteed > 0
    ? el("meter", {min: 0, max: r.guaranteed, value: Math.min(r.used, r.guaranteed), title: `${num(r.used)} of ${num(r.guaranteed)} guaranteed in use`})
    : muted(r.used > 0 ? "no guarantee: borrowed or spot" : "");
  fill("queue-guarantees", table([["Tenant", (r) => r.tenant], ["Model", (r) => r.model], ["Guaranteed", (r) => num(r.guaranteed)],
                                  ["In use", (r) => num(r.used)], ["", meter]],
                                 rows, "No guarantees and nothing in use."));
}

async function showUsage(me) {
  const rows = await call("/jobs/usage");
  const columns = [...(me.role === "operator" ? [["Tenant", (r) => r.tenant]] : []), ["Model", (r) => r.model],
                   ["Outcome", (r) => statePill(r.outcome)], ["Hours", (r) => `${num(r.hours, 3)} ${r.unit.replace("_", "-")}s`],
                   ["Billable", (r) => num(r.billable_hours, 3)]];
  fill("job-usage", table(columns, rows, "No job has held capacity yet."));
}

// --- signing in and the refresh loops ---------------------------------------------------------------

const timers = [];

async function refreshJobViews() {
  if (jobs.busy) return;  // a slow server: skip a tick rather than pile requests up
  jobs.busy = true;
  try {
    const work = [refreshJobs()];
    if (jobs.selected !== null && !jobs.ended) work.push(refreshDetail());
    if (jobs.me.role === "operator") work.push(refreshQueue());
    await Promise.all(work);
  } finally { jobs.busy = false; }
}

async function begin() {
  session += 1;
  const me = await call("/auth/whoami");
  jobs.me = me;
  $("who").textContent = `${me.username} (${me.role})`;
  $("logout").hidden = false; $("login").hidden = true; $("fleet").hidden = false;
  const withJobs = me.role === "operator" || me.role === "tenant";
  $("jobs-section").hidden = !withJobs; $("usage-section").hidden = !withJobs;
  $("queue-section").hidden = me.role !== "operator";
  await showFleet(me);
  if (withJobs) {
    await refreshJobViews();
    timers.push(setInterval(() => refreshJobViews().catch((e) => refreshFailed(e, "jobs-note")), JOBS_EVERY_MS));
  }
  timers.push(setInterval(() => showFleet(me).catch((e) => refreshFailed(e)), FLEET_EVERY_MS));
}

// A session that ended (signed out elsewhere, key revoked or expired) goes back to the sign-in form;
// anything else (the server restarting) is shown and the next tick tries again.
function refreshFailed(e, where) {
  if (e.stale) return;
  if (e.status === 401) { sessionStorage.removeItem("zhisuan.key"); showLogin("Your session has ended: sign in again."); }
  else if (where) $(where).textContent = e.message;
}

function showLogin(message) {
  session += 1;
  while (timers.length) clearInterval(timers.pop());
  closeJob();
  jobs.me = null; jobs.busy = false;
  for (const id of ["cards", "jobs", "jobs-note", "queue-cards", "queue-pending", "queue-running", "queue-guarantees",
                    "job-usage", "models", "services", "sites", "nodes"]) fill(id);
  $("fleet").hidden = true; $("logout").hidden = true; $("login").hidden = false; $("who").textContent = "";
  $("error").textContent = message || "";
}

$("login-form").addEventListener("submit", async (event) => {
  event.preventDefault();
  try {
    const issued = await call("/auth/login", {method: "POST", body: JSON.stringify({username: $("username").value, password: $("password").value})});
    sessionStorage.setItem("zhisuan.key", issued.key);
    $("password").value = "";
    await begin();
  } catch (e) { showLogin(e.message); }
});
$("logout").addEventListener("click", () => { sessionStorage.removeItem("zhisuan.key"); showLogin(); });
$("jobs-all").addEventListener("click", () => setFilter("all"));
$("jobs-active").addEventListener("click", () => setFilter("active"));
$("job-close").addEventListener("click", closeJob);
$("job-cancel").addEventListener("click", cancelJob);
$("log-stdout").addEventListener("click", () => setStream("stdout"));
$("log-stderr").addEventListener("click", () => setStream("stderr"));
$("log-rank").addEventListener("change", startLog);

(async () => {
  if (!sessionStorage.getItem("zhisuan.key")) return showLogin();
  try { await begin(); }
  catch (e) { sessionStorage.removeItem("zhisuan.key"); showLogin(e.status === 401 ? "" : e.message); }
})();
