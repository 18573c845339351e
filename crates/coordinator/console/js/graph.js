// A group's routes drawn as a graph (SVG, laid out by hand): one box per pipeline (with the
// workers running it) plus "external" for injected events, columns by distance from the
// external input, and one arrow per route labelled with its event types.

import { h, s } from "./dom.js";

const BOX_W = 170;
const BOX_H = 46;
const COL = 250;
const ROW = 74;
const PAD = 20;

const EXTERNAL = "_external";

/** Column of each node: hops from `_external` (unreached nodes go to column 1, or 0 without it). */
function columns(names, routes) {
  const col = new Map();
  const hasExternal = names.includes(EXTERNAL);
  if (hasExternal) col.set(EXTERNAL, 0);
  const queue = hasExternal ? [EXTERNAL] : [];
  while (queue.length) {
    const from = queue.shift();
    for (const r of routes) {
      if (r.from_pipeline === from && !col.has(r.to_pipeline)) {
        col.set(r.to_pipeline, col.get(from) + 1);
        queue.push(r.to_pipeline);
      }
    }
  }
  for (const n of names) if (!col.has(n)) col.set(n, hasExternal ? 1 : 0);
  return col;
}

/** The graph of `group` (as `GET /pipeline-groups/{id}` answers it). */
export function routesGraph(group) {
  const spec = group.spec || { pipelines: [] };
  const routes = group.routes || spec.routes || [];
  const names = [];
  const add = (n) => {
    if (!names.includes(n)) names.push(n);
  };
  if (routes.some((r) => r.from_pipeline === EXTERNAL)) add(EXTERNAL);
  for (const p of spec.pipelines) add(p.name);
  for (const r of routes) {
    add(r.from_pipeline);
    add(r.to_pipeline);
  }
  const col = columns(names, routes);
  // Back edges (to a column at or left of the source) arc over the boxes: leave room above.
  const arcs = routes.some((r) => col.has(r.from_pipeline) && col.has(r.to_pipeline)
    && col.get(r.to_pipeline) <= col.get(r.from_pipeline));
  const top = PAD + (arcs ? 30 : 0);
  const rows = new Map();
  const pos = new Map();
  for (const n of names) {
    const c = col.get(n);
    const r = rows.get(c) || 0;
    rows.set(c, r + 1);
    pos.set(n, { x: PAD + c * COL, y: top + r * ROW });
  }
  const width = PAD * 2 + (Math.max(...col.values(), 0) * COL) + BOX_W;
  const height = top + PAD + (Math.max(...rows.values(), 1) - 1) * ROW + BOX_H + 10;
  const svg = s("svg", { width, height, viewBox: `0 0 ${width} ${height}`, id: "routes-graph", role: "img", "aria-label": "routes" });
  svg.appendChild(s("defs", null,
    s("marker", { id: "arrow", viewBox: "0 0 10 10", refX: 9, refY: 5, markerWidth: 7, markerHeight: 7, orient: "auto-start-reverse" },
      s("path", { class: "arrow", d: "M0 0 L10 5 L0 10 z" }))));
  const workersOf = (name) => [...new Set((group.placements || [])
    .filter((p) => p.pipeline_name === name && p.worker_id)
    .map((p) => p.worker_id))];
  for (const r of routes) {
    const a = pos.get(r.from_pipeline);
    const b = pos.get(r.to_pipeline);
    if (!a || !b) continue;
    let d;
    let lx;
    let ly;
    if (b.x > a.x) {
      const x1 = a.x + BOX_W;
      const y1 = a.y + BOX_H / 2;
      const x2 = b.x;
      const y2 = b.y + BOX_H / 2;
      const mx = (x1 + x2) / 2;
      d = `M${x1} ${y1} C${mx} ${y1} ${mx} ${y2} ${x2} ${y2}`;
      lx = mx;
      ly = (y1 + y2) / 2 - 6;
    } else {
      // Back or same-column edge: an arc over the boxes.
      const x1 = a.x + BOX_W / 2;
      const x2 = b.x + BOX_W / 2 + (a === b ? 30 : 0);
      const peak = Math.min(a.y, b.y) - 26;
      d = `M${x1} ${a.y} C${x1} ${peak} ${x2} ${peak} ${x2} ${b.y}`;
      lx = (x1 + x2) / 2;
      ly = peak + 4;
    }
    const types = (r.event_types || []).join(", ");
    svg.appendChild(s("path", { class: "edge", d, "marker-end": "url(#arrow)", "data-from": r.from_pipeline, "data-to": r.to_pipeline }));
    svg.appendChild(s("text", { class: "edge-label", x: lx, y: ly, "text-anchor": "middle" },
      types.length > 34 ? `${types.slice(0, 33)}…` : types));
  }
  for (const n of names) {
    const p = pos.get(n);
    const ext = n === EXTERNAL;
    const workers = workersOf(n);
    const sub = ext ? "injected events" : workers.length ? `on ${workers.join(", ")}` : "not placed";
    svg.appendChild(s("g", { class: `node${ext ? " ext" : ""}`, "data-node": n, transform: `translate(${p.x} ${p.y})` },
      s("rect", { width: BOX_W, height: BOX_H, rx: 7 }),
      s("text", { class: "name", x: 10, y: 19 }, ext ? "external" : n),
      s("text", { class: "sub", x: 10, y: 36 }, sub.length > 28 ? `${sub.slice(0, 27)}…` : sub)));
  }
  return h("div", { class: "graph" }, svg);
}
