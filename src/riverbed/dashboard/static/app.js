// riverbed dashboard: vanilla JS, no build step. Reads /api/jobs, one job's status over
// server-sent events (/api/jobs/NAME/events), and draws its charts as hand-made SVG.
"use strict";

const token = new URLSearchParams(location.search).get("token");
const tq = token ? "?token=" + encodeURIComponent(token) : "";
const SVGNS = "http://www.w3.org/2000/svg";
let selected = null;
let source = null;
let graphFor = null;

function api(path) { return "api/" + path + tq; }

function el(tag, attrs, text) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) e.setAttribute(k, v);
  if (text !== undefined) e.textContent = text;
  return e;
}

function svgEl(tag, attrs) {
  const e = document.createElementNS(SVGNS, tag);
  for (const [k, v] of Object.entries(attrs || {})) e.setAttribute(k, String(v));
  return e;
}

function num(v, digits) {
  if (v === null || v === undefined || Number.isNaN(v)) return "–";
  const a = Math.abs(v);
  if (a >= 1e9) return (v / 1e9).toFixed(1) + "G";
  if (a >= 1e6) return (v / 1e6).toFixed(1) + "M";
  if (a >= 1e4) return (v / 1e3).toFixed(1) + "k";
  if (digits !== undefined) return v.toFixed(digits);
  if (Number.isInteger(v) || a >= 100) return v.toFixed(0);
  return v.toFixed(a >= 1 ? 1 : 2);
}

function secs(v) {
  if (v === null || v === undefined) return "–";
  const a = Math.abs(v);
  if (a >= 86400 * 2) return num(v / 86400) + " d";
  if (a >= 3600) return (v / 3600).toFixed(1) + " h";
  if (a >= 60) return (v / 60).toFixed(1) + " min";
  if (a >= 1) return v.toFixed(1) + " s";
  return (v * 1000).toFixed(0) + " ms";
}

function bytes(v) {
  if (v === null || v === undefined) return "–";
  if (v >= 1e9) return (v / 1e9).toFixed(1) + " GB";
  if (v >= 1e6) return (v / 1e6).toFixed(1) + " MB";
  if (v >= 1e3) return (v / 1e3).toFixed(1) + " kB";
  return v + " B";
}

function when(t) {
  return t ? new Date(t * 1000).toISOString().replace("T", " ").slice(0, 19) + "Z" : "–";
}

// -- job list -------------------------------------------------------------------------------
async function loadJobs() {
  let jobs;
  try {
    const r = await fetch(api("jobs"));
    if (!r.ok) { showListError(r.status === 401 ? "this dashboard needs ?token=… in its URL" : "error " + r.status); return; }
    jobs = await r.json();
  } catch (e) { return; }
  const list = document.getElementById("job-list");
  list.replaceChildren();
  if (!jobs.length) list.append(el("li", { class: "muted" }, "no jobs yet"));
  for (const j of jobs) {
    const a = el("a", { href: "#" + encodeURIComponent(j.pipeline), "data-job": j.pipeline });
    a.append(el("strong", {}, j.pipeline));
    const rate = j.state === "running" && j.rate !== null ? " · " + num(j.rate) + " ev/s" : "";
    a.append(el("span", { class: "sub" }, j.label + " · " + j.mode + rate));
    if (j.pipeline === selected) a.classList.add("selected");
    const li = el("li");
    li.append(a);
    list.append(li);
  }
  if (selected === null && jobs.length) {
    const pick = jobs.find((j) => j.state === "running") || jobs[0];
    select(pick.pipeline);
  }
}

function showListError(msg) {
  document.getElementById("job-list").replaceChildren(el("li", { class: "error" }, msg));
}

// -- one job --------------------------------------------------------------------------------
function select(name) {
  if (name === selected && source) return;
  selected = name;
  if (source) { source.close(); source = null; }
  graphFor = null;
  document.querySelectorAll("#job-list a").forEach((a) => a.classList.toggle("selected", a.dataset.job === name));
  if (location.hash.slice(1) !== encodeURIComponent(name)) history.replaceState(null, "", location.search + "#" + encodeURIComponent(name));
  source = new EventSource("api/jobs/" + encodeURIComponent(name) + "/events" + tq);
  source.addEventListener("status", (ev) => render(JSON.parse(ev.data)));
  source.addEventListener("end", () => { if (source) source.close(); source = null; loadJobs(); });
}

async function loadGraph(status) {
  if (graphFor === status.pipeline + status.started) return;
  graphFor = status.pipeline + status.started;
  const r = await fetch("api/jobs/" + encodeURIComponent(status.pipeline) + "/plan.svg" + tq);
  if (!r.ok) return;
  document.getElementById("graph").innerHTML = await r.text();
  updateRates(status);
}

function updateRates(status) {
  const steps = status.steps || {};
  const running = status.state === "running";
  document.querySelectorAll("#graph text.rb-rate").forEach((t) => {
    const s = steps[t.dataset.step];
    if (!s || s.rows_out === null) return;
    let text = num(s.rows_out) + (s.rows_out === 1 ? " row out" : " rows out");
    if (running && (s.rate_in || s.rate_out)) text = num(s.rate_in) + "/s in · " + num(s.rate_out) + "/s out";
    if (s.seconds !== null && s.seconds !== undefined) text += " · " + secs(s.seconds);
    t.textContent = text;
  });
}

function render(status) {
  document.getElementById("empty").hidden = true;
  document.getElementById("job-view").hidden = false;
  document.getElementById("job-name").textContent = status.pipeline;
  const st = document.getElementById("job-state");
  st.textContent = status.process_gone ? status.state + " (process gone)" : status.state;
  st.className = "state " + status.state;
  document.getElementById("job-meta").textContent =
    status.mode + " · started " + when(status.started) + " · " + secs(status.elapsed_s) +
    (status.metrics_url ? " · metrics " + status.metrics_url + "/metrics" : "");
  const errBox = document.getElementById("job-error");
  errBox.hidden = !status.error;
  errBox.textContent = status.error || "";
  renderFigures(status);
  loadGraph(status);
  updateRates(status);
  const samples = status.samples || [];
  chart("chart-rate", samples, [{ key: "rate", colour: "#1565c0", name: "events/s" }], (v) => num(v) + "/s");
  chart("chart-delay", samples, [{ key: "watermark_delay_s", colour: "#ef6c00", name: "delay" }], secs);
  chart("chart-lag", samples, [{ key: "lag", colour: "#6a1b9a", name: "lag" }], (v) => num(v) + " records");
  chart("chart-late", samples, [
    { key: "late", colour: "#c62828", name: "late" },
    { key: "dead_letters", colour: "#455a64", name: "dead" },
  ], (v) => num(v));
  renderCheckpoints(status.checkpoints || []);
  renderTimeline(status);
}

function renderFigures(status) {
  const f = status.figures || {};
  const samples = status.samples || [];
  const last = samples.length ? samples[samples.length - 1] : {};
  const cps = status.checkpoints || [];
  const items = [
    ["events", num(f.events)],
    ["events/s", num(status.state === "running" ? last.rate : f.events_per_s)],
    ["watermark delay", secs(f.watermark_delay_s)],
    ["open windows", num(f.open_windows)],
    ["state", bytes(f.state_bytes)],
    ["late events", num(f.late)],
    ["dead letters", num(f.dead_letters)],
    ["micro-batches", num(status.batches)],
    ["last batch", num(f.batch_rows) + " · " + secs(f.batch_seconds)],
    ["last checkpoint", cps.length ? secs(Date.now() / 1000 - cps[cps.length - 1].t) + " ago" : "–"],
  ];
  const box = document.getElementById("figures");
  box.replaceChildren();
  for (const [k, v] of items) {
    const d = el("div", { class: "figure", "data-figure": k });
    d.append(el("div", { class: "v" }, v), el("div", { class: "k" }, k));
    box.append(d);
  }
}

// A small line chart: x = sample time, y from 0 to the max of the series.
function chart(id, samples, series, fmt) {
  const fig = document.getElementById(id);
  const svg = fig.querySelector("svg");
  const W = Math.max(svg.clientWidth || 320, 200), H = 110, L = 58, R = 8, T = 8, B = 18;
  svg.setAttribute("viewBox", "0 0 " + W + " " + H);
  svg.replaceChildren();
  const pts = series.map((s) => samples.filter((p) => p[s.key] !== null && p[s.key] !== undefined).map((p) => [p.t, p[s.key]]));
  const all = pts.flat();
  const lastEl = fig.querySelector(".rb-last");
  if (!all.length) {
    lastEl.textContent = "–";
    const t = svgEl("text", { x: W / 2, y: H / 2, "text-anchor": "middle", fill: "#90a4ae", "font-size": 12 });
    t.textContent = "not reported by this job";
    svg.append(t);
    return;
  }
  lastEl.textContent = series.map((s, i) => (series.length > 1 ? s.name + " " : "") +
    (pts[i].length ? fmt(pts[i][pts[i].length - 1][1]) : "–")).join(" · ");
  const t0 = Math.min(...all.map((p) => p[0])), t1 = Math.max(...all.map((p) => p[0]));
  const ymax = Math.max(...all.map((p) => p[1]), 1e-9) * 1.1;
  const x = (t) => L + (t1 > t0 ? (t - t0) / (t1 - t0) : 1) * (W - L - R);
  const y = (v) => T + (1 - v / ymax) * (H - T - B);
  for (const frac of [0, 0.5, 1]) {
    const yy = y(ymax * frac);
    svg.append(svgEl("line", { x1: L, x2: W - R, y1: yy, y2: yy, stroke: "#eceff1" }));
    const lab = svgEl("text", { x: L - 4, y: yy + 4, "text-anchor": "end", "font-size": 10, fill: "#78909c" });
    lab.textContent = fmt(ymax * frac);
    svg.append(lab);
  }
  const span = svgEl("text", { x: W - R, y: H - 4, "text-anchor": "end", "font-size": 10, fill: "#78909c" });
  span.textContent = "last " + secs(t1 - t0);
  svg.append(span);
  series.forEach((s, i) => {
    if (!pts[i].length) return;
    const d = pts[i].map((p, k) => (k ? "L" : "M") + x(p[0]).toFixed(1) + "," + y(p[1]).toFixed(1)).join(" ");
    svg.append(svgEl("path", { d: d, fill: "none", stroke: s.colour, "stroke-width": 1.8, class: "rb-series", "data-series": s.key }));
  });
}

function renderCheckpoints(cps) {
  const box = document.getElementById("checkpoints");
  if (!cps.length) { box.replaceChildren(el("p", { class: "muted" }, "no checkpoint yet")); return; }
  const table = el("table");
  const head = el("tr");
  for (const h of ["epoch", "taken", "duration", "size"]) head.append(el("th", {}, h));
  table.append(head);
  for (const c of cps.slice(-12).reverse()) {
    const tr = el("tr");
    tr.append(el("td", {}, String(c.epoch)), el("td", {}, when(c.t)), el("td", {}, secs(c.duration_s)), el("td", {}, bytes(c.size_bytes)));
    table.append(tr);
  }
  box.replaceChildren(table);
}

function renderTimeline(status) {
  const box = document.getElementById("timeline");
  const tl = status.timeline || [];
  if (!tl.length) {
    box.replaceChildren(el("p", { class: "muted" }, status.mode === "batch" ? "no per-step timing reported" : "stream jobs run every step each micro-batch: see the rates on the graph"));
    return;
  }
  const W = Math.max(box.clientWidth || 360, 240), row = 20, L = 120, H = tl.length * row + 20;
  const end = Math.max(...tl.map((s) => s.start_s + s.seconds), 1e-9);
  const svg = svgEl("svg", { viewBox: "0 0 " + W + " " + H, width: "100%", height: H, class: "rb-timeline" });
  tl.forEach((s, i) => {
    const lab = svgEl("text", { x: L - 6, y: i * row + 14, "text-anchor": "end", "font-size": 11, fill: "#37474f" });
    lab.textContent = s.step;
    const x0 = L + (s.start_s / end) * (W - L - 10);
    const w = Math.max((s.seconds / end) * (W - L - 10), 2);
    const bar = svgEl("rect", { x: x0, y: i * row + 4, width: w, height: row - 8, rx: 3, fill: "#42a5f5" });
    const tip = svgEl("title");
    tip.textContent = s.step + ": " + secs(s.seconds);
    bar.append(tip);
    svg.append(lab, bar);
  });
  const axis = svgEl("text", { x: W - 10, y: H - 4, "text-anchor": "end", "font-size": 10, fill: "#78909c" });
  axis.textContent = secs(end);
  svg.append(axis);
  box.replaceChildren(svg);
}

window.addEventListener("hashchange", () => {
  const name = decodeURIComponent(location.hash.slice(1));
  if (name) select(name);
});

if (location.hash.length > 1) select(decodeURIComponent(location.hash.slice(1)));
loadJobs();
setInterval(loadJobs, 2000);
