// The cluster event stream, live: every event this console received (resumed with `since`
// across reconnects and member switches), newest first, with a type filter and a pause.

import { h, replace, table } from "../dom.js";
import { summary, time } from "../format.js";

const SHOWN = 500;

export function mount(root, { store }) {
  const filter = h("input", { id: "events-filter", type: "search", placeholder: "filter by type, e.g. worker_" });
  const pause = h("input", { id: "events-pause", type: "checkbox" });
  const state = h("span", { id: "events-state", class: "muted small" });
  const list = h("div", { class: "scroll" });
  replace(root, h("h1", null, "Cluster events"),
    h("div", { class: "row" }, filter, h("label", null, pause, " pause"), state),
    h("p", { class: "muted small" }, "From GET /api/v1/cluster/events; ids are Raft log positions, identical on every member."),
    list);
  const render = () => {
    state.textContent = `stream: ${store.streamState} · ${store.events.length} events · last id ${store.lastEventId ?? "–"}`;
    if (pause.checked) return;
    const f = filter.value.trim();
    const rows = store.events.filter((e) => !f || e.type.includes(f)).slice(-SHOWN).reverse()
      .map((e) => h("tr", { "data-type": e.type, "data-id": e.id },
        h("td", { class: "mono" }, e.id),
        h("td", null, time(e.received)),
        h("td", null, h("strong", null, e.type)),
        h("td", { class: "mono small" }, summary(e.data))));
    replace(list, table("events", ["Id", "Received", "Type", "Details"], rows, "No events yet."));
  };
  filter.addEventListener("input", render);
  pause.addEventListener("change", render);
  render();
  return {
    update(kind) {
      if (kind === "events" || kind === "stream") render();
    },
    unmount() {},
  };
}
