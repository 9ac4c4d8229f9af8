// Charts with the vendored Apache ECharts (static/vendor/echarts), loaded on the first chart. Tooltips
// are drawn on the canvas (renderMode "richText"): HTML tooltips carry inline styles, which the
// Content-Security-Policy refuses.
import {currentLanguage, t} from "./i18n.js";

let library = null;
const live = new Set();

async function echarts() {
  library ??= import("../vendor/echarts/echarts.esm.min.js");
  return library;
}

const pointsOf = (option) => (option.series || []).reduce((sum, s) => sum + (s.data || []).filter((v) => v !== null && v !== 0).length, 0);

// Draws option into the element, which records how many data points it shows (data-points); with none,
// the element says so in words instead of drawing empty axes.
export async function drawChart(node, option) {
  const points = pointsOf(option);
  node.dataset.points = String(points);
  if (!points) {
    node.classList.add("chart-empty");
    node.replaceChildren(Object.assign(document.createElement("div"), {className: "empty", textContent: t("chart.no_data")}));
    return null;
  }
  const lib = await echarts();
  if (!node.isConnected) return null;
  const chart = lib.init(node, null, {renderer: "canvas", locale: currentLanguage() === "zh-CN" ? "ZH" : "EN"});
  chart.setOption({
    animation: false,
    textStyle: {fontFamily: "system-ui, 'Noto Sans CJK SC', sans-serif"},
    tooltip: {trigger: "axis", renderMode: "richText"},
    grid: {left: 56, right: 24, top: 40, bottom: 40, containLabel: true},
    legend: {top: 0, type: "scroll"},
    ...option,
  });
  live.add(chart);
  return chart;
}

export function disposeChart(chart) {
  if (!chart) return;
  live.delete(chart);
  chart.dispose();
}

export function disposeCharts() {
  for (const chart of live) chart.dispose();
  live.clear();
}

window.addEventListener("resize", () => { for (const chart of live) chart.resize(); });

// The box a chart draws into, with its accessible name (the chart's title).
export function chartBox(id, label) {
  const node = document.createElement("div");
  node.className = "chart";
  node.id = id;
  node.setAttribute("role", "img");
  node.setAttribute("aria-label", label);
  return node;
}
