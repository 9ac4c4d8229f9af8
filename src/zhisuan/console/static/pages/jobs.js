// Jobs (operators and tenants): the table, the open job with its events and log (followed by byte
// offset), the operator's queue, and device-hours by outcome. Element ids are what the browser tests use.
import {stateText, reasonText} from "../lib/values.js";
import {$, el, fill, muted, card, table, explain} from "../lib/dom.js";
import {t, formatNumber, formatDateTime, formatTime} from "../lib/i18n.js";
import {call, post} from "../lib/api.js";

const ACTIVE = new Set(["queued", "admitted", "starting", "running"]);
const JOB_STATES = new Set([...ACTIVE, "succeeded", "failed", "cancelled", "preempted"]);
const JOBS_EVERY_MS = 3000;      // the jobs table, the open job and the queue
const LOG_IDLE_MS = 1500;        // a running job's log with nothing new
const LOG_KEEP_CHARS = 1000000;  // the log view keeps the newest part of a long log

const statePill = (s) => el("span", {class: "pill job-" + (JOB_STATES.has(s) ? s : "other")}, stateText(s));
const num = (v, digits = 2) => Number(v).toFixed(digits).replace(/\.?0+$/, "") || "0";
const whenShort = (iso) => iso ? el("span", {class: "nowrap", title: formatDateTime(iso)}, formatTime(iso)) : "—";

let jobs = null;
let log = null;

function layout(me) {
  const operator = me.role === "operator";
  return [
    el("section", {id: "jobs-section"},
      el("div", {class: "head"}, el("h2", {}, t("jobs.title")), el("span", {class: "muted", id: "jobs-note"}),
        el("span", {class: "toggle", role: "group", "aria-label": t("jobs.which")},
          el("button", {type: "button", id: "jobs-all", "aria-pressed": "true"}, t("jobs.all")),
          el("button", {type: "button", id: "jobs-active", "aria-pressed": "false"}, t("jobs.active")))),
      el("div", {class: "scroll", id: "jobs"})),
    el("section", {id: "job-detail", hidden: true, "aria-live": "polite"},
      el("div", {class: "head"}, el("h2", {id: "job-title"}), el("span", {id: "job-state"}), el("span", {class: "spacer"}),
        el("button", {type: "button", class: "danger", id: "job-cancel", hidden: true}, t("jobs.cancel")),
        el("button", {type: "button", id: "job-close", "aria-label": t("jobs.close_label")}, t("jobs.close"))),
      el("div", {class: "problem", id: "job-error", role: "alert"}),
      el("div", {class: "detail"},
        el("div", {}, el("h3", {}, t("jobs.details")), el("dl", {class: "fields", id: "job-fields"})),
        el("div", {}, el("h3", {}, t("jobs.events")), el("div", {class: "scroll events", id: "job-events"}))),
      el("div", {class: "goodput"}, el("h3", {}, t("goodput.title")), el("div", {id: "job-goodput"})),
      el("div", {class: "logbar"}, el("h3", {}, t("jobs.log")),
        el("label", {for: "log-rank"}, t("jobs.rank")), el("select", {id: "log-rank"}),
        el("span", {class: "toggle", role: "group", "aria-label": t("jobs.stream")},
          el("button", {type: "button", id: "log-stdout", "aria-pressed": "true"}, "stdout"),
          el("button", {type: "button", id: "log-stderr", "aria-pressed": "false"}, "stderr")),
        el("span", {class: "muted", id: "log-status"})),
      el("pre", {class: "log", id: "job-log", tabindex: "0"})),
    operator ? el("section", {id: "queue-section"},
      el("div", {class: "head"}, el("h2", {}, t("queue.title")), el("span", {class: "muted"}, t("queue.note"))),
      el("div", {class: "cards inset", id: "queue-cards"}),
      el("div", {class: "columns"},
        el("div", {}, el("h3", {}, t("queue.pending")), el("div", {class: "scroll", id: "queue-pending"})),
        el("div", {}, el("h3", {}, t("queue.running")), el("div", {class: "scroll", id: "queue-running"}))),
      el("h3", {}, t("queue.guarantees")), el("div", {class: "scroll", id: "queue-guarantees"})) : null,
    el("section", {id: "usage-section"},
      el("div", {class: "head"}, el("h2", {}, t("jobusage.title")), el("span", {class: "muted"}, t("jobusage.note"))),
      el("div", {class: "scroll", id: "job-usage"})),
  ];
}

export async function jobsPage(view) {
  jobs = {me: view.me, filter: "all", selected: null, job: null, ended: false, asked: 0, busy: false};
  log = {token: 0, timer: null, offset: 0, stream: "stdout"};
  view.root.replaceChildren(...layout(view.me));
  $("jobs-all").addEventListener("click", () => setFilter("all"));
  $("jobs-active").addEventListener("click", () => setFilter("active"));
  $("job-close").addEventListener("click", closeJob);
  $("job-cancel").addEventListener("click", cancelJob);
  $("log-stdout").addEventListener("click", () => setStream("stdout"));
  $("log-stderr").addEventListener("click", () => setStream("stderr"));
  $("log-rank").addEventListener("change", startLog);
  view.onLeave(() => { stopLog(); jobs = null; });
  await Promise.all([refreshJobViews(), showUsage(view.me)]);
  view.every(JOBS_EVERY_MS, () => refreshJobViews().catch((e) => { if ($("jobs-note")) $("jobs-note").textContent = explain(e); throw e; }));
}

function shape(j) {
  const per = j.devices_per_worker === 0 ? "cpu" : (j.milli_per_device < 1000 ? num(j.milli_per_device / 1000, 3) : j.devices_per_worker);
  return `${j.workers}×${per}`;
}

async function refreshJobs() {
  const state = jobs;
  const asked = ++state.asked;  // an older answer (another filter) arriving late is dropped
  const list = await call("/jobs" + (state.filter === "active" ? "?state=active" : ""));
  if (asked !== state.asked || jobs !== state) return;
  const operator = state.me.role === "operator";
  const columns = [[t("jobs.id"), (j) => j.id], [t("jobs.name"), (j) => el("span", {class: "name", title: j.name}, j.name)],
                   ...(operator ? [[t("jobs.tenant"), (j) => j.tenant]] : []),
                   [t("jobs.state"), (j) => statePill(j.state)], [t("jobs.class"), (j) => j.priority_class],
                   [t("jobs.size"), (j) => el("span", {title: t("jobs.size_title")}, shape(j))],
                   [t("jobs.site"), (j) => j.site || "—"], [t("jobs.attempt"), (j) => j.attempt],
                   [t("jobs.reason"), (j) => el("span", {class: "reason"}, reasonText(j.reason))], [t("jobs.submitted"), (j) => whenShort(j.submitted_at)]];
  const emptyText = state.filter === "active" ? t("jobs.none_active") : t("jobs.none");
  fill("jobs", table(columns, list, emptyText, {class: "jobs", row: (tr, j) => {
    tr.dataset.job = j.id;
    tr.tabIndex = 0;
    tr.title = t("jobs.open", {id: j.id});
    if (j.id === state.selected) tr.classList.add("selected");
    tr.addEventListener("click", () => openJob(j.id));
    tr.addEventListener("keydown", (event) => { if (event.key === "Enter") openJob(j.id); });
  }}));
  const active = list.filter((j) => ACTIVE.has(j.state)).length;
  $("jobs-note").textContent = t("jobs.note", {shown: list.length, active});
}

function setFilter(filter) {
  jobs.filter = filter;
  $("jobs-all").setAttribute("aria-pressed", String(filter === "all"));
  $("jobs-active").setAttribute("aria-pressed", String(filter === "active"));
  refreshJobs().catch(showJobError);
}

async function openJob(id) {
  stopLog();
  jobs.selected = id; jobs.job = null; jobs.ended = false;
  for (const tr of document.querySelectorAll("#jobs tr[data-job]")) tr.classList.toggle("selected", tr.dataset.job === String(id));
  $("job-detail").hidden = false;
  $("job-title").textContent = t("jobs.job", {id});
  $("job-error").textContent = "";
  fill("job-fields"); fill("job-events"); fill("job-state"); $("job-log").textContent = "";
  $("job-cancel").hidden = true;
  try { await refreshDetail(); } catch (e) { showJobError(e); return; }
  if (!jobs || jobs.selected !== id || !jobs.job) return;
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
  const placement = j.placement.map((w) => t("jobs.placement_line", {rank: w.rank, where: w.node || w.site,
    devices: w.device_indices.join(",") || t("common.none")}) + (w.milli_per_device < 1000 ? ` (${w.milli_per_device}‰)` : ""));
  const program = j.script !== null ? el("pre", {class: "code"}, j.script) : el("code", {}, j.command.map(shellWord).join(" "));
  return [
    [t("jobs.name"), j.name], [t("jobs.tenant"), j.tenant], [t("jobs.reason"), reasonText(j.reason)],
    [t("jobs.class"), `${j.priority_class} · ${t("jobs.priority")} ${j.priority}` + (j.within_guarantee ? ` · ${t("jobs.within_guarantee")}` : "") + (j.borrowing ? ` · ${t("jobs.borrowing")}` : "")],
    [t("jobs.workers_devices"), t("jobs.shape_line", {shape: shape(j), cpu: num(j.cpu_cores), memory: num(j.memory_gib)})],
    [t("jobs.models_allowed"), j.models ? j.models.join(", ") : t("jobs.any")],
    [t("jobs.ran_on"), j.site ? `${j.site} · ${j.model || "cpu"}` : "—"],
    [t("jobs.placement"), placement.length ? placement.map((line, i) => [i ? el("br") : null, line]) : "—"],
    [j.script !== null ? t("jobs.script") : t("jobs.command"), program],
    [t("jobs.image"), j.image || "—"], [t("jobs.workdir"), j.workdir || "—"], [t("jobs.checkpoint_dir"), j.checkpoint_dir || "—"],
    [t("jobs.environment"), Object.keys(j.env).length ? Object.keys(j.env).join(", ") : "—"],
    [t("jobs.time_limit"), `${j.max_run_seconds} s`],
    [t("jobs.attempt"), `${j.attempt}` + (j.preemptions ? ` · ${t("jobs.preempted_times", {count: j.preemptions})}` : "")],
    [t("jobs.exit_code"), j.exit_code === null ? "—" : String(j.exit_code) + (j.platform_fault ? ` (${t("jobs.platform_fault")})` : "")],
    [t("jobs.submitted"), formatDateTime(j.submitted_at)], [t("jobs.admitted"), formatDateTime(j.admitted_at)],
    [t("jobs.started"), formatDateTime(j.started_at)], [t("jobs.ended"), formatDateTime(j.ended_at)],
  ];
}

async function refreshDetail() {
  const state = jobs;
  const id = state.selected;
  const [job, events, goodput] = await Promise.all([call(`/jobs/${id}`), call(`/jobs/${id}/events`),
                                                    call(`/jobs/${id}/goodput`)]);
  if (jobs !== state || state.selected !== id) return;
  // A preempted job runs again as a new attempt whose logs start from zero: follow that one.
  const rerun = state.job !== null && state.job.attempt !== job.attempt;
  state.job = job; state.ended = !ACTIVE.has(job.state);
  if (rerun) startLog();
  $("job-title").textContent = t("jobs.job_named", {id: job.id, name: job.name});
  fill("job-state", statePill(job.state));
  fill("job-fields", ...jobFields(job).flatMap(([term, value]) => [el("dt", {}, term), el("dd", {}, value)]));
  // A long history (a job pending for hours) scrolls inside its box, kept at the newest unless scrolled up.
  const box = $("job-events");
  const atEnd = !box.childElementCount || box.scrollTop + box.clientHeight >= box.scrollHeight - 8;
  fill("job-events", table([[t("jobs.time"), (e) => whenShort(e.at)], [t("jobs.attempt"), (e) => e.attempt],
                            [t("jobs.state"), (e) => statePill(e.state)], [t("jobs.reason"), (e) => reasonText(e.reason)]],
                           events, t("jobs.no_events")));
  if (atEnd) box.scrollTop = box.scrollHeight;
  fill("job-goodput", ...goodputBar(goodput.breakdown));
  $("job-cancel").hidden = state.ended;
}

// Where the job's wall time went (GET /jobs/{id}/goodput; the parts add up to the wall time), as one
// stacked bar with a legend in seconds, and ETTR = productive / (wall − queueing).
function goodputBar(b) {
  const parts = [["queueing", t("goodput.queueing"), b.queueing], ["productive", t("goodput.productive"), b.productive],
                 ["checkpoint", t("goodput.checkpoint"), b.checkpoint], ["lost", t("goodput.lost"), b.lost],
                 ["restart", t("goodput.restart"), b.restart]];
  const label = (name, seconds) => `${name} ${formatNumber(seconds < 10 ? Math.round(seconds * 10) / 10 : Math.round(seconds))} s`;
  const bar = el("div", {class: "bar", role: "img", "aria-label": parts.map(([, name, v]) => label(name, v)).join(", ")});
  for (const [cls, name, seconds] of parts) {
    if (!(seconds > 0)) continue;
    const segment = el("span", {class: "part " + cls, "data-part": cls, title: label(name, seconds)});
    segment.style.flexGrow = String(seconds);  // CSSOM, not a style attribute: the CSP allows it
    bar.append(segment);
  }
  const ettr = b.ettr === null ? "—" : `${formatNumber(Math.round(b.ettr * 1000) / 10)}%`;
  return [bar, el("div", {class: "legend"},
    parts.map(([cls, name, seconds]) => el("span", {class: "key " + cls}, label(name, seconds))),
    el("span", {class: "ettr", id: "job-ettr"}, t("goodput.ettr", {ettr})))];
}

async function cancelJob() {
  const job = jobs.job;
  if (!job || !window.confirm(t("jobs.cancel_confirm", {id: job.id, name: job.name}))) return;
  $("job-cancel").disabled = true;
  try {
    await post(`/jobs/${job.id}/cancel`, {});
    $("job-error").textContent = "";
    await Promise.all([refreshDetail(), refreshJobs()]);
  } catch (e) { showJobError(e); } finally { if ($("job-cancel")) $("job-cancel").disabled = false; }
}

function showJobError(e) { if ($("job-error")) $("job-error").textContent = explain(e); }

// --- the log view, followed by byte offset ----------------------------------------------------------

function stopLog() { if (!log) return; log.token += 1; clearTimeout(log.timer); log.timer = null; }

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
  $("log-status").textContent = t("log.loading");
  pollLog(log.token);
}

function appendLog(text) {
  const view = $("job-log");
  const atEnd = view.scrollTop + view.clientHeight >= view.scrollHeight - 8;
  view.append(text);
  if (view.textContent.length > LOG_KEEP_CHARS) {
    view.textContent = t("log.truncated") + "\n" + view.textContent.slice(-LOG_KEEP_CHARS / 2);
  }
  if (atEnd) view.scrollTop = view.scrollHeight;
}

async function pollLog(token) {
  if (!jobs || token !== log.token || jobs.selected === null) return;
  const query = new URLSearchParams({rank: $("log-rank").value || "0", stream: log.stream, offset: String(log.offset)});
  let delay = LOG_IDLE_MS;
  try {
    const chunk = await call(`/jobs/${jobs.selected}/logs?${query}`);
    if (token !== log.token) return;
    if (chunk.data) appendLog(chunk.data);
    log.offset = chunk.next_offset;
    const size = (jobs.job?.attempt > 1 ? t("log.attempt", {attempt: jobs.job.attempt}) + " · " : "") +
      (log.offset ? t("log.bytes", {bytes: log.offset}) : t("log.no_output_yet"));
    if (chunk.complete) { $("log-status").textContent = t("log.complete", {size: log.offset ? size : t("log.no_output")}); return; }
    $("log-status").textContent = t("log.following", {size});
    if (chunk.data) delay = 100;  // more may be waiting beyond one page
  } catch (e) {
    if (token !== log.token) return;
    $("log-status").textContent = explain(e);
    if ([401, 403, 404, 422].includes(e.status)) return;
    delay = 5000;  // the engine is unreachable for now (409): try again later
  }
  log.timer = setTimeout(() => pollLog(token), delay);
}

// --- the operator's queue and the usage by outcome ----------------------------------------------------

async function refreshQueue() {
  const q = await call("/jobs/queue");
  if (!$("queue-cards")) return;
  const sum = (rows) => rows.reduce((total, r) => total + r.jobs, 0);
  fill("queue-cards", card(t("queue.pending_jobs"), sum(q.pending)), card(t("queue.running_jobs"), sum(q.running)),
       card(t("queue.borrowed"), num(q.borrowed_devices)), card(t("queue.preemptions"), q.preemptions_total));
  fill("queue-pending", table([[t("jobs.tenant"), (r) => r.tenant], [t("jobs.class"), (r) => r.priority_class],
                               [t("jobs.reason"), (r) => reasonText(r.reason)], [t("queue.jobs"), (r) => r.jobs]], q.pending, t("queue.nothing_waiting")));
  fill("queue-running", table([[t("jobs.tenant"), (r) => r.tenant], [t("jobs.class"), (r) => r.priority_class],
                               [t("jobs.state"), (r) => statePill(r.state)], [t("queue.jobs"), (r) => r.jobs]], q.running, t("queue.nothing_running")));
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
    ? el("meter", {min: 0, max: r.guaranteed, value: Math.min(r.used, r.guaranteed), title: t("queue.meter_title", {used: num(r.used), guaranteed: num(r.guaranteed)})})
    : muted(r.used > 0 ? t("queue.no_guarantee") : "");
  fill("queue-guarantees", table([[t("jobs.tenant"), (r) => r.tenant], [t("queue.model"), (r) => r.model],
                                  [t("queue.guaranteed"), (r) => num(r.guaranteed)], [t("queue.in_use"), (r) => num(r.used)], ["", meter]],
                                 rows, t("queue.nothing_guaranteed")));
}

async function showUsage(me) {
  const rows = await call("/jobs/usage");
  const columns = [...(me.role === "operator" ? [[t("jobs.tenant"), (r) => r.tenant]] : []), [t("queue.model"), (r) => r.model],
                   [t("jobusage.outcome"), (r) => statePill(r.outcome)],
                   [t("jobusage.hours"), (r) => `${formatNumber(r.hours, 3)} ${r.unit.replace("_", "-")}s`],
                   [t("jobusage.billable"), (r) => formatNumber(r.billable_hours, 3)]];
  fill("job-usage", table(columns, rows, t("jobusage.empty")));
}

async function refreshJobViews() {
  const state = jobs;
  if (!state || state.busy) return;  // a slow server: skip a tick rather than pile requests up
  state.busy = true;
  try {
    const work = [refreshJobs()];
    if (state.selected !== null && !state.ended) work.push(refreshDetail());
    if (state.me.role === "operator") work.push(refreshQueue());
    await Promise.all(work);
  } finally { state.busy = false; }
}

