// Overview: Raft members (role, term, applied index, lag, health) with the quorum and the
// leader, workers by status, groups, and the last cluster events, all live.

import { h, replace, table } from "../dom.js";
import { badge, num, summary, time } from "../format.js";

const LAST_EVENTS = 12;

function card(key, value, sub, tone, id) {
  return h("div", { class: `card ${tone || ""}`, id }, h("div", { class: "k" }, key), h("div", { class: "v" }, value),
    sub ? h("div", { class: "s" }, sub) : null);
}

function membersTable(store, conn) {
  const maxLog = Math.max(0, ...store.members.filter((r) => r.metrics).map((r) => r.metrics.last_log_index || 0));
  const rows = store.members.map((r) => {
    const m = r.metrics;
    const lag = m ? Math.max(0, maxLog - (m.last_applied || 0)) : null;
    const health = !r.up ? "down" : r.ready === false ? "not ready" : "up";
    return h("tr", { "data-node": r.id, class: r.up ? null : "down" },
      h("td", null, `node ${r.id}`, r.id === conn.nodeId ? h("span", { class: "muted small" }, " (this console)") : null),
      h("td", { class: "mono" }, r.url || "–"),
      h("td", { class: "role" }, m ? badge(m.state) : "–"),
      h("td", { class: "num term" }, m ? num(m.current_term) : "–"),
      h("td", { class: "num applied" }, m ? num(m.last_applied) : "–"),
      h("td", { class: "num" }, m ? num(m.last_log_index) : "–"),
      h("td", { class: "num lag" }, lag === null ? "–" : num(lag)),
      h("td", { class: "health", title: r.error || null }, badge(health)));
  });
  return table("members", ["Member", "Address", "Role", { text: "Term", class: "num" }, { text: "Applied", class: "num" },
    { text: "Last log", class: "num" }, { text: "Lag", class: "num" }, "Health"], rows, "No member answered yet.");
}

function workerCounts(workers) {
  const counts = new Map();
  for (const w of workers) counts.set(w.status, (counts.get(w.status) || 0) + 1);
  return counts;
}

export function mount(root, { store, conn }) {
  const cards = h("section", { class: "cards" });
  const members = h("div");
  const workers = h("div");
  const groups = h("div");
  const events = h("ul", { class: "events-list", id: "overview-events" });
  replace(root,
    h("h1", null, "Cluster overview"),
    cards,
    h("div", { class: "panel" }, h("h2", null, "Raft members"), members),
    h("div", { class: "grid2" },
      h("div", { class: "panel" }, h("h2", null, "Workers"), workers),
      h("div", { class: "panel" }, h("h2", null, "Pipeline groups"), groups)),
    h("div", { class: "panel" }, h("h2", null, "Last cluster events"), events));

  const render = () => {
    const leader = store.leader();
    const q = store.quorum();
    const term = Math.max(0, ...store.members.filter((r) => r.metrics).map((r) => r.metrics.current_term));
    const counts = workerCounts(store.workers);
    const running = store.groups.filter((g) => g.status === "running").length;
    replace(cards,
      card("Leader", leader ? `node ${leader.id}` : "none", leader ? leader.url || "" : "election or no quorum",
        leader ? "ok" : "bad", "card-leader"),
      card("Quorum", `${q.up} / ${q.voters} up`, `${q.need} needed · ${q.ok ? "writes accepted" : "writes refused"}`,
        q.ok ? "ok" : "bad", "card-quorum"),
      card("Term", term ? num(term) : "–", null, "", "card-term"),
      card("Workers", String(store.workers.length),
        [...counts].map(([s, n]) => `${n} ${s}`).join(" · ") || "none registered",
        (counts.get("unhealthy") || counts.get("dead")) ? "bad" : "ok", "card-workers"),
      card("Groups", String(store.groups.length), `${running} running`, "", "card-groups"));
    replace(members, membersTable(store, conn));
    replace(workers, table("overview-workers", ["Worker", "Status", { text: "Pipelines", class: "num" }],
      store.workers.map((w) => h("tr", { "data-worker": w.id },
        h("td", null, h("a", { href: "#/workers" }, w.id)),
        h("td", { class: "status" }, badge(w.status)),
        h("td", { class: "num" }, `${w.pipelines_running} / ${w.max_pipelines}`))),
      "No workers registered."));
    replace(groups, table("overview-groups", ["Group", "Status", { text: "Version", class: "num" }, { text: "Pipelines", class: "num" }],
      store.groups.map((g) => h("tr", { "data-group": g.id },
        h("td", null, h("a", { href: `#/groups/${encodeURIComponent(g.id)}` }, g.name)),
        h("td", { class: "status" }, badge(g.status)),
        h("td", { class: "num" }, String(g.version)),
        h("td", { class: "num" }, String(g.pipeline_count)))),
      "No pipeline groups."));
    replace(events, store.events.slice(-LAST_EVENTS).reverse().map((e) => h("li", { "data-type": e.type },
      h("span", { class: "id" }, e.id), h("span", { class: "type" }, e.type),
      h("span", { class: "muted" }, time(e.received)), h("span", { class: "mono small" }, summary(e.data)))));
    if (!store.events.length) events.appendChild(h("li", { class: "empty" }, "No events yet."));
  };
  render();
  return {
    update(kind) {
      if (["members", "workers", "groups", "events"].includes(kind)) render();
    },
    unmount() {},
  };
}
