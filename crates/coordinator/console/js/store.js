// What the console knows about the cluster, kept fresh: the Raft members (each member's
// `/raft/metrics` and `/ready`, polled), workers, groups and migrations (reloaded when a
// cluster event says they changed, and polled as a safety net), and the cluster events
// themselves (`GET /api/v1/cluster/events`, resumed with `since` after a reconnect, on
// whichever member answers). Views listen for `change` events whose `detail` names what changed.

import { ApiError } from "./api.js";
import { follow } from "./sse.js";

/** Events kept in memory for the event stream page. */
const MAX_EVENTS = 1000;
/** Poll periods (ms). */
const MEMBERS_EVERY = 2000;
const LISTS_EVERY = 3000;
/** Views re-render at most this often per kind of data. */
const RENDER_EVERY_MS = 100;

/** Which lists an event type makes stale. */
function staleBy(type) {
  if (type.startsWith("worker_")) return ["workers", "groups"];
  if (type.startsWith("group_")) return ["groups"];
  if (type.startsWith("migration_")) return ["migrations", "groups", "workers"];
  if (type === "leader_changed") return ["members"];
  return [];
}

export class Store extends EventTarget {
  constructor(conn) {
    super();
    this.conn = conn;
    this.workers = [];
    this.groups = [];
    this.migrations = [];
    /** One row per member: {id, url, up, metrics, ready, error}. */
    this.members = [];
    /** Newest last: {id, type, data, received}. */
    this.events = [];
    this.lastEventId = null;
    this.streamState = "connecting";
    this.timers = [];
    this.jobs = new Map();
    this.dirty = new Set();
    this.loaded = new Set();
  }

  start() {
    this.stream = follow(this.conn, () => `/api/v1/cluster/events?since=${encodeURIComponent(this.lastEventId ?? "0")}`, {
      onEvent: (ev) => this.onEvent(ev),
      onOpen: () => this.setStream("live"),
      onClose: () => this.setStream("reconnecting"),
    });
    for (const kind of ["members", "workers", "groups", "migrations"]) this.reload(kind);
    this.timers.push(setInterval(() => this.reload("members"), MEMBERS_EVERY));
    this.timers.push(setInterval(() => {
      this.reload("workers");
      this.reload("groups");
    }, LISTS_EVERY));
    this.timers.push(setInterval(() => this.reload("migrations"), LISTS_EVERY * 2));
  }

  stop() {
    if (this.stream) this.stream.stop();
    for (const t of this.timers) clearInterval(t);
    this.timers = [];
    for (const job of this.jobs.values()) clearTimeout(job.timer);
    this.stopped = true;
  }

  setStream(state) {
    this.streamState = state;
    this.changed("stream");
  }

  /** Tells the views that `kind` changed, at most every RENDER_EVERY_MS (bursts of events merge). */
  changed(kind) {
    if (this.dirty.has(kind)) return;
    this.dirty.add(kind);
    setTimeout(() => {
      this.dirty.delete(kind);
      if (!this.stopped) this.dispatchEvent(new CustomEvent("change", { detail: kind }));
    }, RENDER_EVERY_MS);
  }

  onEvent(ev) {
    if (ev.event === "reset") {
      this.changed("events");
      return;
    }
    let parsed = null;
    try {
      parsed = JSON.parse(ev.data);
    } catch {
      return;
    }
    const type = parsed.type || ev.event;
    const entry = { id: parsed.id ?? ev.id, type, data: parsed.data, received: Date.now() };
    if (ev.id) this.lastEventId = ev.id;
    this.events.push(entry);
    if (this.events.length > MAX_EVENTS) this.events.splice(0, this.events.length - MAX_EVENTS);
    this.dispatchEvent(new CustomEvent("event", { detail: entry }));
    this.changed("events");
    for (const kind of staleBy(type)) this.reload(kind, 150);
  }

  /** Reloads one list after `delay` ms (bursts merge; a reload asked for during a load runs after it). */
  reload(kind, delay = 0) {
    let job = this.jobs.get(kind);
    if (!job) {
      job = { running: false, queued: false, timer: null };
      this.jobs.set(kind, job);
    }
    if (job.timer) return;
    job.timer = setTimeout(async () => {
      job.timer = null;
      if (job.running) {
        job.queued = true;
        return;
      }
      job.running = true;
      try {
        await this.load(kind);
      } finally {
        job.running = false;
        if (job.queued) {
          job.queued = false;
          this.reload(kind);
        }
      }
    }, delay);
  }

  async load(kind) {
    if (this.stopped) return;
    try {
      if (kind === "members") await this.loadMembers();
      else if (kind === "workers") this.workers = await this.loadWorkers();
      else if (kind === "groups") this.groups = (await this.conn.get("/api/v1/cluster/pipeline-groups?limit=1000")).pipeline_groups;
      else if (kind === "migrations") this.migrations = (await this.conn.get("/api/v1/cluster/migrations?limit=1000")).migrations;
      this.loaded.add(kind);
      this.changed(kind);
    } catch (e) {
      // The banner shows connection problems; a failed poll is retried by the next one.
      if (!(e instanceof ApiError) || e.status !== 401) console.debug(`reload ${kind}:`, e.message);
    }
  }

  /** Workers as the leader sees them (heartbeat ages); the local view when no leader answers. */
  async loadWorkers() {
    try {
      return (await this.conn.get("/api/v1/cluster/workers?limit=1000&consistent=true")).workers;
    } catch (e) {
      if (e instanceof ApiError && (e.status === 503 || e.status === 421)) {
        return (await this.conn.get("/api/v1/cluster/workers?limit=1000")).workers;
      }
      throw e;
    }
  }

  async loadMembers() {
    const conn = this.conn;
    if (conn.members.size === 0) await conn.check();
    const ids = [...conn.members.keys()].sort((a, b) => a - b);
    const rows = await Promise.all(ids.map(async (id) => {
      const base = id === conn.nodeId ? conn.base : conn.baseOf(id);
      const row = { id, url: conn.members.get(id), up: false, metrics: null, ready: null, error: null };
      if (id !== conn.pageNode && !base) {
        row.error = "no address";
        return row;
      }
      const [metrics, ready] = await Promise.allSettled([
        conn.rawJson(base, "/raft/metrics", 2500),
        conn.rawJson(base, "/ready", 2500),
      ]);
      if (metrics.status === "fulfilled") {
        row.up = true;
        row.metrics = metrics.value;
        conn.learn(metrics.value);
      } else {
        row.error = metrics.reason && metrics.reason.message;
      }
      if (ready.status === "fulfilled") row.ready = true;
      else if (ready.reason instanceof ApiError) row.ready = false;
      return row;
    }));
    this.members = rows;
    const mine = rows.find((r) => r.id === conn.nodeId);
    if (mine && !mine.up) conn.check();
  }

  /** The leader's row, as most members that answer see it. */
  leader() {
    const votes = new Map();
    for (const r of this.members) {
      const l = r.metrics && r.metrics.current_leader;
      if (l !== null && l !== undefined) votes.set(l, (votes.get(l) || 0) + 1);
    }
    let best = null;
    for (const [id, n] of votes) if (best === null || n > votes.get(best)) best = id;
    return best === null ? null : this.members.find((r) => r.id === best) || { id: best, up: false };
  }

  /** Voters, voters answering, and the quorum size. */
  quorum() {
    const source = this.members.find((r) => r.metrics && r.metrics.state === "Leader") || this.members.find((r) => r.metrics);
    const voters = source ? source.metrics.membership : this.members.map((r) => r.id);
    const up = this.members.filter((r) => r.up && voters.includes(r.id)).length;
    const need = Math.floor(voters.length / 2) + 1;
    return { voters: voters.length, up, need, ok: up >= need && this.leader() !== null };
  }

  /** The group with this id, if known. */
  group(id) {
    return this.groups.find((g) => g.id === id) || null;
  }
}
