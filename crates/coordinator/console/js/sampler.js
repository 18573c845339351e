// Samples what the metrics page draws, every 2 s while the console is open, keeping the last
// five minutes: Raft writes/s (the applied index of the member in use), write commit latency
// (the leader's histogram, average and p99 of the writes between two samples), workers by
// state (`varpulis_workers`), and events in/out per pipeline (the group metrics route, whose
// counters the workers keep). Rates come from differences between samples; a counter that went
// down (a pipeline moved or was replaced) or a change of node skips one point.

import { histogram, parseProm, quantileBetween, scalar } from "./prom.js";

const EVERY_MS = 2000;
const KEEP = 150;
/** Groups whose pipelines are sampled (the first ones by name). */
const MAX_GROUPS = 8;

export class Sampler extends EventTarget {
  constructor(conn, store) {
    super();
    this.conn = conn;
    this.store = store;
    /** Sample times (ms); every series has one value (or null) per time. */
    this.times = [];
    this.writes = [];
    this.commitAvg = [];
    this.commitP99 = [];
    /** status -> counts */
    this.workers = new Map();
    /** "group/pipeline" -> events/s */
    this.eventsIn = new Map();
    this.eventsOut = new Map();
    this.prev = { node: null, applied: null, at: null, leader: null, hist: null, placements: new Map() };
    this.busy = false;
  }

  start() {
    this.timer = setInterval(() => this.tick(), EVERY_MS);
    this.tick();
  }

  stop() {
    clearInterval(this.timer);
  }

  async tick() {
    if (this.busy) return;
    this.busy = true;
    try {
      await this.sample();
    } catch (e) {
      console.debug("metrics sample:", e.message);
    } finally {
      this.busy = false;
    }
  }

  async sample() {
    const conn = this.conn;
    const now = Date.now();
    const leader = this.store.leader();
    const leaderBase = leader && leader.id !== conn.nodeId ? conn.baseOf(leader.id) : conn.base;
    const [local, onLeader, groups] = await Promise.allSettled([
      conn.text("/metrics"),
      leader && leader.id !== conn.nodeId ? conn.text("/metrics", leaderBase) : Promise.resolve(null),
      this.groupCounters(),
    ]);
    const dt = this.prev.at ? (now - this.prev.at) / 1000 : null;
    this.times.push(now);

    // Writes/s and workers by state, from the member in use.
    let writes = null;
    if (local.status === "fulfilled") {
      const m = parseProm(local.value);
      const applied = scalar(m, "varpulis_raft_applied_index");
      if (dt && this.prev.node === conn.nodeId && this.prev.applied !== null && applied >= this.prev.applied) {
        writes = (applied - this.prev.applied) / dt;
      }
      this.prev.applied = applied;
      this.prev.node = conn.nodeId;
      const counts = new Map();
      for (const s of m.get("varpulis_workers") || []) counts.set(s.labels.status, s.value);
      for (const status of counts.keys()) if (!this.workers.has(status)) this.workers.set(status, this.pad());
      for (const [status, values] of this.workers) values.push(counts.has(status) ? counts.get(status) : null);
      const hereHist = histogram(m, "varpulis_coordinator_write_commit_seconds");
      this.latency(leader && leader.id === conn.nodeId ? hereHist : null, leader, onLeader);
    } else {
      for (const values of this.workers.values()) values.push(null);
      this.latency(null, leader, onLeader);
    }
    this.writes.push(writes);
    this.rates(groups.status === "fulfilled" ? groups.value : [], now);
    this.prev.at = now;
    this.trim();
    this.dispatchEvent(new Event("sample"));
  }

  /** Commit latency from the leader's histogram (read locally when we talk to the leader). */
  latency(localHist, leader, onLeader) {
    let hist = localHist;
    if (!hist && onLeader.status === "fulfilled" && onLeader.value) {
      hist = histogram(parseProm(onLeader.value), "varpulis_coordinator_write_commit_seconds");
    }
    const before = this.prev.hist;
    let avg = null;
    let p99 = null;
    if (hist && before && leader && this.prev.leader === leader.id && hist.count > before.count) {
      avg = ((hist.sum - before.sum) / (hist.count - before.count)) * 1000;
      const q = quantileBetween(before, hist, 0.99);
      p99 = q === null ? null : q * 1000;
    }
    this.prev.hist = hist;
    this.prev.leader = leader ? leader.id : null;
    this.commitAvg.push(avg);
    this.commitP99.push(p99);
  }

  async groupCounters() {
    const groups = [...this.store.groups].sort((a, b) => a.name.localeCompare(b.name)).slice(0, MAX_GROUPS);
    const answers = await Promise.allSettled(
      groups.map((g) => this.conn.get(`/api/v1/cluster/pipeline-groups/${encodeURIComponent(g.id)}/metrics`)),
    );
    return answers.filter((a) => a.status === "fulfilled").map((a) => a.value);
  }

  /** Events in/out per second per pipeline, summed over replicas. */
  rates(groups, now) {
    const inNow = new Map();
    const outNow = new Map();
    const seen = new Map();
    for (const g of groups) {
      for (const p of g.placements) {
        const key = `${g.name}/${p.pipeline_name}`;
        if (!inNow.has(key)) {
          inNow.set(key, null);
          outNow.set(key, null);
        }
        if (p.events_in === undefined || p.events_in === null) continue;
        const id = `${g.group_id}/${p.pipeline_name}/${p.replica}/${p.pipeline_id}`;
        seen.set(id, { events_in: p.events_in, events_out: p.events_out, at: now });
        const before = this.prev.placements.get(id);
        if (!before || p.events_in < before.events_in || p.events_out < before.events_out) continue;
        const dt = (now - before.at) / 1000;
        if (dt <= 0) continue;
        inNow.set(key, (inNow.get(key) || 0) + (p.events_in - before.events_in) / dt);
        outNow.set(key, (outNow.get(key) || 0) + (p.events_out - before.events_out) / dt);
      }
    }
    this.prev.placements = seen;
    for (const [map, current] of [[this.eventsIn, inNow], [this.eventsOut, outNow]]) {
      for (const key of current.keys()) if (!map.has(key)) map.set(key, this.pad());
      for (const [key, values] of map) values.push(current.has(key) ? current.get(key) : null);
    }
  }

  /** A series of nulls as long as the sample times before the current one. */
  pad() {
    return new Array(Math.max(this.times.length - 1, 0)).fill(null);
  }

  trim() {
    const extra = this.times.length - KEEP;
    if (extra <= 0) return;
    const cut = (a) => a.splice(0, extra);
    cut(this.times);
    cut(this.writes);
    cut(this.commitAvg);
    cut(this.commitP99);
    for (const map of [this.workers, this.eventsIn, this.eventsOut]) {
      for (const [key, values] of map) {
        cut(values);
        if (values.every((v) => v === null)) map.delete(key);
      }
    }
  }
}
