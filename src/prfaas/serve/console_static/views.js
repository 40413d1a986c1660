// Rendering of the console's panels from its state (console.js owns the state and the connection).

import { el, fmt, fmtBytes, histogram, lineChart, quantile } from "./charts.js";

const $ = (id) => document.getElementById(id);
const ROUTES = ["prfaas", "local", "colocated"];
const CLUSTERS = { prfaas: "PrfaaS cluster (remote prefill)", pd: "PD cluster (local prefill + decode)" };

function stat(label, value, attrs = {}) {
  return el("div", { class: "stat", ...attrs }, el("span", { class: "label", text: label }), el("span", { class: "value", text: value }));
}

function renderSites(frame) {
  const byCluster = {};
  for (const n of frame.nodes) (byCluster[n.cluster] = byCluster[n.cluster] || []).push(n);
  const sites = Object.keys(CLUSTERS).filter((c) => byCluster[c]).map((cluster) => {
    const nodes = byCluster[cluster].map((n) => el("div", {
      class: `node ${n.is_up ? "" : "down"} ${n.converting ? "converting" : ""}`, "data-node": n.name, "data-role": n.role,
    },
    el("div", { class: "node-name", text: n.name }),
    el("div", { class: "role", text: n.converting ? `${n.role} → ${n.pending_role || "?"}` : n.role }),
    stat("queue", `${n.queued_requests} req / ${n.queued_tokens} tok`),
    stat("running batch", `${n.running_batch} / ${n.max_batch}`),
    stat("prefix cache", `${n.cache_blocks} blocks`),
    stat("busy (5 s)", `${Math.round(100 * (n.utilisation || 0))}%`),
    stat("heartbeat", n.is_up ? `${fmt(n.heartbeat_age_s, 2)} s ago` : "DOWN")));
    return el("div", { class: "site", "data-cluster": cluster }, el("h3", { text: CLUSTERS[cluster] }), el("div", { class: "nodes" }, ...nodes));
  });
  $("sites").replaceChildren(...sites);
}

function renderLink(state) {
  const frame = state.frame;
  const ids = Object.keys(frame.links);
  if (!ids.length) {
    $("link-id").textContent = "(no link telemetry yet)";
    $("link-stats").replaceChildren();
    return;
  }
  const id = ids[0];
  const l = frame.links[id];
  $("link-id").textContent = id;
  $("link-stats").replaceChildren(
    stat("goodput", `${fmt(l.goodput_gbps)} Gbps`, { id: "link-goodput" }),
    stat("capacity", l.capacity_gbps === null ? "unknown" : `${fmt(l.capacity_gbps)} Gbps`),
    stat("utilisation", l.utilisation === null ? "–" : `${Math.round(100 * l.utilisation)}%`, { id: "link-util" }),
    stat("RTT", l.rtt_ms === null ? "idle" : `${fmt(l.rtt_ms)} ms`),
    stat("retransmits", `${l.retransmits_total} (${fmt(100 * (l.retransmit_rate || 0), 2)}%)`),
    stat("in flight", `${l.transfers_in_flight} / ${fmtBytes(l.bytes_in_flight)}`),
    stat("transfers", `${l.transfers_total} ok, ${l.transfers_failed} failed`),
    stat("link", l.is_up ? "up" : "DOWN"));
  const series = state.linkSeries[id] || [];
  lineChart($("link-chart"), [
    { name: "capacity", cls: "capacity", points: series.map((p) => [p[0], p[2]]) },
    { name: "goodput", cls: "goodput", points: series.map((p) => [p[0], p[1]]) },
  ], { unit: "" });
  const util = (p) => (p[2] ? (100 * p[1]) / p[2] : null);
  lineChart($("util-chart"), [{ name: "utilisation", cls: "util", points: series.map((p) => [p[0], util(p)]) }], { height: 70, unit: "%" });
  lineChart($("rtt-chart"), [{ name: "rtt", cls: "rtt", points: series.map((p) => [p[0], p[3]]) }], { height: 70 });
}

function renderRouter(state) {
  const r = state.frame.router;
  const c = state.frame.counts;
  const items = [
    stat("policy", r.policy, { id: "policy" }),
    stat("threshold in force", r.threshold_tokens === null ? "none" : `${r.threshold_tokens} tokens`, { id: "threshold-now" }),
    stat("base t", r.base_tokens === null ? "none" : `${r.base_tokens} tokens`),
    stat("offload fraction", c.offload_fraction === null ? "–" : `${Math.round(100 * c.offload_fraction)}%`, { id: "offload-fraction" }),
  ];
  if (r.controller) {
    items.push(stat("short-term loop", `${r.controller.mode} (${r.controller.cause}), ×${fmt(r.controller.scale)}`, { id: "controller" }));
  }
  $("router-stats").replaceChildren(...items);
  lineChart($("threshold-chart"), [
    { name: "base", cls: "base", step: true, points: state.thresholdSeries.map((p) => [p[0], p[1]]) },
    { name: "threshold", cls: "threshold", step: true, points: state.thresholdSeries.map((p) => [p[0], p[2]]) },
  ]);
}

function renderReasons(counts) {
  const entries = Object.entries(counts.by_reason).sort((a, b) => b[1] - a[1]);
  const max = Math.max(1, ...entries.map((e) => e[1]));
  const bars = entries.map(([reason, n]) => el("div", { class: "bar-row", "data-reason": reason },
    el("span", { class: "bar-label", text: reason }),
    el("span", { class: "bar-track" }, el("span", { class: `bar-fill reason-${reason}`, style: { width: `${(100 * n) / max}%` } })),
    el("span", { class: "bar-value", text: n })));
  const routes = ROUTES.filter((r) => counts.by_route[r]).map((r) => `${r} ${counts.by_route[r]}`).join(" · ");
  $("reasons").replaceChildren(el("p", { class: "muted", text: `by route: ${routes || "no requests yet"}` }), ...bars);
}

function renderHists(frame) {
  for (const [key, id] of [["ttft", "ttft-hist"], ["itl", "itl-hist"]]) {
    const routes = ROUTES.filter((r) => frame.latency[key][r] && frame.latency[key][r].count > 0);
    const blocks = routes.map((route) => {
      const h = frame.latency[key][route];
      const chart = el("div", { class: "hist" });
      const mean = h.sum / h.count;
      const block = el("div", { class: "hist-block", "data-route": route },
        el("div", { class: "hist-title", text: `${route}: n=${h.count}, mean ${fmt(mean)} s, p50 ≤ ${fmt(quantile(h, 0.5))} s, p90 ≤ ${fmt(quantile(h, 0.9))} s` }),
        chart);
      return [block, chart, h, route];
    });
    $(id).replaceChildren(...blocks.map((b) => b[0]));
    if (!blocks.length) $(id).replaceChildren(el("p", { class: "muted", text: "no requests yet" }));
    for (const [, chart, h, route] of blocks) histogram(chart, h, { cls: `route-${route}`, label: route });
  }
}

export function renderAll(state) {
  const frame = state.frame;
  renderSites(frame);
  renderLink(state);
  renderRouter(state);
  renderReasons(frame.counts);
  renderHists(frame);
}

function requestRow(r, selected) {
  return el("tr", { "data-request-id": r.id, "data-route": r.route, "data-reason": r.reason, class: selected ? "selected" : "" },
    el("td", { text: r.id }),
    el("td", { class: `route route-${r.route}`, text: r.route }),
    el("td", { class: "reason", text: r.reason || "–" }),
    el("td", { text: r.prompt_tokens }),
    el("td", { text: r.uncached_tokens ?? "–" }),
    el("td", { text: r.ttft_s === null || r.ttft_s === undefined ? "–" : `${fmt(r.ttft_s)} s` }),
    el("td", { text: r.latency_s === null || r.latency_s === undefined ? "–" : `${fmt(r.latency_s)} s` }),
    el("td", { text: fmtBytes(r.transfer_bytes || 0) }));
}

export function renderRequests(state) {
  const rows = state.requests.slice(-200).reverse().map((r) => requestRow(r, r.id === state.selected));
  $("requests").tBodies[0].replaceChildren(...rows);
}

export function renderEvents(state) {
  const items = state.events.slice(-50).reverse().map((e) => el("li", { class: `event kind-${e.kind}`, "data-kind": e.kind, "data-t": e.t },
    el("span", { class: "when", text: new Date(e.t * 1000).toLocaleTimeString() }),
    el("span", { class: "to", text: `t = ${e.threshold_tokens ?? "none"}` }),
    el("span", { class: "why", text: e.reason })));
  $("threshold-events").replaceChildren(...items);
}

function secs(v) {
  return v === null || v === undefined ? "–" : `${fmt(v)} s`;
}

export function selectRequest(state, id) {
  state.selected = id;
  const r = state.requests.find((x) => x.id === id);
  for (const row of $("requests").tBodies[0].rows) row.classList.toggle("selected", Number(row.dataset.requestId) === id);
  $("detail-id").textContent = r ? `#${r.id}` : "";
  if (!r) {
    $("detail").replaceChildren(el("dt", { text: "select a request" }), el("dd"));
    return;
  }
  const fields = [
    ["route", r.route], ["reason", r.reason], ["prefill node", r.prefill_node], ["decode node", r.decode_node],
    ["prompt tokens", r.prompt_tokens], ["uncached tokens", r.uncached_tokens], ["queue", secs(r.queue_s)],
    ["prefill", secs(r.prefill_s)], ["transfer", secs(r.transfer_s)], ["decode", secs(r.decode_s)],
    ["TTFT", secs(r.ttft_s)], ["latency", secs(r.latency_s)], ["KV bytes moved", fmtBytes(r.transfer_bytes || 0)],
    ["completion tokens", r.completion_tokens], ["attempt", r.attempt],
  ];
  $("detail").replaceChildren(...fields.flatMap(([k, v]) => [el("dt", { text: k }), el("dd", { "data-field": k, text: v ?? "–" })]));
}

function whatIfRow(label, key, cells, format) {
  return el("tr", { "data-metric": key }, el("th", { text: label }),
    ...cells.map((c) => el("td", { text: c ? format(c[key]) : "–" })));
}

export function renderWhatIf(state) {
  const w = state.whatif;
  if (!w) {
    $("whatif").replaceChildren(el("p", { class: "muted", text: "waiting for traffic (runs every 15 s while requests finish)" }));
    return;
  }
  const cols = [w.live, w.simulator, w.planner];
  const pct = (v) => (v === null || v === undefined ? "–" : `${Math.round(100 * v)}%`);
  const s = (v) => secs(v);
  const table = el("table", { class: "whatif" },
    el("thead", {}, el("tr", {}, el("th"), el("th", { text: "live" }), el("th", { text: "simulator (same config)" }), el("th", { text: "planner optimum" }))),
    el("tbody", {},
      whatIfRow("threshold (tokens)", "threshold_tokens", cols, fmt),
      whatIfRow("throughput (req/s; planner: Λmax)", "throughput_rps", cols, fmt),
      whatIfRow("TTFT mean", "ttft_mean_s", cols, s),
      whatIfRow("TTFT p90", "ttft_p90_s", cols, s),
      whatIfRow("offload fraction", "offload_fraction", cols, pct),
      whatIfRow("KV bytes over the link", "egress_bytes", cols, fmtBytes)));
  const when = el("p", { class: "muted", text: `computed ${new Date(w.t * 1000).toLocaleTimeString()} over the last ${fmt(w.window_s)} s` +
    (w.setup ? ` (${w.setup.n_prfaas} PrfaaS, ${w.setup.n_pd_prefill} PD-P, ${w.setup.n_pd_decode} PD-D, ${fmt(w.setup.link_gbps)} Gbps, ${fmt(w.setup.rate_rps)} req/s)` : "") });
  const errors = (w.errors || []).map((e) => el("p", { class: "error", text: e }));
  $("whatif").replaceChildren(when, table, ...errors);
}
