// Tiny SVG charts for the console (no dependencies). Every value drawn comes from numbers; text goes through
// textContent only.

const SVG = "http://www.w3.org/2000/svg";

export function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (v === undefined || v === null || v === false) continue;
    if (k === "class") node.className = v;
    else if (k === "text") node.textContent = String(v);
    else if (k === "style") Object.assign(node.style, v); // CSSOM: allowed under the page's CSP
    else if (k.startsWith("on")) node.addEventListener(k.slice(2), v);
    else node.setAttribute(k, String(v));
  }
  for (const c of children) node.append(c instanceof Node ? c : document.createTextNode(String(c)));
  return node;
}

function svg(tag, attrs = {}) {
  const node = document.createElementNS(SVG, tag);
  for (const [k, v] of Object.entries(attrs)) node.setAttribute(k, String(v));
  return node;
}

export function fmt(v, digits = 3) {
  if (v === null || v === undefined || Number.isNaN(v)) return "–";
  if (typeof v !== "number") return String(v);
  if (v !== 0 && (Math.abs(v) >= 1e5 || Math.abs(v) < 1e-3)) return v.toExponential(2);
  return Number(v.toPrecision(digits)).toString();
}

export function fmtBytes(v) {
  if (v === null || v === undefined) return "–";
  const units = ["B", "kB", "MB", "GB", "TB"];
  let i = 0;
  while (Math.abs(v) >= 1000 && i < units.length - 1) { v /= 1000; i += 1; }
  return `${fmt(v)} ${units[i]}`;
}

// series: [{name, cls, points: [[t, y], ...], step}]; t in unix seconds. Draws the last `spanS` seconds.
export function lineChart(container, series, { spanS = 300, height = 120, unit = "", yMin = 0 } = {}) {
  const width = Math.max(container.clientWidth || 400, 200);
  const pad = { l: 44, r: 6, t: 6, b: 16 };
  const all = series.flatMap((s) => s.points.filter((p) => p[1] !== null && p[1] !== undefined));
  const tMax = all.length ? Math.max(...all.map((p) => p[0])) : Date.now() / 1000;
  const tMin = tMax - spanS;
  const ys = all.filter((p) => p[0] >= tMin).map((p) => p[1]);
  let yMax = ys.length ? Math.max(...ys) : 1;
  if (yMax <= yMin) yMax = yMin + 1;
  yMax *= 1.1;
  const x = (t) => pad.l + ((t - tMin) / spanS) * (width - pad.l - pad.r);
  const y = (v) => height - pad.b - ((v - yMin) / (yMax - yMin)) * (height - pad.t - pad.b);
  const root = svg("svg", { width, height, viewBox: `0 0 ${width} ${height}`, role: "img" });
  for (const frac of [0, 0.5, 1]) {
    const v = yMin + frac * (yMax - yMin);
    root.append(svg("line", { x1: pad.l, x2: width - pad.r, y1: y(v), y2: y(v), class: "grid" }));
    const label = svg("text", { x: pad.l - 4, y: y(v) + 4, class: "axis", "text-anchor": "end" });
    label.textContent = fmt(v, 2) + unit;
    root.append(label);
  }
  const tl = svg("text", { x: pad.l, y: height - 3, class: "axis" });
  tl.textContent = `-${Math.round(spanS / 60)} min`;
  root.append(tl);
  for (const s of series) {
    let d = "";
    let pen = false;
    let last = null;
    for (const [t, v] of s.points) {
      if (t < tMin || v === null || v === undefined) { pen = false; continue; }
      if (s.step && pen && last !== null) d += `L${x(t).toFixed(1)},${y(last).toFixed(1)}`;
      d += `${pen ? "L" : "M"}${x(t).toFixed(1)},${y(v).toFixed(1)}`;
      pen = true;
      last = v;
    }
    if (d) root.append(svg("path", { d, class: `line ${s.cls || ""}`, "data-series": s.name }));
  }
  container.replaceChildren(root);
}

// A histogram from Prometheus-style cumulative buckets: {le: [...], counts: [...], count}.
export function histogram(container, hist, { cls = "", label = "" } = {}) {
  const width = Math.max(container.clientWidth || 300, 160);
  const height = 70;
  const root = svg("svg", { width, height, viewBox: `0 0 ${width} ${height}`, role: "img" });
  const counts = [];
  let prev = 0;
  for (const c of hist.counts) { counts.push(c - prev); prev = c; }
  const max = Math.max(1, ...counts);
  const bw = (width - 8) / Math.max(1, counts.length);
  counts.forEach((c, i) => {
    const h = (c / max) * (height - 18);
    const bar = svg("rect", { x: 4 + i * bw, y: height - 14 - h, width: Math.max(1, bw - 2), height: h, class: `bar ${cls}` });
    const title = svg("title");
    const le = hist.le[i];
    title.textContent = `${label} ≤ ${le === null ? "+Inf" : le + " s"}: ${c}`;
    bar.append(title);
    root.append(bar);
  });
  const first = svg("text", { x: 4, y: height - 2, class: "axis" });
  first.textContent = `${hist.le[0]} s`;
  const last = svg("text", { x: width - 4, y: height - 2, class: "axis", "text-anchor": "end" });
  last.textContent = "+Inf";
  root.append(first, last);
  container.replaceChildren(root);
}

// Approximate quantile from cumulative buckets (upper bucket bound).
export function quantile(hist, q) {
  if (!hist || !hist.count) return null;
  const target = q * hist.count;
  for (let i = 0; i < hist.counts.length; i += 1) {
    if (hist.counts[i] >= target) return hist.le[i];
  }
  return null;
}
