// The console's entry module (served from /console/; the Content-Security-Policy allows no inline
// script): signing in, the language, and a hash router over one page module per role's task. Each page
// is a view over the REST API the signed-in role already has; a role is shown only the pages (and
// controls) its API answers, so nothing it can click is refused with a 403.
import {$, el, errorBox} from "./lib/dom.js";
import {t, LANGUAGES, initialLanguage, setLanguage, currentLanguage, translateStatic} from "./lib/i18n.js";
import {call, post, remember, forget, signedKey, newSession, StaleAnswer, ApiError} from "./lib/api.js";
import {disposeCharts} from "./lib/charts.js";
import {fleetPage} from "./pages/fleet.js";
import {jobsPage} from "./pages/jobs.js";
import {servicesPage} from "./pages/services.js";
import {marketPage, contractsPage} from "./pages/market.js";
import {operatorBillingPage, providerSettlementsPage, tenantInvoicesPage} from "./pages/billing.js";
import {usagePage} from "./pages/usage.js";
import {accessPage, tenantKeysPage, providerKeysPage} from "./pages/access.js";
import {playgroundPage} from "./pages/playground.js";
import {exchangePage} from "./pages/exchange.js";
import {economicsPage} from "./pages/economics.js";

// Per role: [route, its label, its page]; the first is where the role lands.
const ROUTES = {
  operator: [["fleet", () => t("nav.fleet"), fleetPage], ["jobs", () => t("nav.jobs"), jobsPage],
             ["services", () => t("nav.services"), servicesPage], ["market", () => t("nav.market"), marketPage],
             ["exchange", () => t("nav.exchange"), exchangePage],
             ["billing", () => t("nav.billing"), operatorBillingPage], ["economics", () => t("nav.economics"), economicsPage], ["usage", () => t("nav.usage"), usagePage],
             ["access", () => t("nav.access"), accessPage]],
  provider: [["fleet", () => t("nav.sites"), fleetPage], ["exchange", () => t("nav.exchange"), exchangePage],
             ["contracts", () => t("nav.contracts"), contractsPage],
             ["settlements", () => t("nav.settlements"), providerSettlementsPage],
             ["economics", () => t("nav.economics"), economicsPage], ["keys", () => t("nav.provider_keys"), providerKeysPage]],
  tenant: [["jobs", () => t("nav.jobs"), jobsPage], ["services", () => t("nav.services"), servicesPage],
           ["playground", () => t("nav.playground"), playgroundPage],
           ["usage", () => t("nav.usage"), usagePage], ["keys", () => t("nav.keys"), tenantKeysPage],
           ["exchange", () => t("nav.exchange"), exchangePage], ["contracts", () => t("nav.contracts"), contractsPage],
           ["invoices", () => t("nav.invoices"), tenantInvoicesPage]],
};
const ROLE_NAMES = {operator: () => t("role.operator"), provider: () => t("role.provider"), tenant: () => t("role.tenant")};

let me = null;
let current = null;  // the shown page: {route, timers, leaving}

function routesOf(user) { return ROUTES[user?.role] || []; }

function leavePage() {
  if (!current) return;
  for (const timer of current.timers) clearInterval(timer);
  for (const leave of current.leaving) leave();
  current = null;
  disposeCharts();
}

function pageFailed(error, page) {
  if (error instanceof StaleAnswer || page !== current) return;
  if (error instanceof ApiError && error.status === 401) { forget(); showLogin(t("session.ended")); return; }
  $("page-error").replaceChildren(errorBox(error));
}

async function showRoute() {
  if (!me) return;
  const routes = routesOf(me);
  const wanted = location.hash.replace(/^#\/?/, "");
  const [route, , render] = routes.find(([name]) => name === wanted) || routes[0];
  leavePage();
  const page = {route, timers: [], leaving: []};
  current = page;
  for (const link of document.querySelectorAll("#nav a")) {
    if (link.dataset.route === route) link.setAttribute("aria-current", "page"); else link.removeAttribute("aria-current");
  }
  const root = $("page");
  root.dataset.route = route;
  delete root.dataset.ready;  // set once the page has drawn (the browser tests wait for it)
  root.replaceChildren();
  $("page-error").replaceChildren();
  const view = {
    me, root,
    every: (ms, work) => page.timers.push(setInterval(() => {
      if (page === current) Promise.resolve().then(work).then(() => $("page-error").replaceChildren(), (e) => pageFailed(e, page));
    }, ms)),
    onLeave: (leave) => page.leaving.push(leave),
  };
  try { await render(view); if (page === current) root.dataset.ready = "true"; }
  catch (e) { pageFailed(e, page); if (page === current) root.dataset.ready = "failed"; }
}

function showNav() {
  $("nav").replaceChildren(...routesOf(me).map(([route, label]) => el("a", {href: "#/" + route, "data-route": route}, label())));
}

async function begin() {
  newSession();
  me = await call("/auth/whoami");
  $("who").textContent = `${me.username} (${(ROLE_NAMES[me.role] || (() => me.role))()})`;
  $("logout").hidden = false; $("login").hidden = true; $("main").hidden = false;
  showNav();
  await showRoute();
}

function showLogin(message) {
  newSession();
  leavePage();
  me = null;
  $("page").replaceChildren(); $("nav").replaceChildren(); $("page-error").replaceChildren();
  $("main").hidden = true; $("logout").hidden = true; $("login").hidden = false; $("who").textContent = "";
  $("error").textContent = message || "";
}

function showLanguages() {
  const select = $("lang");
  select.replaceChildren(...Object.entries(LANGUAGES).map(([code, name]) => el("option", {value: code}, name)));
  select.value = currentLanguage();
}

$("login-form").addEventListener("submit", async (event) => {
  event.preventDefault();
  try {
    const issued = await post("/auth/login", {username: $("username").value, password: $("password").value});
    remember(issued.key);
    $("password").value = "";
    await begin();
  } catch (e) {
    forget();
    showLogin(e instanceof ApiError && e.status === 401 ? t("login.wrong") : errorBox(e).textContent);
  }
});
$("logout").addEventListener("click", () => { forget(); showLogin(); });
$("lang").addEventListener("change", async () => {
  await setLanguage($("lang").value, true);
  translateStatic();
  if (me) { $("who").textContent = `${me.username} (${(ROLE_NAMES[me.role] || (() => me.role))()})`; showNav(); await showRoute(); }
});
window.addEventListener("hashchange", () => { if (me) showRoute(); });

(async () => {
  await setLanguage(initialLanguage());
  showLanguages();
  translateStatic();
  if (!signedKey()) return showLogin();
  try { await begin(); }
  catch (e) { forget(); showLogin(e instanceof ApiError && e.status === 401 ? "" : errorBox(e).textContent); }
})();
