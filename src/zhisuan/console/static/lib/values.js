// Values the API sends as fixed words — states, roles, units — and the fixed parts of its reasons, shown
// in the chosen language. Keys are literal (the catalog test finds them); a value or reason this table
// does not know is shown as the API gave it, so nothing is ever hidden by a missing translation.
import {t} from "./i18n.js";
import {el} from "./dom.js";

const STATES = {
  queued: () => t("state.queued"), admitted: () => t("state.admitted"), starting: () => t("state.starting"),
  running: () => t("state.running"), succeeded: () => t("state.succeeded"), failed: () => t("state.failed"),
  cancelled: () => t("state.cancelled"), preempted: () => t("state.preempted"), lost: () => t("state.lost"),
  ready: () => t("state.ready"), unreachable: () => t("state.unreachable"), drained: () => t("state.drained"),
  draft: () => t("state.draft"), active: () => t("state.active"), expired: () => t("state.expired"),
  terminated: () => t("state.terminated"), breached: () => t("state.breached"), deploying: () => t("state.deploying"),
  degraded: () => t("state.degraded"), draining: () => t("state.draining"), stopped: () => t("state.stopped"),
  pending: () => t("state.pending"), healthy: () => t("state.healthy"), unhealthy: () => t("state.unhealthy"),
  open: () => t("state.open"), matched: () => t("state.matched"), withdrawn: () => t("state.withdrawn"),
  proposed: () => t("state.proposed"), accepted: () => t("state.accepted"), lapsed: () => t("state.lapsed"),
};

const ROLES = {operator: () => t("role.operator"), provider: () => t("role.provider"), tenant: () => t("role.tenant")};

// Pricing models (device_hour…) and the units invoice lines are counted in (device-hour…).
const UNITS = {
  device_hour: () => t("unit.device_hour"), server_month: () => t("unit.server_month"), pflops_year: () => t("unit.pflops_year"),
  input_tokens: () => t("unit.input_tokens"), output_tokens: () => t("unit.output_tokens"), core_hour: () => t("unit.core_hour"),
  "device-hour": () => t("unit.device_hour"), "server-month": () => t("unit.server_month"), "PFLOPS-year": () => t("unit.pflops_year"),
  "million input tokens": () => t("unit.million_input_tokens"), "million output tokens": () => t("unit.million_output_tokens"),
  "core-hour": () => t("unit.core_hour"),
  devices: () => t("unit.devices"), servers: () => t("unit.servers"), h100_eq: () => t("unit.h100_eq"),
};

const known = (table, value) => Object.hasOwn(table, value ?? "") ? table[value]() : (value ?? "—");

export const stateText = (state) => known(STATES, state);
export const roleText = (role) => known(ROLES, role);
export const unitText = (unit) => known(UNITS, unit);
// A state as a coloured pill: the class follows the API's word, the text the chosen language.
export const statePill = (state, cls) => el("span", {class: "pill " + String(cls ?? state ?? "").toLowerCase().replace(/[^a-z0-9_-]/g, "")},
                                            stateText(state));

// Reasons: [pattern over the API's English text, its message with the variable parts kept as sent].
const REASONS = [
  [/^submitted$/, () => t("reason.submitted")],
  [/^quota: reserved jobs run only within the guarantee \((.*)\)$/s, (m) => t("reason.quota_guarantee", {detail: m[1]})],
  [/^within guarantee: (.+)$/, (m) => t("reason.within_guarantee", {model: m[1]})],
  [/^borrowing other tenants' idle guarantee of (.+) \(reclaimable\)( on a leased node)?$/,
   (m) => m[2] ? t("reason.borrowing_leased", {model: m[1]}) : t("reason.borrowing", {model: m[1]})],
  [/^beyond guarantee on unguaranteed (.+) capacity \(fair share\)( on a leased node)?$/,
   (m) => m[2] ? t("reason.beyond_guarantee_leased", {model: m[1]}) : t("reason.beyond_guarantee", {model: m[1]})],
  [/^CPU-only job \(no accelerator quota\), fair share$/, () => t("reason.cpu_only")],
  [/^waiting for 1 preempted job to stop \((.*)\)$/, (m) => t("reason.waiting_preempted_one", {jobs: m[1]})],
  [/^waiting for (\d+) preempted jobs to stop \((.*)\)$/, (m) => t("reason.waiting_preempted", {count: m[1], jobs: m[2]})],
  [/^agent_lost: node (\S+) unreachable \((.*)\)$/, (m) => t("reason.agent_lost", {node: m[1], detail: m[2]})],
  [/^job (succeeded|failed|cancelled)$/, (m) => t("reason.job_ended", {state: stateText(m[1])})],
  [/^cancelled before the agent started it$/, () => t("reason.cancelled_before_start")],
];

export function reasonText(reason) {
  if (!reason) return reason ?? "";
  for (const [pattern, message] of REASONS) {
    const found = pattern.exec(reason);
    if (found) return message(found);
  }
  return reason;
}
