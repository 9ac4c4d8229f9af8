// Token usage of model services (MaaS): per model and day as a chart, per key and model as a table,
// priced as the invoice prices it. Tenants see their own; operators every tenant's.
import {$, el, table, section} from "../lib/dom.js";
import {t, formatMoney, formatNumber, formatDay} from "../lib/i18n.js";
import {call} from "../lib/api.js";
import {chartBox, drawChart} from "../lib/charts.js";

const DAYS = 30;
const isoDay = (date) => date.toISOString().slice(0, 10);

function usageChart(rows, days) {
  const models = [...new Set(rows.map((r) => r.model))].sort();
  const tokens = new Map(rows.map((r) => [`${r.model}\u0000${r.day}`, r.input_tokens + r.output_tokens]));
  return {
    xAxis: {type: "category", data: days.map(formatDay)},
    yAxis: {type: "value", name: t("usage.tokens")},
    series: models.map((model) => ({name: model, type: "bar", stack: "tokens",
                                    data: days.map((day) => tokens.get(`${model}\u0000${day}`) ?? 0)})),
  };
}

export async function usagePage(view) {
  const today = new Date();
  const first = new Date(today.getTime() - (DAYS - 1) * 86400000);
  const window = `from=${isoDay(first)}&to=${isoDay(today)}`;
  const [daily, byKey] = await Promise.all([call(`/usage/summary?group_by=model,day&${window}`),
                                            call(`/usage/summary?group_by=${view.me.role === "operator" ? "tenant," : ""}key,model&${window}`)]);
  const days = Array.from({length: DAYS}, (_, i) => isoDay(new Date(first.getTime() + i * 86400000)));
  const money = (r) => r.amount === null ? el("span", {title: r.note || ""}, "—") : formatMoney(r.amount, daily.currency || "CNY");
  view.root.replaceChildren(
    el("section", {}, el("h2", {}, t("usage.chart", {days: DAYS})), chartBox("chart-usage", t("usage.chart", {days: DAYS}))),
    section("usage", t("usage.title"), t("usage.note", {book: byKey.book || "—"}),
      table([...(view.me.role === "operator" ? [[t("usage.tenant"), (r) => r.tenant]] : []),
             [t("usage.key"), (r) => r.key || "—"], [t("usage.model"), (r) => r.model], [t("usage.requests"), (r) => formatNumber(r.requests), "num"],
             [t("usage.input"), (r) => formatNumber(r.input_tokens), "num"], [t("usage.output"), (r) => formatNumber(r.output_tokens), "num"],
             [t("usage.amount"), money, "num"]], byKey.rows, t("usage.empty")),
      el("p", {class: "total"}, t("common.total_is", {amount: byKey.totals.amount === null ? "—" : formatMoney(byKey.totals.amount, byKey.currency || "CNY")}))));
  await drawChart($("chart-usage"), usageChart(daily.rows, days));
}
