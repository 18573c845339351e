// A new pipeline group from the editor: name, pipelines (each with its VPL, checked as you
// type), routes, placement strategy; "Create" deploys it (POST /api/v1/cluster/pipeline-groups).

import { h, replace } from "../dom.js";
import { errorText } from "../format.js";
import { VplEditor } from "../editor.js";

const EXAMPLE = `# Readings above the threshold become alerts.
stream Alerts = Reading
    .where(temperature > 100)
    .emit(sensor_id: sensor_id, temperature: temperature)
`;

export function mount(root, { conn, navigate }) {
  const pipelines = [];
  const routes = [];
  const name = h("input", { id: "new-name", type: "text", placeholder: "my-group", spellcheck: "false" });
  const placement = h("select", { id: "new-placement" },
    h("option", { value: "" }, "round robin (default)"), h("option", { value: "least_loaded" }, "least loaded"));
  const pipelinesBox = h("div", { class: "stack" });
  const routesBox = h("div", { class: "stack", id: "new-routes" });
  const msg = h("div", { id: "create-msg", class: "msg", hidden: true });
  const create = h("button", { id: "create-group", type: "button" }, "Create group");
  const check = (pipeline) => (source) => conn.post("/api/v1/cluster/validate", { source, pipeline: pipeline.name.value || "pipeline" });

  const addPipeline = (value) => {
    const p = { name: h("input", { type: "text", class: "pipeline-name", value: `pipeline-${pipelines.length + 1}` }) };
    p.editor = new VplEditor({ name: p.name.value, value, check: check(p) });
    p.el = h("div", { class: "panel pipeline" },
      h("div", { class: "row" }, h("label", null, "Pipeline name"), p.name,
        h("button", { type: "button", class: "small secondary", onclick: () => {
          const i = pipelines.indexOf(p);
          if (i >= 0 && pipelines.length > 1) {
            pipelines.splice(i, 1);
            p.el.remove();
            renderRoutes();
          }
        } }, "Remove")),
      p.editor.el);
    p.name.addEventListener("change", renderRoutes);
    pipelines.push(p);
    pipelinesBox.appendChild(p.el);
    renderRoutes();
  };

  const pipelineNames = () => pipelines.map((p) => p.name.value.trim()).filter(Boolean);

  const addRoute = (from, to, types) => {
    routes.push({ from, to, types });
    renderRoutes();
  };

  function renderRoutes() {
    const names = pipelineNames();
    replace(routesBox, routes.map((r, i) => {
      const from = h("select", { class: "route-from" }, ["_external", ...names].map((n) =>
        h("option", { value: n, selected: n === r.from }, n === "_external" ? "external (injected)" : n)));
      const to = h("select", { class: "route-to" }, names.map((n) => h("option", { value: n, selected: n === r.to }, n)));
      const types = h("input", { type: "text", class: "route-types", value: r.types, placeholder: "Reading, Alarm*" });
      from.addEventListener("change", () => { r.from = from.value; });
      to.addEventListener("change", () => { r.to = to.value; });
      types.addEventListener("input", () => { r.types = types.value; });
      if (!names.includes(r.to) && names.length) r.to = names[0];
      return h("div", { class: "row route" }, from, "→", to, h("label", null, "event types"), types,
        h("button", { type: "button", class: "small secondary", onclick: () => { routes.splice(i, 1); renderRoutes(); } }, "Remove"));
    }));
  }

  const say = (text, tone, details) => {
    msg.hidden = !text;
    msg.className = `msg ${tone || ""}`;
    replace(msg, text, details && details.length ? h("ul", null, details.map((d) => h("li", null, d))) : null);
  };

  create.addEventListener("click", async () => {
    const spec = {
      name: name.value.trim(),
      pipelines: pipelines.map((p) => ({ name: p.name.value.trim(), source: p.editor.value })),
      routes: routes.filter((r) => r.to && r.types.trim()).map((r) => ({
        from_pipeline: r.from,
        to_pipeline: r.to,
        event_types: r.types.split(",").map((t) => t.trim()).filter(Boolean),
      })),
    };
    if (placement.value) spec.placement = placement.value;
    if (!spec.name) {
      say("Give the group a name.", "bad");
      return;
    }
    create.disabled = true;
    say("Creating the group and deploying its pipelines…");
    try {
      const g = await conn.post("/api/v1/cluster/pipeline-groups", spec, { timeout: 120000 });
      navigate(`#/groups/${encodeURIComponent(g.id)}`);
    } catch (e) {
      const diags = (e.body && e.body.diagnostics) || [];
      for (const p of pipelines) {
        const mine = diags.filter((d) => d.pipeline === p.name.value.trim());
        if (mine.length) p.editor.show(mine, false);
      }
      say(`Not created: ${errorText(e)}`, "bad", diags.map((d) => `${d.pipeline}.vpl ${d.line}:${d.column} ${d.message}`));
    } finally {
      create.disabled = false;
    }
  });

  replace(root,
    h("h1", null, "New pipeline group"),
    h("div", { class: "panel" }, h("div", { class: "row" }, h("label", { for: "new-name" }, "Group name"), name,
      h("label", { for: "new-placement" }, "Placement"), placement)),
    h("h2", null, "Pipelines"),
    pipelinesBox,
    h("button", { type: "button", class: "secondary", onclick: () => addPipeline("") }, "Add pipeline"),
    h("h2", null, "Routes"),
    h("div", { class: "panel" }, routesBox,
      h("button", { type: "button", class: "small secondary", onclick: () => addRoute("_external", pipelineNames()[0] || "", "") }, "Add route")),
    h("div", { class: "row" }, create, h("a", { href: "#/groups" }, "Cancel")),
    msg);
  addPipeline(EXAMPLE);
  addRoute("_external", "pipeline-1", "Reading");
  name.focus();
  return { update() {}, unmount() {} };
}
