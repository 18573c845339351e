// Pipeline groups: the list, with a button to create one.

import { h, replace, table } from "../dom.js";
import { badge } from "../format.js";

export function mount(root, { store }) {
  const list = h("div");
  replace(root,
    h("div", { class: "row" }, h("h1", null, "Pipeline groups"), h("div", { class: "spacer" }),
      h("a", { href: "#/groups/new", id: "new-group-link", class: "button" }, "New group")),
    h("div", { class: "panel" }, list));
  const render = () => {
    const rows = store.groups.map((g) => {
      const running = g.placements.filter((p) => p.status === "Running").length;
      return h("tr", { "data-group": g.id, "data-name": g.name },
        h("td", null, h("a", { href: `#/groups/${encodeURIComponent(g.id)}` }, g.name),
          h("div", { class: "muted small mono" }, g.id)),
        h("td", { class: "status" }, badge(g.status)),
        h("td", { class: "num" }, String(g.version)),
        h("td", { class: "num" }, String(g.pipeline_count)),
        h("td", { class: "num" }, `${running} / ${g.placements.length}`),
        h("td", null, [...new Set(g.placements.map((p) => p.worker_id).filter(Boolean))].join(", ")));
    });
    replace(list, table("groups", ["Group", "Status", { text: "Version", class: "num" }, { text: "Pipelines", class: "num" },
      { text: "Running", class: "num" }, "Workers"], rows, "No pipeline groups yet: create one."));
  };
  render();
  return {
    update(kind) {
      if (kind === "groups") render();
    },
    unmount() {},
  };
}
