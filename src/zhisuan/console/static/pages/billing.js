// Money: invoices (operators and tenants, each line traced to its usage records and price source),
// settlements and margin per month (operators), settlements and payouts (providers).
import {unitText} from "../lib/values.js";
import {$, el, fill, table, section, pill} from "../lib/dom.js";
import {t, formatMoney, formatNumber, formatDateTime, addAmounts, negateAmount} from "../lib/i18n.js";
import {call} from "../lib/api.js";
import {chartBox, drawChart} from "../lib/charts.js";

function invoiceLines(invoice) {
  return table([[t("invoices.line"), (l) => l.line_no], [t("invoices.kind"), (l) => l.kind], [t("invoices.model"), (l) => l.model],
                [t("invoices.provider"), (l) => l.provider], [t("invoices.pricing"), (l) => `${unitText(l.pricing_model)} · ${l.tier}`],
                [t("invoices.quantity"), (l) => `${formatNumber(l.billable_quantity, 4)} ${unitText(l.unit)}`, "num"],
                [t("invoices.unit_price"), (l) => formatMoney(l.unit_price, l.currency), "num"],
                [t("invoices.amount"), (l) => formatMoney(l.amount, l.currency), "num"],
                [t("invoices.source"), (l) => el("span", {title: l.usage_record_keys.join("\n")},
                  `${l.price_source} · ${t("invoices.records", {count: l.usage_record_keys.length})}`)]],
               invoice.lines, t("invoices.no_lines"));
}

export async function invoicesSection(root, me) {
  const invoices = await call("/invoices");
  const open = (invoice) => {
    for (const tr of root.querySelectorAll("#invoices tr.selected")) tr.classList.remove("selected");
    root.querySelector(`#invoices tr[data-invoice='${invoice.id}']`)?.classList.add("selected");
    fill("invoice-detail", el("h3", {}, t("invoices.detail", {number: invoice.number, period: invoice.period, book: invoice.book})),
         invoiceLines(invoice), el("p", {class: "total"}, t("common.total_is", {amount: formatMoney(invoice.total, invoice.currency)})));
  };
  root.append(section("invoices", t("invoices.title"), t("invoices.note"),
    table([[t("invoices.number"), (i) => i.number], ...(me.role === "operator" ? [[t("invoices.tenant"), (i) => i.tenant]] : []),
           [t("invoices.period"), (i) => i.period], [t("invoices.lines"), (i) => i.lines.length, "num"],
           [t("invoices.total"), (i) => formatMoney(i.total, i.currency), "num"], [t("invoices.book"), (i) => i.book],
           [t("invoices.issued"), (i) => formatDateTime(i.issued_at)]],
          invoices, t("invoices.empty"), {row: (tr, i) => {
            tr.dataset.invoice = i.id; tr.tabIndex = 0; tr.title = t("invoices.open");
            tr.addEventListener("click", () => open(i));
            tr.addEventListener("keydown", (event) => { if (event.key === "Enter") open(i); });
          }})),
    el("div", {id: "invoice-detail", "aria-live": "polite"}));
  return invoices;
}

// Per period: revenue, payouts to providers and the platform's margin, added exactly from the strings.
export function settlementsByPeriod(settlements) {
  const periods = new Map();
  for (const s of settlements) {
    const row = periods.get(s.period) || {period: s.period, currency: s.currency, revenue: [], payout: []};
    row.revenue.push(s.revenue); row.payout.push(s.payout);
    periods.set(s.period, row);
  }
  return [...periods.values()].sort((a, b) => a.period.localeCompare(b.period)).map((p) => {
    const revenue = addAmounts(p.revenue), payout = addAmounts(p.payout);
    return {period: p.period, currency: p.currency, revenue, payout, margin: addAmounts([revenue, negateAmount(payout)])};
  });
}

// Chart values are numbers for drawing only; every amount a person reads comes from the strings.
const plotted = (amount) => Number(amount);

function moneyChart(rows, series) {
  return {
    xAxis: {type: "category", data: rows.map((r) => r.period)},
    yAxis: {type: "value", name: "¥"},
    series: series.map(([name, field, type, color]) => ({name, type, data: rows.map((r) => plotted(r[field])), color})),
  };
}

function settlementsTable(settlements, operator) {
  return table([[t("settlements.provider"), (s) => s.provider], [t("settlements.period"), (s) => s.period],
                [t("settlements.revenue"), (s) => formatMoney(s.revenue, s.currency), "num"],
                [t("settlements.share"), (s) => formatNumber(100 * Number(s.share), 2) + "%", "num"],
                [t("settlements.payout"), (s) => formatMoney(s.payout, s.currency), "num"],
                ...(operator ? [[t("settlements.margin"), (s) => formatMoney(addAmounts([s.revenue, negateAmount(s.payout)]), s.currency), "num"]] : []),
                [t("settlements.computed"), (s) => s.computed_at ? formatDateTime(s.computed_at) : pill(t("settlements.pending"), "pending")]],
               [...settlements].sort((a, b) => b.period.localeCompare(a.period) || a.provider.localeCompare(b.provider)),
               t("settlements.empty"));
}

export async function operatorBillingPage(view) {
  const settlements = await call("/settlements");
  const periods = settlementsByPeriod(settlements);
  view.root.replaceChildren(
    el("section", {}, el("h2", {}, t("billing.margin_chart")), chartBox("chart-margin", t("billing.margin_chart"))),
    section("margin", t("billing.margin_title"), null,
      table([[t("settlements.period"), (p) => p.period], [t("settlements.revenue"), (p) => formatMoney(p.revenue, p.currency), "num"],
             [t("billing.payouts"), (p) => formatMoney(p.payout, p.currency), "num"],
             [t("settlements.margin"), (p) => formatMoney(p.margin, p.currency), "num"]],
            [...periods].reverse(), t("settlements.empty"))),
    section("settlements", t("settlements.title"), t("billing.per_provider"), settlementsTable(settlements, true)));
  await invoicesSection(view.root, view.me);
  await drawChart($("chart-margin"), moneyChart(periods, [[t("settlements.revenue"), "revenue", "bar", "#2563eb"],
    [t("billing.payouts"), "payout", "bar", "#94a3b8"], [t("settlements.margin"), "margin", "line", "#16a34a"]]));
}

export async function providerSettlementsPage(view) {
  const settlements = await call("/settlements");
  const periods = settlementsByPeriod(settlements);
  view.root.replaceChildren(
    el("section", {}, el("h2", {}, t("settlements.chart")), chartBox("chart-settlements", t("settlements.chart"))),
    section("settlements", t("settlements.title"), t("settlements.note"), settlementsTable(settlements, false)));
  await drawChart($("chart-settlements"), moneyChart(periods, [[t("settlements.revenue"), "revenue", "bar", "#2563eb"],
    [t("settlements.payout"), "payout", "bar", "#16a34a"]]));
}

export async function tenantInvoicesPage(view) {
  view.root.replaceChildren();
  await invoicesSection(view.root, view.me);
}
