// The fleet as operators (all of it) and providers (their sites) see it: capacity by model, vendor and
// site, health, occupancy now (from the server's counts); nodes with Drain/Resume, a page at a time,
// filtered by the server by site, status and accelerator model.
import {el, fill, card, table, section, errorBox} from "../lib/dom.js";
import {t, formatNumber} from "../lib/i18n.js";
import {call, callPage} from "../lib/api.js";
import {chartBox, drawChart} from "../lib/charts.js";
import {nodesTable, sitesTable, occupancyBySite, occupancyChart} from "./common.js";
import {utilisationSection} from "./utilisation.js";

const FLEET_EVERY_MS = 10000;
const NODES_PER_PAGE = 100;
const STATUSES = ["ready", "unreachable", "registering"];

const fixed = (value, digits) => new Intl.NumberFormat(document.documentElement.lang, {minimumFractionDigits: digits, maximumFractionDigits: digits}).format(Number(value));

function byVendor(models) {
  const vendors = new Map();
  for (const m of models) {
    const row = vendors.get(m.vendor) || {vendor: m.vendor, models: 0, total: 0, available: 0, unhealthy: 0};
    row.models += 1; row.total += m.total; row.available += m.available; row.unhealthy += m.unhealthy;
    vendors.set(m.vendor, row);
  }
  return [...vendors.values()];
}

function capacityChart(models) {
  // The summary counts free and unhealthy devices; the rest are held, or on drained or offline nodes.
  const used = (m) => Math.max(0, m.total - m.available - m.unhealthy);
  return {
    xAxis: {type: "category", data: models.map((m) => m.model)},
    yAxis: {type: "value", name: t("chart.devices"), minInterval: 1},
    series: [
      {name: t("chart.not_free"), type: "bar", stack: "d", data: models.map(used), color: "#2563eb"},
      {name: t("chart.free"), type: "bar", stack: "d", data: models.map((m) => m.available), color: "#16a34a"},
      {name: t("chart.unhealthy"), type: "bar", stack: "d", data: models.map((m) => m.unhealthy), color: "#dc2626"},
    ],
  };
}

// The nodes section's state: the filters and the cursors of the pages walked so far (the first is null).
function nodePager() {
  const state = {site: "", status: "", model: "", cursors: [null], next: null};
  const path = () => {
    const query = new URLSearchParams({limit: String(NODES_PER_PAGE)});
    for (const name of ["site", "status", "model"]) if (state[name]) query.set(name, state[name]);
    const cursor = state.cursors[state.cursors.length - 1];
    if (cursor) query.set("cursor", cursor);
    return "/nodes?" + query;
  };
  // Pages asked for overlap (the periodic refresh, a click): only the latest asked is shown.
  let asked = 0;
  const load = async () => {
    const mine = ++asked;
    const page = await callPage(path());
    if (mine !== asked) return null;
    state.next = page.next;
    return page.items;
  };
  return {state, load};
}

function choice(id, label, values, chosen, onChange) {
  const select = el("select", {id, on: {change: (event) => onChange(event.target.value)}},
    el("option", {value: ""}, t("nodes.any")),
    values.map((v) => el("option", {value: v, selected: v === chosen}, v)));
  return [el("label", {for: id}, label), select];
}

function nodeControls(pager, sites, models, reload) {
  const {state} = pager;
  const filter = (name) => (value) => { state[name] = value; state.cursors = [null]; reload(); };
  const first = state.cursors.length === 1;
  const start = (state.cursors.length - 1) * NODES_PER_PAGE + 1;
  return el("div", {class: "controls", id: "nodes-controls"},
    choice("nodes-site", t("nodes.filter_site"), sites.map((s) => s.name), state.site, filter("site")),
    choice("nodes-status", t("nodes.filter_status"), STATUSES, state.status, filter("status")),
    choice("nodes-model", t("nodes.filter_model"), models.map((m) => m.model), state.model, filter("model")),
    el("button", {type: "button", id: "nodes-previous", disabled: first,
                  on: {click: () => { state.cursors.pop(); reload(); }}}, t("nodes.previous")),
    el("span", {id: "nodes-range", class: "muted"}, t("nodes.range", {from: formatNumber(start)})),
    el("button", {type: "button", id: "nodes-next", disabled: !state.next,
                  on: {click: () => { state.cursors.push(state.next); reload(); }}}, t("nodes.next")));
}

export async function fleetPage(view) {
  const utilisation = utilisationSection(view);
  const pager = nodePager();
  const nodesSection = section("nodes", t("fleet.nodes"), t("fleet.nodes_note"));
  nodesSection.insertBefore(el("div", {id: "nodes-pager"}), nodesSection.lastChild);
  view.root.replaceChildren(
    el("div", {class: "cards", id: "cards"}),
    el("div", {class: "problem", id: "fleet-error", role: "alert"}),
    el("div", {class: "columns"},
      el("section", {}, el("h2", {}, t("fleet.capacity_by_model")), chartBox("chart-capacity", t("fleet.capacity_by_model"))),
      el("section", {}, el("h2", {}, t("fleet.occupancy_by_site")), chartBox("chart-sites", t("fleet.occupancy_by_site")))),
    utilisation.section,
    el("div", {class: "columns"},
      section("models", t("fleet.by_model"), null),
      section("vendors", t("fleet.by_vendor"), null)),
    section("sites", t("fleet.sites"), null),
    nodesSection);
  let known = {sites: [], models: []};
  const showNodes = async (failure) => {
    if (failure) { fill("fleet-error", errorBox(failure)); return; }
    const nodes = await pager.load();
    if (nodes === null) return;  // a later page was asked for meanwhile
    fill("nodes-pager", nodeControls(pager, known.sites, known.models, () => showNodes().catch(showNodes)));
    fill("nodes", nodesTable(nodes, refresh));
  };
  const refresh = async (failure) => {
    if (failure) { fill("fleet-error", errorBox(failure)); return; }
    const [summary, sites] = await Promise.all([call("/fleet/summary"), call("/sites")]);
    known = {sites, models: summary.by_model};
    fill("fleet-error");
    fill("cards", card(t("fleet.sites"), summary.sites), card(t("fleet.nodes"), summary.nodes),
         card(t("fleet.accelerators"), summary.accelerators), card(t("fleet.available"), summary.accelerators_available),
         card(t("fleet.pflops"), fixed(summary.pflops_bf16, 2)), card(t("fleet.h100_equivalents"), fixed(summary.h100_equivalents, 1)));
    fill("models", table([[t("fleet.model"), (m) => m.model], [t("fleet.vendor"), (m) => m.vendor], [t("fleet.total"), (m) => m.total],
                          [t("fleet.available"), (m) => m.available], [t("fleet.unhealthy"), (m) => m.unhealthy]],
                         summary.by_model, t("fleet.no_accelerators")));
    fill("vendors", table([[t("fleet.vendor"), (v) => v.vendor], [t("fleet.models"), (v) => v.models], [t("fleet.total"), (v) => v.total],
                           [t("fleet.available"), (v) => v.available], [t("fleet.unhealthy"), (v) => v.unhealthy],
                           [t("fleet.utilisation"), (v) => v.total ? formatNumber(100 * (v.total - v.available) / v.total, 0) + "%" : "—"]],
                          byVendor(summary.by_model), t("fleet.no_accelerators")));
    fill("sites", sitesTable(sites));
    await showNodes();
    return {summary, sites};
  };
  const first = await refresh();
  await Promise.all([drawChart(document.getElementById("chart-capacity"), capacityChart(first.summary.by_model)),
                     drawChart(document.getElementById("chart-sites"), occupancyChart(occupancyBySite(first.sites))),
                     utilisation.draw()]);
  view.every(FLEET_EVERY_MS, () => refresh());
}
