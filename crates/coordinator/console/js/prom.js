// A reader for the Prometheus text format that `/metrics` answers.

/** Parses the text into a Map: metric name -> [{labels, value}]. */
export function parseProm(text) {
  const out = new Map();
  for (const raw of text.split("\n")) {
    const line = raw.trim();
    if (!line || line.startsWith("#")) continue;
    const m = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{(.*)\})?\s+(\S+)/.exec(line);
    if (!m) continue;
    const labels = {};
    if (m[3]) {
      const re = /([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"/g;
      let l;
      while ((l = re.exec(m[3])) !== null) labels[l[1]] = l[2].replace(/\\(.)/g, "$1");
    }
    const value = m[4] === "+Inf" ? Infinity : Number(m[4]);
    if (!out.has(m[1])) out.set(m[1], []);
    out.get(m[1]).push({ labels, value });
  }
  return out;
}

/** The value of an unlabelled metric (or the first sample), or null. */
export function scalar(metrics, name) {
  const samples = metrics.get(name);
  return samples && samples.length ? samples[0].value : null;
}

/** Histogram `name`: {count, sum, buckets: [[le, cumulative count]]} sorted by bound, or null. */
export function histogram(metrics, name) {
  const buckets = (metrics.get(`${name}_bucket`) || [])
    .map((s) => [s.labels.le === "+Inf" ? Infinity : Number(s.labels.le), s.value])
    .sort((a, b) => a[0] - b[0]);
  const count = scalar(metrics, `${name}_count`);
  const sum = scalar(metrics, `${name}_sum`);
  if (count === null || sum === null) return null;
  return { count, sum, buckets };
}

/**
 * The q-quantile of the observations between two snapshots of a cumulative histogram,
 * interpolated inside the bucket it falls in (as Prometheus' histogram_quantile does).
 */
export function quantileBetween(before, after, q) {
  const total = after.count - before.count;
  if (!(total > 0)) return null;
  const rank = q * total;
  let lower = 0;
  let below = 0;
  for (let i = 0; i < after.buckets.length; i++) {
    const [le, cum] = after.buckets[i];
    const prev = before.buckets[i] ? before.buckets[i][1] : 0;
    const inside = cum - prev;
    if (inside >= rank) {
      if (le === Infinity) return lower;
      const share = below === inside ? 0 : (rank - below) / Math.max(inside - below, 1e-9);
      return lower + (le - lower) * Math.min(Math.max(share, 0), 1);
    }
    lower = le;
    below = inside;
  }
  return lower;
}
