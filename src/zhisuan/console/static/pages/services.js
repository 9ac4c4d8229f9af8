// Model services: operators see every deployment; tenants their own and the platform's public ones.
// Both deploy a registered model (a tenant's deployment is its own) and undeploy what they own (the API
// refuses anyone else's).
import {$, el, fill, section, errorBox, empty} from "../lib/dom.js";
import {t} from "../lib/i18n.js";
import {call, post, remove} from "../lib/api.js";
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

export async function servicesPage(view) {
  const mine = (d) => view.me.role === "operator" || d.tenant !== null;
  const refresh = async () => {
    const deployments = await call("/deployments");
    const undeploy = (d) => mine(d) && !["stopped", "stopping"].includes(d.status)
      ? el("button", {type: "button", class: "danger", "data-deployment": d.name, on: {click: async () => {
          if (!window.confirm(t("services.undeploy_confirm", {name: d.name}))) return;
          try { await remove(`/deployments/${encodeURIComponent(d.name)}`); await refresh(); }
          catch (e) { fill("services-error", errorBox(e)); }
        }}}, t("services.undeploy")) : "";
    fill("services", servicesTable(deployments, undeploy));
  };
  const models = await call("/models");
  view.root.replaceChildren(
    el("section", {id: "deploy-section"}, el("h2", {}, t("services.deploy_title")), deployForm(models, refresh)),
    el("div", {id: "services-error"}),
    section("services", t("services.title"), t("services.note")));
  await refresh();
  view.every(10000, refresh);
}
