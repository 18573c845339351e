// Metrics charts, drawn from the samples the console keeps (sampler.js): Raft writes/s, write
// commit latency on the leader, events in/out per pipeline, workers by state.

import { h, replace } from "../dom.js";
import { lineChart } from "../charts.js";

export function mount(root, { sampler }) {
  const charts = h("div", { class: "charts" });
  replace(root, h("h1", null, "Metrics"),
    h("p", { class: "muted small" }, "Sampled every 2 s from /metrics (the member in use and the leader) and from the groups' " +
      "pipeline counters; the last 5 minutes are kept while this tab is open."),
    charts);
  const render = () => {
    const t = sampler.times;
    const map = (m) => [...m].map(([name, values]) => ({ name, values }));
    replace(charts,
      lineChart({ id: "chart-writes", title: "Raft writes/s (entries applied)", unit: "/s", times: t,
        series: [{ name: "writes", values: sampler.writes }] }),
      lineChart({ id: "chart-latency", title: "Write commit latency on the leader", unit: "ms", times: t,
        series: [{ name: "average", values: sampler.commitAvg }, { name: "p99", values: sampler.commitP99, dash: true }] }),
      lineChart({ id: "chart-events-in", title: "Events in per pipeline", unit: "/s", times: t, series: map(sampler.eventsIn) }),
      lineChart({ id: "chart-events-out", title: "Events out per pipeline", unit: "/s", times: t, series: map(sampler.eventsOut) }),
      lineChart({ id: "chart-workers", title: "Workers by state", unit: "", times: t, series: map(sampler.workers) }));
  };
  render();
  const onSample = () => render();
  sampler.addEventListener("sample", onSample);
  return {
    update() {},
    unmount() {
      sampler.removeEventListener("sample", onSample);
    },
  };
}
