// The console's HTTP client. Calls go to one member: at first the node that served the page,
// later another one when that node stops answering (a member's page may call the other
// members: they answer it with CORS headers and the page's CSP lists them).
//
// The API key lives in this object (and in session storage, see auth.js); it is sent as the
// `x-api-key` header, never in a URL.

/** An answer with an error status; `body` is the JSON error `{error, code, ...}`. */
export class ApiError extends Error {
  constructor(status, body) {
    super(body && body.error ? body.error : `HTTP ${status}`);
    this.status = status;
    this.body = body && typeof body === "object" ? body : {};
  }
}

/** No answer at all: refused, reset or timed out. */
export class NetworkError extends Error {}

const TIMEOUT_MS = 10000;

/** `fetch` with a deadline; transport failures become NetworkError. */
export async function fetchTimeout(url, init, ms) {
  const ctl = new AbortController();
  const timer = setTimeout(() => ctl.abort(), ms || TIMEOUT_MS);
  try {
    return await fetch(url, { ...init, signal: ctl.signal, cache: "no-store", credentials: "omit" });
  } catch (e) {
    throw new NetworkError(`${url || "this node"}: ${e.name === "AbortError" ? "timed out" : "no answer"}`);
  } finally {
    clearTimeout(timer);
  }
}

async function bodyOf(r) {
  const text = await r.text();
  if (!text) return null;
  try {
    return JSON.parse(text);
  } catch {
    return text;
  }
}

/** One console's connection to the cluster. Events: `unauthorized`, `switched`, `offline`, `online`. */
export class Connection extends EventTarget {
  constructor() {
    super();
    /** Base URL of the member in use; "" is the node that served the page. */
    this.base = "";
    /** Raft id of the node that served the page. */
    this.pageNode = null;
    /** Raft id of the member in use. */
    this.nodeId = null;
    /** API key, or null. */
    this.key = null;
    /** Raft id -> advertised URL of every member. */
    this.members = new Map();
    this.finding = null;
    this.offline = false;
  }

  /** Learns this node's id and the members from `GET /raft/metrics` (an open route). */
  async init() {
    const m = await this.rawJson("", "/raft/metrics", 5000);
    this.pageNode = m.id;
    this.nodeId = m.id;
    this.learn(m);
  }

  /** Records the members listed in a `/raft/metrics` answer. */
  learn(m) {
    if (!m || !m.nodes) return;
    for (const [id, url] of Object.entries(m.nodes)) this.members.set(Number(id), url);
  }

  /** How this page reaches member `id` ("" for the page's own node). */
  baseOf(id) {
    if (id === this.pageNode) return "";
    return String(this.members.get(id) || "").replace(/\/+$/, "");
  }

  /** URL of the member in use, for display. */
  currentUrl() {
    return this.base || window.location.origin;
  }

  headers(extra) {
    const h = { ...(extra || {}) };
    if (this.key) h["x-api-key"] = this.key;
    return h;
  }

  async rawJson(base, path, ms) {
    const r = await fetchTimeout(base + path, { headers: this.headers() }, ms);
    const body = await bodyOf(r);
    if (!r.ok) throw new ApiError(r.status, body);
    return body;
  }

  /** A JSON call to the member in use. Reads move to another member when it does not answer. */
  async request(method, path, body, opts = {}) {
    for (let attempt = 0; ; attempt++) {
      const headers = this.headers(body !== undefined ? { "content-type": "application/json" } : {});
      const init = { method, headers };
      if (body !== undefined) init.body = JSON.stringify(body);
      let r;
      try {
        r = await fetchTimeout(this.base + path, init, opts.timeout || TIMEOUT_MS);
      } catch (e) {
        // A write is not sent twice (the dead node may have applied it): the caller is told,
        // and later calls go to the member found meanwhile.
        if (method === "GET" && attempt === 0 && (await this.failover())) continue;
        if (method !== "GET") this.failover();
        throw e;
      }
      const answer = await bodyOf(r);
      if (r.status === 401 && !opts.quiet401) this.dispatchEvent(new Event("unauthorized"));
      if (!r.ok) throw new ApiError(r.status, answer);
      return answer;
    }
  }

  get(path, opts) {
    return this.request("GET", path, undefined, opts);
  }

  post(path, body, opts) {
    return this.request("POST", path, body === undefined ? {} : body, opts);
  }

  /** `GET path` as text (Prometheus `/metrics`) from `base` (default: the member in use). */
  async text(path, base) {
    const r = await fetchTimeout((base ?? this.base) + path, { headers: this.headers() }, 5000);
    if (r.status === 401) this.dispatchEvent(new Event("unauthorized"));
    if (!r.ok) throw new ApiError(r.status, await bodyOf(r));
    return r.text();
  }

  /** Whether the member in use answers; if not, moves to another one. */
  async check() {
    try {
      await this.rawJson(this.base, "/raft/metrics", 2500);
      this.setOnline();
      return true;
    } catch {
      return this.failover();
    }
  }

  /** Finds a member that answers (one search at a time); false when none does. */
  failover() {
    if (!this.finding) {
      this.finding = this.find().finally(() => {
        this.finding = null;
      });
    }
    return this.finding;
  }

  async find() {
    const ids = [...this.members.keys()].sort((a, b) => a - b);
    const order = ids.filter((id) => id !== this.nodeId).concat(ids.filter((id) => id === this.nodeId));
    for (const id of order) {
      const base = this.baseOf(id);
      if (id !== this.pageNode && !base) continue;
      try {
        const m = await this.rawJson(base, "/raft/metrics", 2500);
        const from = this.nodeId;
        this.learn(m);
        this.base = base;
        this.nodeId = m.id;
        this.setOnline();
        if (from !== m.id) {
          this.dispatchEvent(new CustomEvent("switched", { detail: { from, to: m.id, url: this.currentUrl() } }));
        }
        return true;
      } catch {
        // Try the next member.
      }
    }
    if (!this.offline) {
      this.offline = true;
      this.dispatchEvent(new Event("offline"));
    }
    return false;
  }

  setOnline() {
    if (this.offline) {
      this.offline = false;
      this.dispatchEvent(new Event("online"));
    }
  }
}
