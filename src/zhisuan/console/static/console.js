// The console's script, served from /console/ (the Content-Security-Policy allows no inline script).
const api = "/api/v1";
const $ = (id) => document.getElementById(id);
const esc = (s) => String(s ?? "").replace(/[&<>"']/g, (c) => ({"&":"&amp;","<":"&lt;",">":"&gt;",'"':"&quot;","'":"&#39;"}[c]));

async function call(path, options = {}) {
  const key = sessionStorage.getItem("zhisuan.key");
  const headers = Object.assign({"Content-Type": "application/json"}, key ? {"Authorization": "Bearer " + key} : {});
  const response = await fetch(api + path, Object.assign({headers}, options));
  const body = response.status === 204 ? null : await response.json();
  if (!response.ok) { const e = new Error(body?.error?.message || response.statusText); e.status = response.status; throw e; }
  return body;
}

function table(columns, rows, empty) {
  if (!rows.length) return `<div class="empty">${esc(empty)}</div>`;
  const head = columns.map((c) => `<th>${esc(c[0])}</th>`).join("");
  const body = rows.map((r) => "<tr>" + columns.map((c) => `<td>${c[1](r)}</td>`).join("") + "</tr>").join("");
  return `<table><thead><tr>${head}</tr></thead><tbody>${body}</tbody></table>`;
}

const pill = (s) => `<span class="pill ${esc(s)}">${esc(s)}</span>`;

function renderDevices(devices) {
  if (!devices.length) return '<span class="muted">none</span>';
  return devices.map((d) => {
    const cls = d.health !== "healthy" ? "unhealthy" : (d.available ? "" : "unavailable");
    const title = `${d.reported_name} · ${Math.round(d.memory_mib / 1024)} GiB · ${d.health}${d.health_detail ? ": " + d.health_detail : ""}`;
    return `<span class="dev ${cls}" title="${esc(title)}">#${d.index} ${esc(d.model)}</span>`;
  }).join("");
}

function renderServices(deployments) {
  const replicas = (d) => d.replica_states.map((r) => `${esc(r.node || "?")} ${pill(r.state)}` +
    (r.state === "healthy" ? ` <span title="requests in flight / parallel slots">load ${Number(r.load).toFixed(2)}</span>` : "")).join("<br>");
  return table([["Deployment", (d) => esc(d.name)], ["Model", (d) => esc(d.model)], ["Engine", (d) => esc(d.engine)],
                ["Owner", (d) => esc(d.tenant || "public MaaS")], ["Status", (d) => pill(d.status)], ["Replicas", replicas]],
               deployments, "No model services deployed.");
}

async function showFleet() {
  const me = await call("/auth/whoami");
  $("who").textContent = `${me.username} (${me.role})`;
  $("logout").hidden = false; $("login").hidden = true; $("fleet").hidden = false;
  const summary = await call("/fleet/summary");
  const cards = [["Sites", summary.sites], ["Nodes", summary.nodes], ["Accelerators", summary.accelerators],
                 ["Available", summary.accelerators_available], ["PFLOPS (BF16 dense)", Number(summary.pflops_bf16).toFixed(2)],
                 ["H100-equivalents", Number(summary.h100_equivalents).toFixed(1)]];
  $("cards").innerHTML = cards.map(([l, v]) => `<div class="card"><div class="label">${esc(l)}</div><div class="value">${esc(v)}</div></div>`).join("");
  $("models").innerHTML = table([["Model", (m) => esc(m.model)], ["Vendor", (m) => esc(m.vendor)], ["Total", (m) => m.total],
                                 ["Available", (m) => m.available], ["Unhealthy", (m) => m.unhealthy]],
                                summary.by_model, "No accelerators under management yet.");
  $("services").innerHTML = me.role === "provider" ? '<div class="empty">Model services are visible to operators and tenants.</div>'
    : renderServices(await call("/deployments"));
  if (me.role === "tenant") { $("sites").innerHTML = '<div class="empty">Sites and nodes are visible to operators and providers.</div>'; $("nodes").innerHTML = ""; return; }
  const [sites, nodes] = await Promise.all([call("/sites"), call("/nodes")]);
  $("sites").innerHTML = table([["Site", (s) => esc(s.name)], ["Engine", (s) => esc(s.engine)], ["Region", (s) => esc(s.region)],
                                ["Provider", (s) => esc(s.provider)], ["Nodes", (s) => s.nodes], ["Accelerators", (s) => s.accelerators]],
                               sites, "No sites yet.");
  $("nodes").innerHTML = table([["Node", (n) => esc(n.site + "/" + n.name)], ["Status", (n) => pill(n.status) + (n.drained ? " " + pill("drained") : "")],
                                ["CPU", (n) => n.cpu_cores], ["Memory", (n) => Math.round(n.memory_mib / 1024) + " GiB"],
                                ["Accelerators", (n) => renderDevices(n.devices)],
                                ["Last heartbeat", (n) => esc(n.last_heartbeat_at ? new Date(n.last_heartbeat_at).toLocaleString() : "—")]],
                               nodes, "No nodes yet: start `zhisuan agent` on a machine.");
}

function showLogin(message) {
  $("fleet").hidden = true; $("logout").hidden = true; $("login").hidden = false; $("who").textContent = "";
  $("error").textContent = message || "";
}

$("login-form").addEventListener("submit", async (event) => {
  event.preventDefault();
  try {
    const issued = await call("/auth/login", {method: "POST", body: JSON.stringify({username: $("username").value, password: $("password").value})});
    sessionStorage.setItem("zhisuan.key", issued.key);
    await showFleet();
  } catch (e) { showLogin(e.message); }
});
$("logout").addEventListener("click", () => { sessionStorage.removeItem("zhisuan.key"); showLogin(); });

(async () => {
  if (!sessionStorage.getItem("zhisuan.key")) return showLogin();
  try { await showFleet(); setInterval(() => showFleet().catch(() => {}), 10000); }
  catch (e) { sessionStorage.removeItem("zhisuan.key"); showLogin(e.status === 401 ? "" : e.message); }
})();
