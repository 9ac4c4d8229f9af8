// Operator (and provider) economics: idle rate and revenue per device-hour per site and provider for a month
// (GET /economics/yield, from the utilisation history — hour buckets, day buckets past 90 days, the page says
// which — and the month's settlements, a site's part computed by the server to the fen), and a server's payback
// period (回本周期) at a purchase price, a monthly lease and a utilisation (POST /economics/payback: the
// amounts stay Decimal strings, computed by the server, never by a float here), and a what-if: the month's
// usage replayed with another price book (version, % change) or utilisation (usage × factor) through the
// invoices' rating code beside the actual invoices (POST /economics/what-if, which writes nothing).
import {$, el, fill, table, section, errorBox} from "../lib/dom.js";
import {t, formatMoney, formatNumber} from "../lib/i18n.js";
import {call, post} from "../lib/api.js";

const percent = (ratio) => ratio === null ? "—" : formatNumber(100 * Number(ratio), 1) + "%";
const month = (offset) => { const d = new Date(); d.setUTCDate(1); d.setUTCMonth(d.getUTCMonth() + offset); return d.toISOString().slice(0, 7); };

function paybackForm() {
  const field = (id, label, value, hint) => el("div", {class: "field"}, el("label", {for: id}, label),
    el("input", {id, inputmode: "decimal", pattern: "\\d+(\\.\\d+)?", value, required: true, title: hint}));
  const form = el("form", {id: "payback-form", class: "inline-form"},
    field("payback-price", t("economics.purchase_price"), "2000000"),
    field("payback-lease", t("economics.monthly_lease"), "150000"),
    field("payback-utilisation", t("economics.utilisation"), "0.7"),
    field("payback-share", t("economics.provider_share"), "0.85"),
    field("payback-cost", t("economics.monthly_cost"), "20000"),
    el("button", {type: "submit"}, t("economics.compute")));
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    try {
      const found = await post("/economics/payback", {purchase_price: $("payback-price").value, monthly_lease: $("payback-lease").value,
        utilisation: $("payback-utilisation").value, provider_share: $("payback-share").value, monthly_cost: $("payback-cost").value});
      fill("payback-result", el("dl", {class: "fields"},
        el("dt", {}, t("economics.monthly_revenue")), el("dd", {}, formatMoney(found.monthly_revenue)),
        el("dt", {}, t("economics.monthly_net")), el("dd", {}, formatMoney(found.monthly_net)),
        el("dt", {}, t("economics.payback")), el("dd", {id: "payback-months"},
          found.months === null ? t("economics.never") : t("economics.months", {months: formatNumber(found.months, 2)})),
        el("dt", {}, t("economics.yearly_return")), el("dd", {}, percent(found.yearly_return))));
    } catch (e) { fill("payback-result", errorBox(e)); }
  });
  return form;
}

const signed = (amount) => (Number(amount) > 0 ? "+" : "") + formatMoney(amount);
// b − a of two Decimal strings, exactly, in whole fen (BigInt: amounts never go through a float).
const fen = (amount) => {
  const [whole, fraction = ""] = String(amount).split(".");
  const value = BigInt(whole.replace("-", "")) * 100n + BigInt((fraction + "00").slice(0, 2));
  return whole.startsWith("-") ? -value : value;
};
const delta = (a, b) => {
  const d = fen(b) - fen(a), size = d < 0n ? -d : d;
  return `${d < 0n ? "-" : ""}${size / 100n}.${String(size % 100n).padStart(2, "0")}`;
};

function whatIfResult(found) {
  const row = (label, key) => [label, formatMoney(found.actual[key]), formatMoney(found.what_if[key]),
    signed(delta(found.actual[key], found.what_if[key]))];
  const totals = table([[t("whatif.figure"), (r) => r[0]], [t("whatif.actual"), (r) => r[1], "num"],
    [t("whatif.replayed"), (r) => r[2], "num"], [t("whatif.difference"), (r) => r[3], "num"]],
    [row(t("economics.revenue"), "revenue"), row(t("whatif.payouts"), "payouts"), row(t("whatif.margin"), "margin")], "");
  const tenants = table([[t("whatif.tenant"), (r) => r.tenant], [t("whatif.actual"), (r) => formatMoney(r.actual), "num"],
    [t("whatif.replayed"), (r) => formatMoney(r.what_if), "num"], [t("whatif.difference"), (r) => signed(delta(r.actual, r.what_if)), "num"],
    [t("whatif.lines"), (r) => formatNumber(r.lines, 0), "num"]], found.tenants, t("whatif.no_usage"));
  const providers = table([[t("economics.provider"), (r) => r.provider],
    [t("whatif.actual_payout"), (r) => formatMoney(r.actual_payout), "num"], [t("whatif.payout"), (r) => formatMoney(r.payout), "num"],
    [t("whatif.difference"), (r) => signed(delta(r.actual_payout, r.payout)), "num"]], found.providers, t("whatif.no_usage"));
  return el("div", {id: "whatif-figures"},
    el("p", {class: "muted"}, t("whatif.summary", {book: found.book, records: formatNumber(found.usage_records, 0),
      unpriced: formatNumber(found.unpriced_records, 0)})), totals, el("h3", {}, t("whatif.per_tenant")), tenants,
    el("h3", {}, t("whatif.per_provider")), providers);
}

function whatIfForm(period) {
  const field = (id, label, input) => el("div", {class: "field"}, el("label", {for: id}, label), input);
  const book = el("input", {id: "whatif-book", placeholder: t("whatif.book_default")});
  const version = el("input", {id: "whatif-version", inputmode: "numeric", pattern: "\\d*", placeholder: t("whatif.version_default")});
  const change = el("input", {id: "whatif-price", inputmode: "decimal", pattern: "-?\\d+(\\.\\d+)?", value: "0", required: true});
  const factor = el("input", {id: "whatif-usage", inputmode: "decimal", pattern: "\\d+(\\.\\d+)?", value: "1", required: true});
  const form = el("form", {id: "whatif-form", class: "inline-form"},
    field("whatif-book", t("whatif.book"), book), field("whatif-version", t("whatif.version"), version),
    field("whatif-price", t("whatif.price_change"), change), field("whatif-usage", t("whatif.usage_factor"), factor),
    el("button", {type: "submit"}, t("whatif.replay")));
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const body = {period: period.value, price_change_percent: change.value, usage_factor: factor.value};
    if (book.value.trim()) body.book = book.value.trim();
    if (version.value.trim()) body.version = Number(version.value);
    try { fill("whatif-result", whatIfResult(await post("/economics/what-if", body))); }
    catch (e) { fill("whatif-result", errorBox(e)); }
  });
  return form;
}

// Thirteen months back: past the hour buckets' 90 days the server answers from day buckets (and says so).
const MONTHS = [...Array(13).keys()].map((m) => -m);
const revenue = (amount) => amount === null ? t("economics.not_settled") : formatMoney(amount);

function showYield(report) {
  const hoursColumns = [[t("economics.device_hours"), (r) => formatNumber(r.device_hours, 2), "num"],
    [t("economics.allocated_hours"), (r) => formatNumber(r.allocated_hours, 2), "num"],
    [t("economics.idle_rate"), (r) => percent(r.idle_rate), "num"]];
  fill("economics-resolution", report.resolution === "day" ? t("economics.resolution_day") : t("economics.resolution_hour"));
  fill("economics-providers", table([[t("economics.provider"), (p) => p.provider], ...hoursColumns,
    [t("economics.revenue"), (p) => revenue(p.revenue), "num"],
    [t("economics.revenue_per_hour"), (p) => formatMoney(p.revenue_per_device_hour), "num"]], report.providers, t("economics.no_history")));
  fill("economics-sites", table([[t("economics.site"), (s) => s.site], [t("economics.provider"), (s) => s.provider], ...hoursColumns,
    [t("economics.site_bound"), (s) => revenue(s.site_bound_revenue), "num"], [t("economics.revenue"), (s) => revenue(s.revenue), "num"],
    [t("economics.revenue_per_hour"), (s) => formatMoney(s.revenue_per_device_hour), "num"]], report.sites, t("economics.no_history")));
}

// Operators: every provider and site, and the what-if; a provider: its own sites (the what-if replays
// every tenant's invoices, which only operators may read).
export async function economicsPage(view) {
  const select = el("select", {id: "economics-period"}, MONTHS.map((m) => el("option", {value: month(m)}, month(m))));
  const show = async () => showYield(await call(`/economics/yield?period=${select.value}`));
  select.addEventListener("change", () => show().catch((e) => fill("economics-providers", errorBox(e))));
  const sections = [
    el("section", {id: "economics-period-section"}, el("div", {class: "head"}, el("h2", {}, t("economics.title")),
      el("label", {for: "economics-period"}, t("economics.period")), select,
      el("strong", {id: "economics-resolution", "aria-live": "polite"}), el("span", {class: "muted"}, t("economics.note")))),
    section("economics-providers", t("economics.providers"), null),
    section("economics-sites", t("economics.sites"), t("economics.sites_note")),
    el("section", {id: "payback-section"}, el("div", {class: "head"}, el("h2", {}, t("economics.payback_title")),
      el("span", {class: "muted"}, t("economics.payback_note"))), paybackForm(), el("div", {id: "payback-result"}))];
  if (view.me.role === "operator") {
    sections.push(el("section", {id: "whatif-section"}, el("div", {class: "head"}, el("h2", {}, t("whatif.title")),
      el("span", {class: "muted"}, t("whatif.note"))), whatIfForm(select), el("div", {id: "whatif-result"})));
  }
  view.root.replaceChildren(...sections);
  await show();
}
