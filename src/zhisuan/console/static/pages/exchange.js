// The compute exchange (GET /api/v1/exchange/…): operators see the whole book, every offer, request and
// match and may run a clearing; a provider its offers and the matches they take part in; a tenant its
// requests and matches. Either party accepts a proposed match (the contract is made once both have).
import {statePill, unitText} from "../lib/values.js";
import {el, fill, table, section, errorBox, muted} from "../lib/dom.js";
import {t, formatMoney, formatNumber, formatDateTime} from "../lib/i18n.js";
import {call, post} from "../lib/api.js";

const when = (start, end) => `${formatDateTime(start)} – ${formatDateTime(end)}`;

function bookTable(levels) {
  return table([[t("exchange.model"), (b) => b.model], [t("exchange.region"), (b) => b.region],
                [t("exchange.offered"), (b) => formatNumber(b.devices_offered), "num"],
                [t("exchange.best_floor"), (b) => formatMoney(b.best_floor), "num"],
                [t("exchange.requested"), (b) => formatNumber(b.devices_requested), "num"],
                [t("exchange.best_cap"), (b) => formatMoney(b.best_cap), "num"]], levels, t("exchange.no_book"));
}

function offersTable(offers) {
  return table([[t("exchange.id"), (o) => o.id], [t("exchange.provider"), (o) => o.provider], [t("exchange.site"), (o) => o.site],
                [t("exchange.model"), (o) => o.model], [t("exchange.devices"), (o) => `${o.remaining} / ${o.devices}`, "num"],
                [t("exchange.floor"), (o) => `${formatMoney(o.floor_price)} / ${unitText(o.pricing_model)}`, "num"],
                [t("exchange.window"), (o) => when(o.start, o.end)], [t("exchange.state"), (o) => statePill(o.state)]],
               offers, t("exchange.no_offers"));
}

function requestsTable(requests) {
  return table([[t("exchange.id"), (r) => r.id], [t("exchange.tenant"), (r) => r.tenant],
                [t("exchange.models"), (r) => Object.keys(r.models).join(", ") || t("exchange.any")],
                [t("exchange.amount"), (r) => `${r.remaining} / ${r.amount} ${unitText(r.unit)}`, "num"],
                [t("exchange.cap"), (r) => formatMoney(r.max_price), "num"],
                [t("exchange.starts"), (r) => when(r.earliest_start, r.latest_start)],
                [t("exchange.state"), (r) => [statePill(r.state), r.unmatched_reason ? [" ", muted(r.unmatched_reason)] : null]]],
               requests, t("exchange.no_requests"));
}

function matchesTable(matches, role, onAccept) {
  const mine = (m) => role === "tenant" ? m.tenant_accepted : m.provider_accepted;
  const accept = (m) => role === "operator" || m.state !== "proposed" ? ""
    : mine(m) ? muted(t("exchange.accepted_by_you"))
    : el("button", {type: "button", "data-match": m.id, on: {click: (event) => onAccept(m, event.target)}}, t("exchange.accept"));
  const sides = (m) => [m.tenant_accepted ? t("exchange.tenant_yes") : t("exchange.tenant_no"),
                        m.provider_accepted ? t("exchange.provider_yes") : t("exchange.provider_no")].join(" · ");
  return table([[t("exchange.id"), (m) => m.id], [t("exchange.model"), (m) => m.model], [t("exchange.region"), (m) => m.region],
                [t("exchange.devices"), (m) => formatNumber(m.devices), "num"],
                [t("exchange.price"), (m) => formatMoney(m.price), "num"], [t("exchange.window"), (m) => when(m.start, m.end)],
                [t("exchange.state"), (m) => [statePill(m.state), " ", muted(sides(m))]],
                [t("exchange.deadline"), (m) => formatDateTime(m.deadline)],
                [t("exchange.contract"), (m) => m.contract_id ?? "—"], ["", accept]],
               matches, t("exchange.no_matches"));
}

export async function exchangePage(view) {
  const role = view.me.role;
  const refresh = async () => {
    const [book, offers, requests, matches] = await Promise.all([
      role === "operator" ? call("/exchange/book") : null, role !== "tenant" ? call("/exchange/offers") : null,
      role !== "provider" ? call("/exchange/requests") : null, call("/exchange/matches")]);
    const accept = async (match, button) => {
      button.disabled = true;
      try { await post(`/exchange/matches/${match.id}/accept`, {}); fill("exchange-error"); await refresh(); }
      catch (e) { button.disabled = false; fill("exchange-error", errorBox(e)); }
    };
    if (book) fill("exchange-book", bookTable(book));
    if (offers) fill("exchange-offers", offersTable(offers));
    if (requests) fill("exchange-requests", requestsTable(requests));
    fill("exchange-matches", matchesTable(matches, role, accept));
  };
  const clear = role === "operator" ? el("button", {type: "button", id: "exchange-clear", on: {click: async (event) => {
    event.target.disabled = true;
    try { await post("/exchange/clear", {}); fill("exchange-error"); await refresh(); }
    catch (e) { fill("exchange-error", errorBox(e)); }
    finally { event.target.disabled = false; }
  }}}, t("exchange.clear")) : null;
  view.root.replaceChildren(
    el("div", {id: "exchange-error"}),
    role === "operator" ? el("section", {id: "exchange-book-section"},
      el("div", {class: "head"}, el("h2", {}, t("exchange.book")), el("span", {class: "muted"}, t("exchange.book_note")),
        el("span", {class: "spacer"}), clear),
      el("div", {class: "scroll", id: "exchange-book"})) : null,
    section("exchange-matches", t("exchange.matches"), t("exchange.matches_note")),
    role !== "tenant" ? section("exchange-offers", t("exchange.offers"), null) : null,
    role !== "provider" ? section("exchange-requests", t("exchange.requests"), null) : null);
  await refresh();
  view.every(15000, refresh);
}
