// Views more than one role's pages show: nodes, sites, model services, contracts, occupancy.
import {statePill, unitText} from "../lib/values.js";
import {el, pill, muted, table} from "../lib/dom.js";
import {t, formatNumber, formatMoney, formatDateTime, formatDay} from "../lib/i18n.js";
import {patch} from "../lib/api.js";

export function deviceChips(devices) {
  if (!devices.length) return muted(t("common.none"));
  return devices.map((d) => {
    const cls = d.health !== "healthy" || d.cordon_reason ? "unhealthy" : (d.available ? "" : "unavailable");
    // A device cordoned for its own fault stays out (its node does not) until its check passes.
    const cordon = d.cordon_reason ? ` · ${t("nodes.device_cordoned")}: ${d.cordon_reason}` : "";
    const title = `${d.reported_name} · ${Math.round(d.memory_mib / 1024)} GiB · ${d.health}${d.health_detail ? ": " + d.health_detail : ""}${cordon}`;
    return el("span", {class: "dev " + cls, title}, `#${d.index} ${d.model}`);
  });
}

const unhealthyDevices = (n) => n.devices.filter((d) => d.health !== "healthy").length;

// Nodes with their health; operators and providers (who may PATCH their nodes) get Drain/Resume.
export function nodesTable(nodes, onChange) {
  const toggle = (n) => el("button", {type: "button", class: n.drained ? "" : "danger", "data-node": `${n.site}/${n.name}`,
    on: {click: async (event) => {
      event.target.disabled = true;
      try { await patch(`/nodes/${encodeURIComponent(n.site)}/${encodeURIComponent(n.name)}`, {drained: !n.drained}); await onChange(); }
      catch (e) { onChange(e); }
    }}}, n.drained ? t("nodes.resume") : t("nodes.drain"));
  // Unhealthy nodes first: the operator looks for them.
  const ordered = [...nodes].sort((a, b) => (unhealthyDevices(b) > 0) - (unhealthyDevices(a) > 0));
  return table([[t("nodes.node"), (n) => n.site + "/" + n.name],
                [t("nodes.status"), (n) => [statePill(n.status), n.drained ? [" ", statePill("drained")] : null]],
                [t("nodes.health"), (n) => unhealthyDevices(n) ? pill(t("nodes.unhealthy", {count: unhealthyDevices(n)}), "unhealthy") : pill(t("nodes.healthy"), "healthy")],
                [t("nodes.cpu"), (n) => n.cpu_cores], [t("nodes.memory"), (n) => Math.round(n.memory_mib / 1024) + " GiB"],
                [t("nodes.accelerators"), (n) => deviceChips(n.devices)],
                [t("nodes.heartbeat"), (n) => formatDateTime(n.last_heartbeat_at)], ["", toggle]],
               ordered, t("nodes.empty"));
}

export function sitesTable(sites) {
  return table([[t("sites.site"), (s) => s.name], [t("sites.engine"), (s) => s.engine], [t("sites.region"), (s) => s.region],
                [t("sites.provider"), (s) => s.provider], [t("sites.nodes"), (s) => s.nodes],
                [t("sites.accelerators"), (s) => s.accelerators]], sites, t("sites.empty"));
}

// Devices per site, from the counts the server keeps (every node, not one page of them): free,
// unhealthy, and the rest — held, or on a node that is drained or not ready.
export function occupancyBySite(sites) {
  return [...sites].sort((a, b) => a.name.localeCompare(b.name)).map((s) => ({
    site: s.name, free: s.accelerators_available, unhealthy: s.accelerators_unhealthy,
    used: Math.max(0, s.accelerators - s.accelerators_available - s.accelerators_unhealthy)}));
}

export function occupancyChart(rows) {
  return {
    xAxis: {type: "category", data: rows.map((r) => r.site)},
    yAxis: {type: "value", name: t("chart.devices"), minInterval: 1},
    series: [
      {name: t("chart.not_free"), type: "bar", stack: "d", data: rows.map((r) => r.used), color: "#2563eb"},
      {name: t("chart.free"), type: "bar", stack: "d", data: rows.map((r) => r.free), color: "#16a34a"},
      {name: t("chart.unhealthy"), type: "bar", stack: "d", data: rows.map((r) => r.unhealthy), color: "#dc2626"},
    ],
  };
}

export function servicesTable(deployments, actions) {
  const replicas = (d) => d.replica_states.map((r, i) => [i ? el("br") : null, `${r.node || "?"} `, statePill(r.state),
    r.state === "healthy" ? el("span", {title: t("services.load_title")}, ` ${t("services.load")} ${formatNumber(r.load)}`) : null]);
  return table([[t("services.deployment"), (d) => d.name], [t("services.model"), (d) => d.model], [t("services.engine"), (d) => d.engine],
                [t("services.owner"), (d) => d.tenant || t("services.public")], [t("services.status"), (d) => statePill(d.status)],
                [t("services.replicas"), replicas], ...(actions ? [["", actions]] : [])],
               deployments, t("services.empty"));
}

export function contractsTable(contracts) {
  return table([[t("contracts.id"), (c) => c.id], [t("contracts.tenant"), (c) => c.tenant],
                [t("contracts.providers"), (c) => c.providers.join(", ")], [t("contracts.model"), (c) => c.model],
                [t("contracts.kind"), (c) => c.capacity_kind], [t("contracts.size"), (c) => c.quota || c.devices],
                [t("contracts.price"), (c) => `${formatMoney(c.unit_price, c.currency)} / ${unitText(c.pricing_model)}`],
                [t("contracts.state"), (c) => statePill(c.state)],
                [t("contracts.term"), (c) => `${formatDay(c.start.slice(0, 10))} – ${formatDay(c.end.slice(0, 10))}`]],
               contracts, t("contracts.empty"));
}
