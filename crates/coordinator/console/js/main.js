// The console's entry point: learns which node served it, signs in when the cluster has an
// API key, then starts the store (live cluster data), the metrics sampler and the router
// (`#/overview`, `#/workers`, `#/groups`, `#/groups/new`, `#/groups/<id>`, `#/migrations`,
// `#/events`, `#/metrics`). Nothing about the cluster is shown before the key is accepted.

import { Connection } from "./api.js";
import * as auth from "./auth.js";
import { replace } from "./dom.js";
import { Sampler } from "./sampler.js";
import { Store } from "./store.js";
import * as overview from "./views/overview.js";
import * as workers from "./views/workers.js";
import * as groups from "./views/groups.js";
import * as group from "./views/group.js";
import * as newGroup from "./views/new_group.js";
import * as migrations from "./views/migrations.js";
import * as events from "./views/events.js";
import * as metrics from "./views/metrics.js";

const conn = new Connection();
const $ = (id) => document.getElementById(id);
let app = null; // {store, sampler, view}

// Content-Security-Policy violations are counted on <body> (the browser tests assert none).
let violations = 0;
document.addEventListener("securitypolicyviolation", (e) => {
  violations++;
  document.body.dataset.cspViolations = String(violations);
  console.error(`CSP violation: ${e.violatedDirective} ${e.blockedURI}`);
});

function banner(text, tone) {
  const b = $("banner");
  b.hidden = !text;
  b.className = `banner ${tone || ""}`;
  b.textContent = text || "";
}

function showConnection() {
  const c = $("conn");
  c.hidden = false;
  c.dataset.node = String(conn.nodeId);
  c.className = `conn${conn.offline ? " bad" : ""}`;
  c.textContent = conn.offline ? "no member answers" : `node ${conn.nodeId} · ${conn.currentUrl()}`;
  c.title = "The coordinator this console talks to";
}

function route() {
  if (!app) return;
  const hash = window.location.hash || "#/overview";
  const parts = hash.replace(/^#\/?/, "").split("/").map(decodeURIComponent);
  const name = parts[0] || "overview";
  let module = { overview, workers, migrations, events, metrics }[name];
  let param;
  if (name === "groups") {
    if (parts[1] === "new") module = newGroup;
    else if (parts[1]) {
      module = group;
      param = parts[1];
    } else module = groups;
  }
  if (!module) module = overview;
  if (app.view && app.view.unmount) app.view.unmount();
  const root = $("view");
  replace(root);
  for (const a of document.querySelectorAll("#nav a")) a.classList.toggle("active", a.dataset.view === name);
  const ctx = {
    conn,
    store: app.store,
    sampler: app.sampler,
    navigate: (to) => {
      window.location.hash = to;
    },
  };
  app.view = module.mount(root, ctx, param);
  document.body.dataset.view = name;
}

function start() {
  const store = new Store(conn);
  const sampler = new Sampler(conn, store);
  app = { store, sampler, view: null };
  store.addEventListener("change", (e) => {
    if (app && app.view && app.view.update) app.view.update(e.detail);
  });
  store.start();
  sampler.start();
  $("nav").hidden = false;
  $("logout").hidden = !conn.key;
  showConnection();
  route();
  document.body.dataset.ready = "true";
}

function stop() {
  if (!app) return;
  if (app.view && app.view.unmount) app.view.unmount();
  app.store.stop();
  app.sampler.stop();
  app = null;
  replace($("view"));
  $("nav").hidden = true;
  $("logout").hidden = true;
  document.body.dataset.ready = "false";
}

async function signIn(message) {
  await auth.askForKey(conn, message);
  start();
}

conn.addEventListener("unauthorized", () => {
  if (!app) return;
  stop();
  conn.key = null;
  auth.remember(null);
  signIn("The API key was refused (401 unauthorized): it may have changed. Enter it again.");
});
conn.addEventListener("switched", (e) => {
  banner(`Node ${e.detail.from} stopped answering: the console now talks to node ${e.detail.to} (${e.detail.url}).`, "");
  showConnection();
  if (app) app.store.reload("members");
});
conn.addEventListener("offline", () => {
  banner("No cluster member answers. Retrying…", "bad");
  showConnection();
});
conn.addEventListener("online", () => {
  banner(null);
  showConnection();
});
// While no member answers, keep looking.
setInterval(() => {
  if (app && conn.offline) conn.failover();
}, 3000);

$("logout").addEventListener("click", () => {
  stop();
  conn.key = null;
  auth.remember(null);
  signIn("Signed out.");
});
window.addEventListener("hashchange", route);

async function boot() {
  const loading = $("loading");
  for (let attempt = 0; ; attempt++) {
    try {
      await conn.init();
      conn.key = auth.storedKey();
      const access = await auth.probe(conn);
      if (loading) loading.remove();
      if (access === "ok") {
        start();
      } else {
        const hadKey = Boolean(conn.key);
        conn.key = null;
        auth.remember(null);
        await signIn(hadKey ? "The saved API key was refused; enter it again." : null);
      }
      return;
    } catch (e) {
      if (loading) replace(loading, `This coordinator does not answer (${e.message}); retrying…`);
      await new Promise((r) => setTimeout(r, Math.min(1000 * (attempt + 1), 5000)));
    }
  }
}

boot();
