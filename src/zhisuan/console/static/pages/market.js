// The market (operators): the price index now, contracts at risk of breach, contracts. Contracts alone
// for providers (theirs) and tenants (their own), as the API filters them.
import {unitText} from "../lib/values.js";
import {$, el, table, section} from "../lib/dom.js";
import {t, formatMoney, formatNumber} from "../lib/i18n.js";
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

export async function marketPage(view) {
  const [index, risk, contracts] = await Promise.all([call("/market/index"), call("/market/breach-risk"), call("/contracts")]);
  view.root.replaceChildren(
    el("section", {}, el("h2", {}, t("market.index_chart")), chartBox("chart-index", t("market.index_chart"))),
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
  await drawChart($("chart-index"), indexChart(index));
}

export async function contractsPage(view) {
  const contracts = await call("/contracts");
  view.root.replaceChildren(section("contracts", t("contracts.title"), t("contracts.note"), contractsTable(contracts)));
}
