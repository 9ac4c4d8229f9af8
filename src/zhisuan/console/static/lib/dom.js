// Building the page from data. Every piece of API data enters the page as a text node or an attribute
// value (el() below), never as HTML: a job name, a log line or a reason cannot become markup.
import {t} from "./i18n.js";
import {ApiError} from "./api.js";

export const $ = (id) => document.getElementById(id);

export function el(tag, props = {}, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(props)) {
    if (value === undefined || value === null || value === false) continue;
    if (name === "class") node.className = value;
    else if (name === "on") for (const [event, handler] of Object.entries(value)) node.addEventListener(event, handler);
    else node.setAttribute(name, value === true ? "" : String(value));
  }
  for (const child of children.flat(Infinity)) {
    if (child !== undefined && child !== null && child !== false) node.append(child instanceof Node ? child : String(child));
  }
  return node;
}

export const fill = (id, ...nodes) => $(id)?.replaceChildren(...nodes);
const safeClass = (s) => String(s ?? "").toLowerCase().replace(/[^a-z0-9_-]/g, "");
export const pill = (s, cls) => el("span", {class: "pill " + safeClass(cls ?? s)}, s);
export const muted = (text) => el("span", {class: "muted"}, text);
export const empty = (text) => el("div", {class: "empty"}, text);
export const card = (label, value) => el("div", {class: "card"}, el("div", {class: "label"}, label), el("div", {class: "value"}, value));

// A table of rows: columns are [title, cell(row)]; no rows: the empty-state text.
export function table(columns, rows, emptyText, options = {}) {
  if (!rows.length) return empty(emptyText);
  return el("table", {class: options.class},
    el("thead", {}, el("tr", {}, columns.map(([title, , cls]) => el("th", {class: cls}, title)))),
    el("tbody", {}, rows.map((row) => {
      const tr = el("tr", {}, columns.map(([, cell, cls]) => el("td", {class: cls}, cell(row))));
      if (options.row) options.row(tr, row);
      return tr;
    })));
}

// A page section: a heading, an optional note, and its body in a box with an id (tests and refreshes find it).
export function section(id, title, note, ...body) {
  return el("section", {id: id + "-section"},
    el("div", {class: "head"}, el("h2", {}, title), note ? el("span", {class: "muted"}, note) : null),
    el("div", {class: "scroll", id}, body));
}

// What an API error means for the person looking at the page.
export function explain(error) {
  if (!(error instanceof ApiError)) return t("error.script", {message: error.message || String(error)});
  const detail = error.field ? `${error.message} (${error.field})` : error.message;
  const params = {status: error.status, detail};
  if (error.status === 0) return t("error.unreachable", params);
  if (error.status === 401) return t("error.401", params);
  if (error.status === 403) return t("error.403", params);
  if (error.status === 404) return t("error.404", params);
  if (error.status === 409) return t("error.409", params);
  if (error.status === 422) return t("error.422", params);
  if (error.status === 429) return t("error.429", params);
  if (error.status >= 500) return t("error.5xx", params);
  return t("error.other", params);
}

export const errorBox = (error) => el("div", {class: "problem", role: "alert"}, explain(error));
