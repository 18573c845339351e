// One pipeline group: placements (pipeline → worker), routes as a graph, versions (roll back
// to any of them), each pipeline's VPL in the editor (checked as you type; "Deploy" runs a
// rolling update with the state kept or reset), per-pipeline counters, and the live output of
// the group (its SSE output stream) in a table, with a form to inject an event.

import { h, replace, table } from "../dom.js";
import { badge, dateTime, errorText, num, time } from "../format.js";
import { VplEditor } from "../editor.js";
import { routesGraph } from "../graph.js";
import { follow } from "../sse.js";

const MAX_OUTPUT_ROWS = 200;
/** Output rows are added in batches at most this often. */
const OUTPUT_FLUSH_MS = 150;
const COUNTERS_EVERY_MS = 3000;
/** A rolling update waits for every replica to switch: allow it minutes. */
const ROLLOUT_TIMEOUT_MS = 300000;

export function mount(root, { store, conn }, id) {
  const path = `/api/v1/cluster/pipeline-groups/${encodeURIComponent(id)}`;
  let group = store.group(id);
  let versions = null;
  const editors = new Map(); // pipeline name -> {editor, base, tab, note}
  let active = null;
  let output = null;
  let outputRows = 0;

  const header = h("div");
  const placements = h("div");
  const graph = h("div", { id: "routes" });
  const tabs = h("div", { class: "tabs", id: "pipeline-tabs" });
  const editorBox = h("div", { id: "editors" });
  const stateMode = h("select", { id: "state-mode" },
    h("option", { value: "" }, "state: keep when compatible"),
    h("option", { value: "keep" }, "state: keep"),
    h("option", { value: "reset" }, "state: reset"));
  const deployBtn = h("button", { id: "deploy", type: "button" }, "Deploy new version");
  const deployMsg = h("div", { id: "deploy-msg", class: "msg", hidden: true });
  const versionsBox = h("div");
  const rollbackMsg = h("div", { id: "rollback-msg", class: "msg", hidden: true });
  const counters = h("div");
  const outputBody = h("tbody");
  const outputToggle = h("button", { id: "output-toggle", type: "button", class: "secondary small" }, "Pause");
  const outputState = h("span", { id: "output-state", class: "muted small" }, "connecting…");
  const injectType = h("input", { id: "inject-type", type: "text", placeholder: "event type, e.g. Reading" });
  const injectFields = h("input", { id: "inject-fields", type: "text", class: "mono", placeholder: '{"sensor_id": "T1", "temperature": 105}' });
  const injectBtn = h("button", { id: "inject-send", type: "button", class: "small" }, "Inject");
  const injectMsg = h("span", { id: "inject-msg", class: "small" });

  const say = (el, text, tone, details) => {
    el.hidden = !text;
    el.className = `msg ${tone || ""}`;
    replace(el, text || "", details && details.length ? h("ul", null, details.map((d) => h("li", null, d))) : null);
  };

  replace(root,
    header,
    h("div", { class: "grid2" },
      h("div", { class: "panel" }, h("h2", null, "Placements"), placements),
      h("div", { class: "panel" }, h("h2", null, "Routes"), graph)),
    h("div", { class: "panel" },
      h("h2", null, "Pipelines"),
      tabs, editorBox,
      h("div", { class: "row" }, stateMode, deployBtn,
        h("span", { class: "muted small" }, "Deploys the edited pipelines as a rolling update (a new version).")),
      deployMsg),
    h("div", { class: "grid2" },
      h("div", { class: "panel" }, h("h2", null, "Versions"), versionsBox, rollbackMsg),
      h("div", { class: "panel" }, h("h2", null, "Pipeline counters"), counters)),
    h("div", { class: "panel" },
      h("div", { class: "row" }, h("h2", null, "Live output"), outputState, outputToggle),
      h("div", { class: "row" }, injectType, injectFields, injectBtn, injectMsg),
      h("div", { class: "scroll" }, h("table", { id: "output" },
        h("thead", null, h("tr", null, ["Time", "Pipeline", "Worker", "Event", "Fields"].map((x) => h("th", null, x)))),
        outputBody))));

  // ----- header, placements, graph -----

  const renderHeader = () => {
    if (!group) {
      replace(header, h("h1", null, "Pipeline group"), h("p", { class: "muted" }, `Loading ${id}…`));
      return;
    }
    replace(header, h("div", { class: "row" },
      h("h1", { id: "group-name" }, group.name), badge(group.status, "group-status"),
      h("span", { id: "group-version", "data-version": group.version }, `version ${group.version}`),
      h("span", { class: "muted small mono" }, group.id)));
  };

  const renderPlacements = () => {
    if (!group) return;
    replace(placements, table("placements", ["Pipeline", "Replica", "Worker", "Status", "Pipeline id", "Epoch", "Checkpoint"],
      group.placements.map((p) => h("tr", { "data-pipeline": p.pipeline_name, "data-replica": p.replica },
        h("td", null, p.pipeline_name),
        h("td", { class: "num" }, String(p.replica)),
        h("td", { class: "worker" }, p.worker_id || "–"),
        h("td", { class: "status" }, badge(p.status),
          p.error ? h("div", { class: "muted small placement-error" }, p.error) : null),
        h("td", { class: "mono small" }, p.pipeline_id || "–"),
        h("td", { class: "num" }, String(p.epoch)),
        h("td", { class: "small" }, p.checkpoint_events === undefined ? "–"
          : `${num(p.checkpoint_events)} events, ${time(p.checkpoint_at_ms)}`))), "No placements."));
    replace(graph, routesGraph(group));
  };

  // ----- editors -----

  const markDirty = () => {
    for (const [, e] of editors) e.tab.classList.toggle("dirty", e.editor.value !== e.base);
  };

  const select = (name) => {
    active = name;
    for (const [n, e] of editors) {
      e.el.hidden = n !== name;
      e.tab.classList.toggle("active", n === name);
    }
  };

  const syncEditors = () => {
    if (!group || !group.spec) return;
    for (const p of group.spec.pipelines) {
      let e = editors.get(p.name);
      if (!e) {
        const editor = new VplEditor({
          name: p.name,
          value: p.source,
          check: (source) => conn.post("/api/v1/cluster/validate", { source, pipeline: p.name }),
          onChange: markDirty,
        });
        const tab = h("button", { type: "button", "data-pipeline": p.name, onclick: () => select(p.name) }, p.name);
        const note = h("div", { class: "muted small", hidden: true });
        e = { editor, base: p.source, tab, note, el: h("div", { "data-pipeline": p.name }, note, editor.el) };
        editors.set(p.name, e);
        tabs.appendChild(tab);
        editorBox.appendChild(e.el);
      } else if (e.base !== p.source) {
        if (e.editor.value === e.base) {
          e.editor.value = p.source;
          e.note.hidden = true;
        } else {
          e.note.hidden = false;
          e.note.textContent = "The running version changed while you were editing; deploying replaces it with your text.";
        }
        e.base = p.source;
      }
    }
    if (!active && group.spec.pipelines.length) select(group.spec.pipelines[0].name);
    markDirty();
  };

  deployBtn.addEventListener("click", async () => {
    const changed = [...editors].filter(([, e]) => e.editor.value !== e.base);
    if (!changed.length) {
      say(deployMsg, "Nothing to deploy: no pipeline was edited.", "bad");
      return;
    }
    const body = { pipelines: changed.map(([name, e]) => ({ name, source: e.editor.value })) };
    if (stateMode.value) body.state = stateMode.value;
    deployBtn.disabled = true;
    say(deployMsg, `Rolling update of ${changed.map(([n]) => n).join(", ")} in progress…`);
    try {
      const r = await conn.request("PUT", path, body, { timeout: ROLLOUT_TIMEOUT_MS });
      group = r.group;
      for (const [, e] of changed) e.base = e.editor.value;
      say(deployMsg, `Version ${r.version} is running (was ${r.previous_version}; changed: ${r.changed.join(", ")}; state ${r.state}).`, "ok");
      renderAll();
      loadVersions();
      store.reload("groups");
    } catch (e) {
      const diags = (e.body && e.body.diagnostics) || [];
      for (const [name, ed] of editors) {
        const mine = diags.filter((d) => d.pipeline === name);
        if (mine.length) {
          ed.editor.show(mine, false);
          select(name);
        }
      }
      const hint = e.body && e.body.code === "state_incompatible" ? " Choose \u201cstate: reset\u201d to deploy it without the old state." : "";
      say(deployMsg, `Not deployed: ${errorText(e)}.${hint}`, "bad",
        (e.body && e.body.details) || diags.map((d) => `${d.pipeline}.vpl ${d.line}:${d.column} ${d.message}`));
    } finally {
      deployBtn.disabled = false;
    }
  });

  // ----- versions -----

  const rollback = async (version) => {
    const body = {};
    if (version !== undefined) body.version = version;
    if (stateMode.value) body.state = stateMode.value;
    say(rollbackMsg, `Rolling back to version ${version ?? (group ? group.version - 1 : "?")}…`);
    try {
      const r = await conn.post(`${path}/rollback`, body, { timeout: ROLLOUT_TIMEOUT_MS });
      group = r.group;
      say(rollbackMsg, `Version ${r.version} is running: it restores version ${r.restores} (state ${r.state}).`, "ok");
      renderAll();
      loadVersions();
      store.reload("groups");
    } catch (e) {
      const hint = e.body && e.body.code === "state_incompatible" ? " Choose \u201cstate: reset\u201d above and roll back again." : "";
      say(rollbackMsg, `Rollback refused: ${errorText(e)}.${hint}`, "bad", e.body && e.body.details);
    }
  };

  const renderVersions = () => {
    if (!versions) {
      replace(versionsBox, h("p", { class: "muted" }, "Loading…"));
      return;
    }
    const current = versions.version;
    const rows = [...versions.history].reverse().map((v) => h("tr", { "data-version": v.version },
      h("td", { class: "num" }, String(v.version), v.version === current ? h("span", { class: "badge ok" }, "running") : null),
      h("td", null, dateTime(v.at_ms)),
      h("td", null, (v.changed || []).join(", ") || "–"),
      h("td", null, v.state || "–"),
      h("td", null, v.restores ? `restores ${v.restores}` : ""),
      h("td", null, v.version === current ? null : h("button", {
        type: "button", class: "small secondary rollback-to", "data-version": v.version, onclick: () => rollback(v.version),
      }, `Roll back to ${v.version}`))));
    replace(versionsBox,
      table("versions", [{ text: "Version", class: "num" }, "Since", "Changed", "State", "", ""], rows),
      h("div", { class: "row" },
        h("button", { id: "rollback", type: "button", class: "secondary", disabled: current <= 1, onclick: () => rollback(undefined) },
          "Roll back to the previous version"),
        versions.rollout ? h("span", { class: "badge warn", id: "rollout" }, `rolling out version ${versions.rollout.to_version}`) : null,
        versions.last_error ? h("span", { class: "error small" }, `last update aborted: ${versions.last_error}`) : null));
  };

  const loadVersions = async () => {
    try {
      versions = await conn.get(`${path}/versions`);
      renderVersions();
    } catch (e) {
      replace(versionsBox, h("p", { class: "error" }, errorText(e)));
    }
  };

  // ----- counters -----

  const loadCounters = async () => {
    try {
      const m = await conn.get(`${path}/metrics`);
      replace(counters, table("group-metrics", ["Pipeline", "Worker", { text: "Events in", class: "num" },
        { text: "Events out", class: "num" }, { text: "Errors", class: "num" }],
      m.placements.map((p) => h("tr", { "data-pipeline": p.pipeline_name, "data-replica": p.replica },
        h("td", null, `${p.pipeline_name}#${p.replica}`),
        h("td", null, p.worker_id || "–"),
        p.unavailable
          ? h("td", { colspan: 3, class: "muted small" }, p.unavailable)
          : [h("td", { class: "num events-in" }, num(p.events_in)), h("td", { class: "num events-out" }, num(p.events_out)),
            h("td", { class: "num" }, num(p.errors))]))));
    } catch (e) {
      replace(counters, h("p", { class: "muted" }, errorText(e)));
    }
  };
  loadCounters();
  const countersTimer = setInterval(loadCounters, COUNTERS_EVERY_MS);

  // ----- live output -----

  // Output events are added in batches (a busy pipeline can emit thousands per second).
  let queued = [];
  let flushTimer = null;
  const flushOutput = () => {
    flushTimer = null;
    const batch = queued.slice(-MAX_OUTPUT_ROWS);
    queued = [];
    for (const payload of batch) addOutput(payload);
  };
  const queueOutput = (payload) => {
    queued.push(payload);
    if (queued.length > MAX_OUTPUT_ROWS * 2) queued = queued.slice(-MAX_OUTPUT_ROWS);
    if (!flushTimer) flushTimer = setTimeout(flushOutput, OUTPUT_FLUSH_MS);
  };

  const addOutput = (payload) => {
    const e = payload.event || {};
    const row = e.skipped !== undefined
      ? h("tr", { class: "lagged" }, h("td", null, time(Date.now())), h("td", null, `${payload.pipeline}#${payload.replica}`),
        h("td", null, payload.worker_id), h("td", { colspan: 2, class: "muted" }, `${e.skipped} output events skipped (slow reader)`))
      : h("tr", { class: "output-row", "data-pipeline": payload.pipeline, "data-event-type": e.event_type || "" },
        h("td", null, time(Date.now())),
        h("td", null, `${payload.pipeline}#${payload.replica}`),
        h("td", null, payload.worker_id),
        h("td", { class: "event-type" }, e.event_type || "?"),
        h("td", { class: "mono small fields" }, JSON.stringify(e.fields || {})));
    outputBody.insertBefore(row, outputBody.firstChild);
    outputRows++;
    while (outputBody.rows.length > MAX_OUTPUT_ROWS) outputBody.deleteRow(-1);
  };

  const startOutput = () => {
    output = follow(conn, () => `${path}/output`, {
      onEvent: (ev) => {
        try {
          queueOutput(JSON.parse(ev.data));
        } catch {
          // not JSON: ignore
        }
      },
      onOpen: () => { outputState.textContent = "live"; outputState.dataset.state = "live"; },
      onClose: () => { outputState.textContent = "reconnecting…"; outputState.dataset.state = "reconnecting"; },
      onError: (message) => { outputState.textContent = `reconnecting (${message})`; },
    });
    outputToggle.textContent = "Pause";
  };
  const stopOutput = () => {
    if (output) output.stop();
    output = null;
    outputState.textContent = "paused";
    outputState.dataset.state = "paused";
    outputToggle.textContent = "Resume";
  };
  outputToggle.addEventListener("click", () => (output ? stopOutput() : startOutput()));
  startOutput();

  injectBtn.addEventListener("click", async () => {
    let fields = {};
    const text = injectFields.value.trim();
    if (text) {
      try {
        fields = JSON.parse(text);
      } catch (e) {
        injectMsg.className = "small error";
        injectMsg.textContent = `fields must be a JSON object: ${e.message}`;
        return;
      }
    }
    try {
      const r = await conn.post(`${path}/inject`, { event_type: injectType.value.trim(), fields });
      injectMsg.className = "small okay";
      injectMsg.textContent = `routed to ${r.routed_to} on ${r.worker_id}: ${r.worker_response.output_events.length} output event(s)`;
    } catch (e) {
      injectMsg.className = "small error";
      injectMsg.textContent = errorText(e);
    }
  });

  // ----- data -----

  function renderAll() {
    renderHeader();
    renderPlacements();
    syncEditors();
  }

  const refresh = async () => {
    const fromStore = store.group(id);
    if (fromStore && fromStore.spec) {
      const newVersion = !group || fromStore.version !== group.version;
      group = fromStore;
      renderAll();
      if (newVersion || !versions) loadVersions();
      return;
    }
    try {
      group = await conn.get(path);
      renderAll();
      loadVersions();
    } catch (e) {
      replace(header, h("h1", null, "Pipeline group"), h("p", { class: "error" }, errorText(e)));
    }
  };
  renderHeader();
  refresh();

  return {
    update(kind) {
      if (kind === "groups") refresh();
    },
    unmount() {
      clearInterval(countersTimer);
      clearTimeout(flushTimer);
      if (output) output.stop();
      output = null;
    },
  };
}
