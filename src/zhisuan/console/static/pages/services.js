// Model services: operators see every deployment; tenants their own and the platform's public ones.
// Both deploy a registered model (a tenant's deployment is its own) and undeploy what they own (the API
// refuses anyone else's), and scale what they own: replicas now (PATCH /deployments/{name}; a replica that
// does not fit or the tenant's replica quota is a 409 naming `replicas`, shown in the error box), with the
// autoscale policy shown and the latest replica changes of one deployment on demand (GET /deployments/{name}).
import {$, el, fill, section, table, errorBox, empty} from "../lib/dom.js";
import {t, formatDateTime} from "../lib/i18n.js";
import {call, patch, post, remove} from "../lib/api.js";
import {servicesTable} from "./common.js";

function deployForm(models, onDeployed) {
  if (!models.length) return empty(t("services.no_models"));
  const number = (id, label, value, max) => el("div", {class: "field"}, el("label", {for: id}, label),
    el("input", {id, type: "number", min: id === "deploy-devices" ? 0 : 1, max, value, required: true}));
  const form = el("form", {id: "deploy-form", class: "inline-form"},
    el("div", {class: "field"}, el("label", {for: "deploy-model"}, t("services.model")),
      el("select", {id: "deploy-model"}, models.map((m) => el("option", {value: m.name}, `${m.name} (${m.engine})`)))),
    el("div", {class: "field"}, el("label", {for: "deploy-name"}, t("services.name_optional")),
      el("input", {id: "deploy-name", pattern: "[a-z0-9][a-z0-9-]{0,62}", maxlength: 63})),
    number("deploy-replicas", t("services.replicas"), 1, 64),
    number("deploy-devices", t("services.devices_per_replica"), 1, 16),
    el("button", {type: "submit"}, t("services.deploy")));
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const body = {model: $("deploy-model").value, replicas: Number($("deploy-replicas").value),
                  devices_per_replica: Number($("deploy-devices").value)};
    if ($("deploy-name").value.trim()) body.name = $("deploy-name").value.trim();
    try { await post("/deployments", body); fill("services-error"); form.reset(); await onDeployed(); }
    catch (e) { fill("services-error", errorBox(e)); }
  });
  return form;
}

const autoscaleText = (a) => a ? t("services.autoscale", {min: a.min, max: a.max, target: a.target}) : t("services.fixed");

async function showEvents(name) {
  const d = await call(`/deployments/${encodeURIComponent(name)}`);
  fill("services-events", el("h3", {}, t("services.events_of", {name: d.name})),
    el("p", {class: "muted"}, autoscaleText(d.autoscale)),
    table([[t("services.event_at"), (e) => formatDateTime(e.at)], [t("services.event_kind"), (e) => e.kind],
      [t("services.replicas"), (e) => `${e.replicas_from} → ${e.replicas_to}`], [t("services.event_reason"), (e) => e.reason]],
      d.events, t("services.no_events")));
}

function scaleControl(d, refresh) {
  const input = el("input", {type: "number", min: 0, max: 64, value: d.replicas, class: "replicas-input",
    "aria-label": t("services.replicas_of", {name: d.name}), "data-scale": d.name});
  const scale = async () => {
    try { await patch(`/deployments/${encodeURIComponent(d.name)}`, {replicas: Number(input.value)}); fill("services-error"); await refresh(); }
    catch (e) { fill("services-error", errorBox(e)); }
  };
  return [input, el("button", {type: "button", "data-scale-button": d.name, on: {click: scale}}, t("services.scale")), " "];
}

export async function servicesPage(view) {
  const mine = (d) => view.me.role === "operator" || d.tenant !== null;
  const refresh = async () => {
    const deployments = await call("/deployments");
    const live = (d) => !["stopped", "stopping"].includes(d.status);
    const actions = (d) => [
      mine(d) && live(d) ? scaleControl(d, refresh) : "",
      el("button", {type: "button", "data-events": d.name, on: {click: () => showEvents(d.name).catch((e) => fill("services-error", errorBox(e)))}},
        t("services.events")), " ",
      mine(d) && live(d) ? el("button", {type: "button", class: "danger", "data-deployment": d.name, on: {click: async () => {
        if (!window.confirm(t("services.undeploy_confirm", {name: d.name}))) return;
        try { await remove(`/deployments/${encodeURIComponent(d.name)}`); fill("services-error"); await refresh(); }
        catch (e) { fill("services-error", errorBox(e)); }
      }}}, t("services.undeploy")) : "",
      el("div", {class: "muted"}, autoscaleText(d.autoscale))];
    fill("services", servicesTable(deployments, actions));
  };
  const models = await call("/models");
  view.root.replaceChildren(
    el("section", {id: "deploy-section"}, el("h2", {}, t("services.deploy_title")), deployForm(models, refresh)),
    el("div", {id: "services-error"}),
    section("services", t("services.title"), t("services.note")),
    el("div", {id: "services-events"}));
  await refresh();
  // The periodic refresh would throw away a replica count being typed.
  view.every(10000, () => (document.activeElement?.closest?.("#services") ? undefined : refresh()));
}
