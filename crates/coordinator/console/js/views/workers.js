// Workers: status, heartbeat age (the leader's view), load, labels, pipelines; drain a worker
// (its pipelines move away with fresh checkpoints) and remove it once drained.

import { h, replace, table } from "../dom.js";
import { age, badge, errorText, num } from "../format.js";

export function mount(root, { store, conn }) {
  const list = h("div");
  const msg = h("div", { id: "workers-msg", class: "msg", hidden: true });
  const armed = new Set(); // workers whose drain button waits for a confirmation
  replace(root, h("h1", null, "Workers"), msg, h("div", { class: "panel" }, list),
    h("p", { class: "muted small" }, "Heartbeat ages come from the leader. Draining moves a worker's pipelines to the others " +
      "(each restored from a fresh checkpoint) and stops new placements on it; once nothing is left it can be removed."));

  const say = (text, tone) => {
    msg.hidden = !text;
    msg.className = `msg ${tone || ""}`;
    msg.textContent = text || "";
  };

  const drain = async (w) => {
    if (!armed.has(w.id)) {
      armed.add(w.id);
      render();
      return;
    }
    armed.delete(w.id);
    say(`Draining ${w.id}…`);
    render();
    try {
      const r = await conn.post(`/api/v1/cluster/workers/${encodeURIComponent(w.id)}/drain`, undefined, { timeout: 120000 });
      say(`${r.worker_id} is ${r.status}: ${r.migrations.length} migration(s) started, ${r.remaining} placement(s) left` +
        `${r.removable ? "; it can be removed now" : ""}.`, "ok");
    } catch (e) {
      say(`Drain of ${w.id} failed: ${errorText(e)}`, "bad");
    }
    store.reload("workers");
    store.reload("migrations");
  };

  const remove = async (w) => {
    try {
      await conn.request("DELETE", `/api/v1/cluster/workers/${encodeURIComponent(w.id)}`);
      say(`${w.id} removed.`, "ok");
    } catch (e) {
      say(`Removing ${w.id} failed: ${errorText(e)}`, "bad");
    }
    store.reload("workers");
  };

  const render = () => {
    const rows = store.workers.map((w) => {
      const load = w.max_pipelines ? Math.min(1, w.pipelines_running / w.max_pipelines) : 0;
      const canDrain = !["draining", "dead"].includes(w.status);
      const actions = [];
      if (canDrain) {
        actions.push(h("button", {
          class: `small ${armed.has(w.id) ? "danger" : "secondary"} drain`,
          type: "button",
          onclick: () => drain(w),
        }, armed.has(w.id) ? "Confirm drain" : "Drain"));
      }
      if (w.removable || w.status === "dead") {
        actions.push(h("button", { class: "small danger remove", type: "button", onclick: () => remove(w) }, "Remove"));
      }
      return h("tr", { "data-worker": w.id },
        h("td", null, h("strong", null, w.id), h("div", { class: "muted small mono" }, w.address)),
        h("td", { class: "status" }, badge(w.status)),
        h("td", { class: "num heartbeat" }, w.last_heartbeat_ms_ago === undefined ? "–" : age(w.last_heartbeat_ms_ago)),
        h("td", { class: "load" }, `${w.pipelines_running} / ${w.max_pipelines}`,
          h("div", { class: "bar" }, h("div", { css: { width: `${Math.round(load * 100)}%` } }))),
        h("td", { class: "num" }, num(w.events_processed)),
        h("td", { class: "num" }, String(w.cpu_cores)),
        h("td", null, Object.entries(w.labels || {}).map(([k, v]) => h("span", { class: "label-chip" }, `${k}=${v}`))),
        h("td", { class: "pipelines" }, (w.assigned_pipelines || []).join(", ") || h("span", { class: "muted" }, "none")),
        h("td", null, actions));
    });
    replace(list, table("workers", ["Worker", "Status", { text: "Heartbeat", class: "num" }, "Load",
      { text: "Events", class: "num" }, { text: "CPUs", class: "num" }, "Labels", "Pipelines", ""], rows,
      "No workers registered."));
  };
  render();
  return {
    update(kind) {
      if (kind === "workers") render();
    },
    unmount() {},
  };
}
