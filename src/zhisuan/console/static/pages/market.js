// The market (operators): the price index now and its history (the same GET /market/index asked ``at``
// each past week: the index is recomputed from the contracts active then, no stored copy), contracts at
// risk of breach, contracts. Contracts alone
// for providers (theirs) and tenants (their own), as the API filters them.
import {unitText} from "../lib/values.js";
import {$, el, table, section} from "../lib/dom.js";
import {t, formatMoney, formatNumber, formatDate} from "../lib/i18n.js";
import {call} from "../lib/api.js";
import {chartBox, drawChart} from "../lib/charts.js";
import {contractsTable} from "./common.js";

function indexChart(entries) {
  const label = (e) => `${e.model} (${unitText(e.pricing_model)})`;
  return {
    tooltip: {trigger: "axis", renderMode: "richText"},
    xAxis: {type: "category", data: entries.map(label)},
    yAxis: {type: "value", name: "¥"},
    series: [
      {name: t("market.low"), type: "bar", data: entries.map((e) => Number(e.low)), color: "#94a3b8"},
      {name: t("market.index"), type: "bar", data: entries.map((e) => Number(e.price)), color: "#2563eb"},
      {name: t("market.high"), type: "bar", data: entries.map((e) => Number(e.high)), color: "#f59e0b"},
    ],
  };
}

const HISTORY_WEEKS = 12;
const WEEK_MS = 7 * 24 * 3600 * 1000;

// [instant, index entries] for each of the last HISTORY_WEEKS weeks and now, oldest first.
async function indexHistory(now) {
  const instants = [...Array(HISTORY_WEEKS).keys()].map((w) => new Date(now - (HISTORY_WEEKS - w) * WEEK_MS));
  const past = await Promise.all(instants.map((at) => call(`/market/index?at=${encodeURIComponent(at.toISOString())}`)));
  return instants.map((at, n) => [at, past[n]]);
}

function historyChart(history, now) {
  const label = (e) => `${e.model} (${unitText(e.pricing_model)})`;
  const names = [...new Set([...history.flatMap(([, entries]) => entries.map(label)), ...now.map(label)])].sort();
  const points = [...history, [new Date(), now]];
  return {
    tooltip: {trigger: "axis", renderMode: "richText"},
    xAxis: {type: "category", data: points.map(([at], n) => n === points.length - 1 ? t("market.now") : formatDate(at))},
    yAxis: {type: "value", name: "¥"},
    series: names.map((name) => ({name, type: "line", connectNulls: false, symbolSize: 8,
      data: points.map(([, entries]) => { const e = entries.find((x) => label(x) === name); return e ? Number(e.price) : null; })})),
  };
}

export async function marketPage(view) {
  const [index, risk, contracts, history] = await Promise.all([call("/market/index"), call("/market/breach-risk"),
    call("/contracts"), indexHistory(Date.now())]);
  view.root.replaceChildren(
    el("div", {class: "columns"},
      el("section", {}, el("h2", {}, t("market.index_chart")), chartBox("chart-index", t("market.index_chart"))),
      el("section", {}, el("h2", {}, t("market.history_chart")), chartBox("chart-index-history", t("market.history_chart")))),
    section("market-index", t("market.index_title"), t("market.index_note"),
      table([[t("market.model"), (e) => e.model], [t("market.pricing"), (e) => unitText(e.pricing_model)],
             [t("market.index"), (e) => formatMoney(e.price), "num"], [t("market.low"), (e) => formatMoney(e.low), "num"],
             [t("market.high"), (e) => formatMoney(e.high), "num"], [t("market.points"), (e) => e.points, "num"]],
            index, t("market.no_index"))),
    section("breach-risk", t("market.risk_title"), t("market.risk_note"),
      table([[t("contracts.id"), (r) => r.contract_id], [t("contracts.tenant"), (r) => r.tenant], [t("contracts.model"), (r) => r.model],
             [t("market.contract_price"), (r) => formatMoney(r.contract_price), "num"], [t("market.index"), (r) => formatMoney(r.index_price), "num"],
             [t("market.premium"), (r) => formatNumber(100 * Number(r.premium), 1) + "%", "num"],
             [t("market.penalty"), (r) => formatMoney(r.penalty), "num"], [t("market.saving"), (r) => formatMoney(r.tenant_saving), "num"],
             [t("market.exposure"), (r) => formatMoney(r.provider_exposure), "num"]],
            risk, t("market.no_risk"))),
    section("contracts", t("contracts.title"), null, contractsTable(contracts)));
  await Promise.all([drawChart($("chart-index"), indexChart(index)),
                     drawChart($("chart-index-history"), historyChart(history, index))]);
}

export async function contractsPage(view) {
  const contracts = await call("/contracts");
  view.root.replaceChildren(section("contracts", t("contracts.title"), t("contracts.note"), contractsTable(contracts)));
}
