// Users, API keys and the audit log (operators); a tenant's own keys: create with limits (the secret is
// shown once) and revoke.
import {roleText} from "../lib/values.js";
import {$, el, fill, pill, table, section, errorBox, muted} from "../lib/dom.js";
import {t, formatDateTime, formatMoney, formatNumber} from "../lib/i18n.js";
import {call, post, remove} from "../lib/api.js";

const limits = (k) => [k.models ? t("keys.models_only", {models: k.models.join(", ")}) : null,
  k.rpm ? `${formatNumber(k.rpm)} rpm` : null, k.tpm ? `${formatNumber(k.tpm)} tpm` : null,
  k.token_budget ? t("keys.token_budget_is", {tokens: formatNumber(k.token_budget)}) : null,
  k.money_budget ? t("keys.money_budget_is", {amount: formatMoney(k.money_budget)}) : null].filter(Boolean).join(" · ") || t("keys.unlimited");

const keyState = (k) => k.revoked_at ? pill(t("keys.revoked"), "revoked") : pill(t("keys.active"), "healthy");

function keysTable(keys, me, onRevoke) {
  const revoke = (k) => k.revoked_at || k.key_id === me.key_id ? (k.key_id === me.key_id ? muted(t("keys.this_session")) : "")
    : el("button", {type: "button", class: "danger", "data-key": k.key_id, on: {click: () => onRevoke(k)}}, t("keys.revoke"));
  return table([[t("keys.id"), (k) => k.key_id], [t("keys.name"), (k) => k.name || "—"], [t("keys.user"), (k) => k.username],
                [t("keys.scopes"), (k) => k.scopes.join(", ")], [t("keys.limits"), limits], [t("keys.state"), keyState],
                [t("keys.created"), (k) => formatDateTime(k.created_at)], [t("keys.last_used"), (k) => formatDateTime(k.last_used_at)],
                ...(onRevoke ? [["", revoke]] : [])], keys, t("keys.empty"));
}

export async function accessPage(view) {
  const [users, keys, audit] = await Promise.all([call("/users"), call("/keys"), call("/audit")]);
  view.root.replaceChildren(
    section("users", t("users.title"), null,
      table([[t("users.name"), (u) => u.username], [t("users.role"), (u) => roleText(u.role)],
             [t("users.state"), (u) => u.disabled ? pill(t("users.disabled"), "disabled") : pill(t("keys.active"), "healthy")],
             [t("keys.created"), (u) => formatDateTime(u.created_at)]], users, t("users.empty"))),
    section("keys", t("keys.title"), null, keysTable(keys, view.me, null)),
    section("audit", t("audit.title"), t("audit.note"),
      table([[t("audit.at"), (a) => formatDateTime(a.at)], [t("audit.actor"), (a) => a.actor], [t("audit.action"), (a) => a.action],
             [t("audit.object"), (a) => `${a.object_type} ${a.object_ref}`]], audit, t("audit.empty"))));
}

// A key carries at most the scopes of the key that creates it (the console session's): offer those.
function scopeChoices(scopes) {
  return el("fieldset", {class: "field scopes"}, el("legend", {}, t("keys.scopes")),
    scopes.map((scope) => el("label", {}, el("input", {type: "checkbox", name: "key-scope", value: scope, checked: true}), " ", scope)));
}

function keyForm(me, onCreated) {
  const field = (id, label, props = {}) => [el("div", {class: "field"}, el("label", {for: id}, label), el("input", {id, ...props}))];
  const form = el("form", {id: "key-form", class: "inline-form"},
    ...field("key-name", t("keys.name"), {maxlength: 100, required: true}),
    ...field("key-models", t("keys.models"), {placeholder: t("keys.models_hint")}),
    ...field("key-rpm", t("keys.rpm"), {type: "number", min: 1}),
    ...field("key-tpm", t("keys.tpm"), {type: "number", min: 1}),
    ...field("key-budget", t("keys.money_budget"), {inputmode: "decimal", pattern: "\\d+(\\.\\d{1,2})?", placeholder: "100.00"}),
    ...field("key-days", t("keys.expires_days"), {type: "number", min: 1, max: 3650}),
    scopeChoices(me.scopes),
    el("button", {type: "submit"}, t("keys.create")));
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const value = (id) => $(id).value.trim();
    const body = {name: value("key-name"), scopes: [...form.querySelectorAll("input[name=key-scope]:checked")].map((box) => box.value)};
    if (value("key-models")) body.models = value("key-models").split(",").map((m) => m.trim()).filter(Boolean);
    if (value("key-rpm")) body.rpm = Number(value("key-rpm"));
    if (value("key-tpm")) body.tpm = Number(value("key-tpm"));
    if (value("key-budget")) body.money_budget = value("key-budget");  // a Decimal string, as the API takes it
    if (value("key-days")) body.expires_in_days = Number(value("key-days"));
    try { onCreated(await post("/keys", body)); form.reset(); }
    catch (e) { fill("key-error", errorBox(e)); }
  });
  return form;
}

export async function tenantKeysPage(view) {
  const refresh = async () => {
    fill("keys", keysTable(await call("/keys"), view.me, async (k) => {
      if (!window.confirm(t("keys.revoke_confirm", {id: k.key_id}))) return;
      try { await remove(`/keys/${encodeURIComponent(k.key_id)}`); await refresh(); }
      catch (e) { fill("key-error", errorBox(e)); }
    }));
  };
  const created = async (issued) => {
    fill("key-error");
    fill("key-secret", el("div", {class: "secret", role: "status"}, el("strong", {}, t("keys.shown_once")), " ",
      el("code", {id: "key-secret-value"}, issued.key)));
    await refresh();
  };
  view.root.replaceChildren(
    el("section", {id: "key-create"}, el("h2", {}, t("keys.new")), keyForm(view.me, created),
      el("div", {id: "key-error"}), el("div", {id: "key-secret", "aria-live": "polite"})),
    section("keys", t("keys.title"), t("keys.note")));
  await refresh();
}

// A provider's keys: the agent keys of its sites (whoever issued them; `zhisuan agent` registers nodes
// into one site with one) — issued here per site (POST /sites/{site}/agent-keys, the secret shown once)
// and revoked (DELETE /keys/{id}) — and its users' other keys.
function agentKeyForm(sites, onCreated) {
  const site = el("select", {id: "agent-key-site", required: true}, sites.map((s) => el("option", {value: s.name}, s.name)));
  const days = el("input", {id: "agent-key-days", type: "number", min: 1, max: 3650});
  const form = el("form", {id: "agent-key-form", class: "inline-form"},
    el("div", {class: "field"}, el("label", {for: "agent-key-site"}, t("agent_keys.site")), site),
    el("div", {class: "field"}, el("label", {for: "agent-key-days"}, t("keys.expires_days")), days),
    el("button", {type: "submit"}, t("agent_keys.create")));
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const body = {expires_in_days: days.value ? Number(days.value) : null};
    try { onCreated(await post(`/sites/${encodeURIComponent(site.value)}/agent-keys`, body)); days.value = ""; }
    catch (e) { fill("key-error", errorBox(e)); }
  });
  return form;
}

export async function providerKeysPage(view) {
  const sites = await call("/sites");
  const siteName = new Map(sites.map((s) => [s.id, s.name]));
  const revoke = async (k) => {
    if (!window.confirm(t("keys.revoke_confirm", {id: k.key_id}))) return;
    try { await remove(`/keys/${encodeURIComponent(k.key_id)}`); await refresh(); }
    catch (e) { fill("key-error", errorBox(e)); }
  };
  const refresh = async () => {
    const keys = await call("/keys");
    const agents = keys.filter((k) => k.scopes.includes("agent"));
    const button = (k) => k.revoked_at ? "" :
      el("button", {type: "button", class: "danger", "data-key": k.key_id, on: {click: () => revoke(k)}}, t("keys.revoke"));
    fill("agent-keys", table([[t("keys.id"), (k) => k.key_id], [t("agent_keys.site"), (k) => siteName.get(k.site_id) || "—"],
      [t("keys.user"), (k) => k.username], [t("keys.state"), keyState], [t("keys.created"), (k) => formatDateTime(k.created_at)],
      [t("agent_keys.expires"), (k) => k.expires_at ? formatDateTime(k.expires_at) : t("agent_keys.never")],
      [t("keys.last_used"), (k) => formatDateTime(k.last_used_at)], ["", button]], agents, t("agent_keys.empty")));
    fill("keys", keysTable(keys.filter((k) => !k.scopes.includes("agent")), view.me, revoke));
  };
  const created = async (issued) => {
    fill("key-error");
    fill("key-secret", el("div", {class: "secret", role: "status"}, el("strong", {}, t("keys.shown_once")), " ",
      el("code", {id: "key-secret-value"}, issued.key)), el("p", {class: "muted"}, t("agent_keys.how")));
    await refresh();
  };
  view.root.replaceChildren(
    el("section", {id: "agent-key-create"}, el("h2", {}, t("agent_keys.new")),
      sites.length ? agentKeyForm(sites, created) : muted(t("agent_keys.no_sites")),
      el("div", {id: "key-error"}), el("div", {id: "key-secret", "aria-live": "polite"})),
    section("agent-keys", t("agent_keys.title"), t("agent_keys.note")),
    section("keys", t("keys.title"), t("keys.note")));
  await refresh();
}
