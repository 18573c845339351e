// Line charts drawn as SVG by hand: one polyline per series over the sample times, gaps where a
// value is missing, a y axis from 0 to a round maximum, and a legend with the latest values.

import { h, s } from "./dom.js";
import { num } from "./format.js";

const W = 560;
const H = 200;
const LEFT = 52;
const RIGHT = 12;
const TOP = 10;
const BOTTOM = 22;
const MIN_WINDOW_MS = 60000;
const MAX_WINDOW_MS = 300000;

/** The smallest 1, 2 or 5 times a power of ten at or above `v` (1 for nothing). */
export function niceMax(v) {
  if (!(v > 0)) return 1;
  const p = Math.pow(10, Math.floor(Math.log10(v)));
  for (const m of [1, 2, 5, 10]) if (v <= m * p) return m * p;
  return 10 * p;
}

function label(v, unit) {
  const text = v >= 1000 ? num(Math.round(v)) : Number(v.toPrecision(3)).toString();
  return unit ? `${text} ${unit}` : text;
}

function last(values) {
  for (let i = values.length - 1; i >= 0; i--) if (values[i] !== null && values[i] !== undefined) return values[i];
  return null;
}

/**
 * A chart. `opts`: {id, title, unit, times: [ms], series: [{name, values, dash}], windowMs}.
 * Series values line up with `times`; null leaves a gap.
 */
export function lineChart(opts) {
  const times = opts.times;
  const n = times.length;
  const t1 = n ? times[n - 1] : Date.now();
  // Show what was sampled: at least a minute, at most the five minutes kept.
  const span = n ? t1 - times[0] : 0;
  const t0 = t1 - Math.min(Math.max(span, MIN_WINDOW_MS), opts.windowMs || MAX_WINDOW_MS);
  let max = 0;
  for (const se of opts.series) for (const v of se.values) if (v !== null && v > max) max = v;
  const yMax = niceMax(max);
  const x = (t) => LEFT + ((W - LEFT - RIGHT) * (t - t0)) / (t1 - t0 || 1);
  const y = (v) => TOP + (H - TOP - BOTTOM) * (1 - v / yMax);
  const svg = s("svg", { viewBox: `0 0 ${W} ${H}`, role: "img", "aria-label": opts.title });
  for (let i = 0; i <= 4; i++) {
    const v = (yMax * i) / 4;
    svg.appendChild(s("line", { class: i === 0 ? "axis" : "grid", x1: LEFT, x2: W - RIGHT, y1: y(v), y2: y(v) }));
    svg.appendChild(s("text", { x: LEFT - 6, y: y(v) + 3, "text-anchor": "end" }, label(v, i === 4 ? opts.unit : "")));
  }
  svg.appendChild(s("line", { class: "axis", x1: LEFT, x2: LEFT, y1: TOP, y2: H - BOTTOM }));
  const minutes = Math.round((t1 - t0) / 60000);
  svg.appendChild(s("text", { x: LEFT, y: H - 6 }, `-${minutes} min`));
  svg.appendChild(s("text", { x: W - RIGHT, y: H - 6, "text-anchor": "end" }, "now"));
  let drawn = 0;
  opts.series.forEach((se, j) => {
    let d = "";
    let pen = false;
    se.values.forEach((v, i) => {
      if (v === null || v === undefined || times[i] < t0) {
        pen = false;
        return;
      }
      d += `${pen ? "L" : "M"}${x(times[i]).toFixed(1)} ${y(v).toFixed(1)} `;
      pen = true;
      drawn++;
    });
    if (d) svg.appendChild(s("path", { class: `line s${j % 8}${se.dash ? " dash" : ""}`, d, "data-series": se.name }));
  });
  if (!drawn) {
    svg.appendChild(s("text", { x: (LEFT + W) / 2, y: H / 2, "text-anchor": "middle" }, "no data yet"));
  }
  const legend = h("div", { class: "legend" }, opts.series.map((se, j) => {
    const v = last(se.values);
    return h("span", { class: "item", "data-series": se.name },
      h("span", { class: `sw s${j % 8}` }),
      `${se.name}: ${v === null ? "–" : label(v, opts.unit)}`);
  }));
  return h("figure", { class: "chart", id: opts.id }, h("figcaption", null, opts.title), svg, legend);
}
