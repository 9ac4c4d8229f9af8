// Messages and formats per language. Every visible string goes through t("key") with a literal key (a test
// parses the modules for t("…") and checks that both catalogs hold each key); data from the API (names,
// states, reasons) is shown as the API gives it.
export const LANGUAGES = {"zh-CN": "中文", "en": "English"};
const STORED = "zhisuan.lang";

let language = "en";
let messages = {};
let fallback = {};

export function initialLanguage() {
  const stored = localStorage.getItem(STORED);
  if (stored && stored in LANGUAGES) return stored;
  const preferred = navigator.languages?.length ? navigator.languages : [navigator.language || "en"];
  for (const tag of preferred) {
    if (tag.toLowerCase().startsWith("zh")) return "zh-CN";
    if (tag.toLowerCase().startsWith("en")) return "en";
  }
  return "en";
}

async function catalog(code) {
  const response = await fetch(`/console/i18n/${code}.json`);
  if (!response.ok) throw new Error(`message catalog ${code}: ${response.status}`);
  return response.json();
}

export async function setLanguage(code, remember = false) {
  if (!(code in LANGUAGES)) code = "en";
  const [chosen, english] = await Promise.all([catalog(code), code === "en" ? null : catalog("en")]);
  messages = chosen; fallback = english || chosen; language = code;
  if (remember) localStorage.setItem(STORED, code);
  document.documentElement.lang = code;
}

export const currentLanguage = () => language;

// t("key", {name: value}): the message with {name} replaced; a missing key shows itself (and a test fails).
export function t(key, params = {}) {
  const text = messages[key] ?? fallback[key] ?? key;
  return text.replace(/\{(\w+)\}/g, (whole, name) => (name in params ? String(params[name]) : whole));
}

// Static text in index.html: data-i18n="key" sets the text, data-i18n-label="key" the aria-label.
export function translateStatic(root = document) {
  for (const node of root.querySelectorAll("[data-i18n]")) node.textContent = t(node.dataset.i18n);
  for (const node of root.querySelectorAll("[data-i18n-label]")) node.setAttribute("aria-label", t(node.dataset.i18nLabel));
  document.title = t("app.title");
}

// --- formats ---------------------------------------------------------------------------------------

export function formatNumber(value, digits = 2) {
  if (value === null || value === undefined || value === "") return "—";
  return new Intl.NumberFormat(language, {maximumFractionDigits: digits}).format(Number(value));
}

// Money arrives as the API's Decimal string ("1234.5", "-0.07", "15.0000"): it is regrouped and padded
// to the fen as text, never through a float, so what is shown is exactly what the API computed.
const MONEY = /^(-?)(\d+)(?:\.(\d+))?$/;

export function formatMoney(amount, currency = "CNY") {
  if (amount === null || amount === undefined) return "—";
  const parts = MONEY.exec(String(amount));
  if (!parts) return String(amount);
  const [, sign, whole, fraction = ""] = parts;
  const grouped = new Intl.NumberFormat(language, {useGrouping: true}).format(BigInt(whole));
  const fen = fraction.length >= 2 ? fraction : fraction.padEnd(2, "0");
  const symbol = currency === "CNY" ? "¥" : currency + " ";
  return `${sign}${symbol}${grouped}.${fen}`;
}

// Exact sums of the API's Decimal strings, as BigInt at the finest scale among them: a page that adds
// amounts (a month's payouts) or subtracts them (margin) does it exactly, never through a float.
export function addAmounts(amounts) {
  const parsed = amounts.map((amount) => {
    const parts = MONEY.exec(String(amount));
    if (!parts) throw new Error(`not an amount: ${amount}`);
    return parts;
  });
  const scale = Math.max(2, ...parsed.map(([, , , fraction = ""]) => fraction.length));
  let total = 0n;
  for (const [, sign, whole, fraction = ""] of parsed) {
    const value = BigInt(whole + fraction.padEnd(scale, "0"));
    total += sign ? -value : value;
  }
  const negative = total < 0n;
  const digits = (negative ? -total : total).toString().padStart(scale + 1, "0");
  return `${negative ? "-" : ""}${digits.slice(0, -scale)}.${digits.slice(-scale)}`;
}

export const negateAmount = (amount) => String(amount).startsWith("-") ? String(amount).slice(1) : "-" + amount;

export function formatDateTime(iso) {
  if (!iso) return "—";
  return new Intl.DateTimeFormat(language, {dateStyle: "medium", timeStyle: "short"}).format(new Date(iso));
}

export function formatTime(iso) {
  if (!iso) return "—";
  const at = new Date(iso);
  const today = at.toDateString() === new Date().toDateString();
  const options = today ? {timeStyle: "medium"} : {month: "short", day: "numeric", hour: "2-digit", minute: "2-digit"};
  return new Intl.DateTimeFormat(language, options).format(at);
}

// A UTC day ("2026-11-30") as the locale writes a date, without shifting it into another day.
export function formatDay(day) {
  if (!day) return "—";
  return new Intl.DateTimeFormat(language, {dateStyle: "medium", timeZone: "UTC"}).format(new Date(day + "T00:00:00Z"));
}

// A day in the user's time zone, short ("Nov 30", "11月30日"), for chart axes.
export function formatDate(at) {
  return new Intl.DateTimeFormat(language, {month: "short", day: "numeric"}).format(new Date(at));
}
