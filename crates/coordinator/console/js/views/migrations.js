// Migrations: every pipeline move (failover, drain, rebalance), newest first, live.

import { h, replace, table } from "../dom.js";
import { badge, dateTime } from "../format.js";

export function mount(root, { store }) {
  const list = h("div");
  replace(root, h("h1", null, "Migrations"), h("div", { class: "panel" }, list));
  const render = () => {
    const names = new Map(store.groups.map((g) => [g.id, g.name]));
    const rows = [...store.migrations]
      .sort((a, b) => b.started_at_ms - a.started_at_ms)
      .map((m) => h("tr", { "data-migration": m.id },
        h("td", { class: "mono small" }, m.id.slice(0, 8)),
        h("td", null, names.has(m.group_id) ? h("a", { href: `#/groups/${encodeURIComponent(m.group_id)}` }, names.get(m.group_id))
          : h("span", { class: "mono small" }, m.group_id.slice(0, 8))),
        h("td", null, `${m.pipeline_name}#${m.replica}`),
        h("td", null, `${m.from_worker} → ${m.to_worker || "(waiting for a worker)"}`),
        h("td", { class: "status" }, badge(m.status)),
        h("td", null, m.reason),
        h("td", null, dateTime(m.started_at_ms)),
        h("td", { class: "num" }, m.duration_ms === undefined ? "–" : `${m.duration_ms} ms`),
        h("td", null, m.restored_from_checkpoint ? "from checkpoint" : "fresh"),
        h("td", { class: "error small" }, m.error || "")));
    replace(list, table("migrations", ["Id", "Group", "Pipeline", "Move", "Status", "Reason", "Started",
      { text: "Took", class: "num" }, "State", "Error"], rows, "No migrations so far."));
  };
  render();
  return {
    update(kind) {
      if (kind === "migrations" || kind === "groups") render();
    },
    unmount() {},
  };
}
