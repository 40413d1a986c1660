// The operator's console: reads the gateway's live feed (GET /admin/console/stream, Server-Sent Events) with
// fetch() so that the admin token travels in the Authorization header, reconnects with backoff, and rebuilds its
// whole state from each "hello" snapshot (a restarted gateway leaves nothing stale behind).

import { renderAll, renderRequests, renderEvents, renderWhatIf, selectRequest } from "./views.js";

const TOKEN_KEY = "prfaas-console-token";
const MAX_REQUESTS = 500;
const MAX_POINTS = 600;
const STALL_S = 5; // no frame for this long: the connection is dead, reconnect

export const state = {
  bootId: null,
  frame: null,
  linkSeries: {},
  thresholdSeries: [],
  events: [],
  requests: [], // newest last
  whatif: null,
  selected: null,
};

const status = document.getElementById("status");
let connects = 0;
let restarts = 0;
let controller = null;

function setStatus(name, text) {
  status.dataset.state = name;
  status.textContent = text;
}

function reset(hello) {
  const snap = hello.snapshot;
  if (state.bootId !== null && state.bootId !== hello.boot_id) {
    restarts += 1;
    status.dataset.restarts = String(restarts);
  }
  state.bootId = hello.boot_id;
  document.body.dataset.bootId = hello.boot_id;
  state.frame = snap.frame;
  state.linkSeries = snap.link_series || {};
  state.thresholdSeries = snap.threshold_series || [];
  state.events = snap.events || [];
  state.requests = (snap.requests || []).slice(-MAX_REQUESTS);
  state.whatif = hello.whatif;
  if (state.selected !== null && !state.requests.some((r) => r.id === state.selected)) state.selected = null;
  renderRequests(state);
  renderEvents(state);
  renderWhatIf(state);
  if (state.frame) renderAll(state);
  selectRequest(state, state.selected);
}

function push(list, item, max) {
  list.push(item);
  if (list.length > max) list.splice(0, list.length - max);
}

function onTick(frame) {
  state.frame = frame;
  push(state.thresholdSeries, [frame.t, frame.router.base_tokens, frame.router.threshold_tokens], MAX_POINTS);
  for (const [id, l] of Object.entries(frame.links)) {
    const series = state.linkSeries[id] || (state.linkSeries[id] = []);
    push(series, [frame.t, l.goodput_gbps, l.capacity_gbps, l.rtt_ms, l.transfers_in_flight, l.retransmits_total], MAX_POINTS);
  }
  for (const e of frame.events) push(state.events, e, 200);
  for (const r of frame.requests) push(state.requests, r, MAX_REQUESTS);
  if (frame.events.length) renderEvents(state);
  if (frame.requests.length) renderRequests(state);
  renderAll(state);
}

function onEvent(name, data) {
  if (name === "hello") {
    reset(data);
    setStatus("live", "live");
  } else if (name === "tick") {
    if (data.boot_id !== state.bootId) throw new Error("frame from another gateway process");
    onTick(data);
  } else if (name === "whatif") {
    state.whatif = data;
    renderWhatIf(state);
  } else if (name === "dropped") {
    throw new Error(data.reason);
  }
}

class AuthError extends Error {}

async function readStream(token, signal) {
  const resp = await fetch("/admin/console/stream", {
    headers: { authorization: `Bearer ${token}`, accept: "text/event-stream" }, signal, cache: "no-store",
  });
  if (resp.status === 401 || resp.status === 403) {
    const body = await resp.json().catch(() => ({}));
    throw new AuthError((body.error && body.error.message) || `HTTP ${resp.status}`);
  }
  if (!resp.ok || !resp.body) throw new Error(`HTTP ${resp.status}`);
  connects += 1;
  status.dataset.connects = String(connects);
  const reader = resp.body.getReader();
  const decoder = new TextDecoder();
  let buffer = "";
  let watchdog = null;
  const arm = () => {
    clearTimeout(watchdog);
    watchdog = setTimeout(() => reader.cancel("stalled").catch(() => {}), STALL_S * 1000);
  };
  arm();
  try {
    for (;;) {
      const { value, done } = await reader.read();
      if (done) return;
      arm();
      buffer += decoder.decode(value, { stream: true });
      let cut;
      while ((cut = buffer.indexOf("\n\n")) >= 0) {
        const block = buffer.slice(0, cut);
        buffer = buffer.slice(cut + 2);
        let name = "message";
        let data = "";
        for (const line of block.split("\n")) {
          if (line.startsWith("event: ")) name = line.slice(7);
          else if (line.startsWith("data: ")) data += line.slice(6);
        }
        if (data) onEvent(name, JSON.parse(data));
      }
    }
  } finally {
    clearTimeout(watchdog);
  }
}

async function connect(token) {
  controller = new AbortController();
  const signal = controller.signal;
  let failures = 0;
  while (!signal.aborted) {
    setStatus(connects ? "reconnecting" : "connecting", connects ? "reconnecting…" : "connecting…");
    try {
      await readStream(token, signal);
      failures = 0; // a stream that ended after working: reconnect at once
    } catch (err) {
      if (signal.aborted) return;
      if (err instanceof AuthError) {
        signOut(err.message);
        return;
      }
      failures += 1;
    }
    if (signal.aborted) return;
    const delay = Math.min(10, 0.25 * 2 ** Math.min(failures, 6)) * (0.8 + 0.4 * Math.random());
    setStatus("reconnecting", `reconnecting in ${delay.toFixed(1)} s…`);
    await new Promise((resolve) => setTimeout(resolve, delay * 1000));
  }
}

function signOut(message) {
  if (controller) controller.abort();
  sessionStorage.removeItem(TOKEN_KEY);
  document.getElementById("main").hidden = true;
  document.getElementById("login").hidden = false;
  document.getElementById("signout").hidden = true;
  document.getElementById("login-error").textContent = message || "";
  setStatus("signed-out", "signed out");
}

function start(token) {
  document.getElementById("login").hidden = true;
  document.getElementById("main").hidden = false;
  document.getElementById("signout").hidden = false;
  connect(token);
}

document.getElementById("login-form").addEventListener("submit", (ev) => {
  ev.preventDefault();
  const input = document.getElementById("token");
  const token = input.value.trim();
  input.value = "";
  if (!token) return;
  sessionStorage.setItem(TOKEN_KEY, token);
  start(token);
});
document.getElementById("signout").addEventListener("click", () => signOut(""));
document.getElementById("whatif-run").addEventListener("click", async () => {
  const token = sessionStorage.getItem(TOKEN_KEY);
  const resp = await fetch("/admin/console/whatif", { method: "POST", headers: { authorization: `Bearer ${token}` } });
  document.getElementById("whatif-run").textContent = resp.status === 202 ? "running…" : "run now (busy)";
  setTimeout(() => { document.getElementById("whatif-run").textContent = "run now"; }, 3000);
});
document.getElementById("requests").addEventListener("click", (ev) => {
  const row = ev.target.closest("tr[data-request-id]");
  if (row) selectRequest(state, Number(row.dataset.requestId));
});

const saved = sessionStorage.getItem(TOKEN_KEY);
if (saved) start(saved);
