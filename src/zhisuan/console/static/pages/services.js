// Model services: operators see every deployment; tenants their own and the platform's public ones,
// and may undeploy their own (the API refuses anyone else's).
import {el, fill, section, errorBox} from "../lib/dom.js";
import {t} from "../lib/i18n.js";
import {call, remove} from "../lib/api.js";
import {servicesTable} from "./common.js";

export async function servicesPage(view) {
  view.root.replaceChildren(el("div", {id: "services-error"}), section("services", t("services.title"), t("services.note")));
  const mine = (d) => view.me.role === "operator" || d.tenant !== null;
  const refresh = async () => {
    const deployments = await call("/deployments");
    const undeploy = (d) => mine(d) && !["stopped", "stopping"].includes(d.status)
      ? el("button", {type: "button", class: "danger", on: {click: async () => {
          if (!window.confirm(t("services.undeploy_confirm", {name: d.name}))) return;
          try { await remove(`/deployments/${encodeURIComponent(d.name)}`); await refresh(); }
          catch (e) { fill("services-error", errorBox(e)); }
        }}}, t("services.undeploy")) : "";
    fill("services", servicesTable(deployments, undeploy));
  };
  await refresh();
  view.every(10000, refresh);
}
