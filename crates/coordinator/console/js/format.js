// Formatting helpers shared by the views.
import { h } from "./dom.js";

/** "0.4 s", "12 s", "3 min", "2 h". */
export function age(ms) {
  if (ms === null || ms === undefined) return "–";
  if (ms < 1000) return `${(ms / 1000).toFixed(1)} s`;
  if (ms < 60000) return `${Math.round(ms / 1000)} s`;
  if (ms < 3600000) return `${Math.round(ms / 60000)} min`;
  return `${(ms / 3600000).toFixed(1)} h`;
}

/** Local wall-clock time of a ms timestamp. */
export function time(ms) {
  if (!ms) return "–";
  const d = new Date(ms);
  return d.toLocaleTimeString([], { hour12: false });
}

/** Local date and time of a ms timestamp. */
export function dateTime(ms) {
  if (!ms) return "–";
  const d = new Date(ms);
  return `${d.toLocaleDateString()} ${d.toLocaleTimeString([], { hour12: false })}`;
}

/** 12,345 */
export function num(n) {
  if (n === null || n === undefined || Number.isNaN(n)) return "–";
  return Number(n).toLocaleString("en-US", { maximumFractionDigits: 2 });
}

const OK = new Set(["ready", "running", "leader", "follower", "up", "completed", "healthy"]);
const WARN = new Set(["busy", "draining", "deploying", "pending", "migrating", "partially_running",
  "candidate", "learner", "registering", "tearing_down", "keep", "reset"]);
const BAD = new Set(["unhealthy", "dead", "failed", "down", "stopped", "aborted", "shutdown"]);

/** A status badge coloured by meaning. */
export function badge(status, extraClass) {
  const text = String(status ?? "–");
  const key = text.toLowerCase();
  const tone = OK.has(key) ? "ok" : WARN.has(key) ? "warn" : BAD.has(key) ? "bad" : "";
  return h("span", { class: `badge ${tone} ${extraClass || ""}`.trim(), "data-status": key }, text);
}

/** A short one-line summary of an event's data. */
export function summary(data) {
  if (data === null || data === undefined) return "";
  if (typeof data !== "object") return String(data);
  return Object.entries(data)
    .filter(([, v]) => v !== null && v !== undefined)
    .map(([k, v]) => `${k}=${typeof v === "object" ? JSON.stringify(v) : v}`)
    .join("  ");
}

/** The message of an error thrown by the API client. */
export function errorText(e) {
  if (!e) return "";
  if (e.body && e.body.error) return `${e.body.error} (${e.status} ${e.body.code || ""})`.trim();
  return e.message || String(e);
}
