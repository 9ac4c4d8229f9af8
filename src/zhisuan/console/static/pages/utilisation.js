// Utilisation over time (GET /utilisation): the share of devices the allocation ledger holds, sampled
// every minute by the platform and rolled up by hour and day; one line per accelerator model and one per
// site. Operators see every site, providers their own (the API filters).
import {$, el, fill, errorBox} from "../lib/dom.js";
import {t, formatNumber} from "../lib/i18n.js";
import {call} from "../lib/api.js";
import {chartBox, drawChart, disposeChart} from "../lib/charts.js";

const RESOLUTIONS = [["minute", () => t("utilisation.minute")], ["hour", () => t("utilisation.hour")],
                     ["day", () => t("utilisation.day")]];

function historyChart(history) {
  return {
    tooltip: {trigger: "axis", renderMode: "richText", valueFormatter: (v) => formatNumber(v, 1) + "%"},
    xAxis: {type: "time", axisLabel: {hideOverlap: true}},
    yAxis: {type: "value", name: t("utilisation.percent"), min: 0, max: 100},
    series: history.series.map((s) => ({
      name: s.name, type: "line", showSymbol: s.points.length < 3,
      data: s.points.filter((p) => p.utilisation !== null).map((p) => [Date.parse(p.start), 100 * Number(p.utilisation)]),
    })),
  };
}

export function utilisationSection(view) {
  const select = el("select", {id: "utilisation-resolution"},
    RESOLUTIONS.map(([value, label]) => el("option", {value}, label())));
  const charts = [];
  const draw = async () => {
    while (charts.length) disposeChart(charts.pop());
    const resolution = select.value;
    try {
      const [byModel, bySite] = await Promise.all([call(`/utilisation?resolution=${resolution}&group=model`),
                                                   call(`/utilisation?resolution=${resolution}&group=site`)]);
      fill("utilisation-error");
      for (const [id, history] of [["chart-utilisation-model", byModel], ["chart-utilisation-site", bySite]]) {
        const node = $(id);
        if (!node) return;
        node.classList.remove("chart-empty");
        node.replaceChildren();
        charts.push(await drawChart(node, historyChart(history)));
      }
    } catch (e) { fill("utilisation-error", errorBox(e)); }
  };
  select.addEventListener("change", draw);
  const section = el("section", {id: "utilisation-section"},
    el("div", {class: "head"}, el("h2", {}, t("utilisation.title")),
      el("label", {for: "utilisation-resolution"}, t("utilisation.resolution")), select,
      el("span", {class: "muted"}, t("utilisation.note"))),
    el("div", {id: "utilisation-error"}),
    el("div", {class: "columns"},
      el("div", {}, el("h3", {}, t("utilisation.by_model")), chartBox("chart-utilisation-model", t("utilisation.by_model"))),
      el("div", {}, el("h3", {}, t("utilisation.by_site")), chartBox("chart-utilisation-site", t("utilisation.by_site")))));
  return {section, draw};
}
