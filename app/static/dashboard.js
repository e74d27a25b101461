// edgeml dashboard: plain JS + canvas, no build step, no libraries.
// Live alerts come from /alerts/stream (Server-Sent Events); the fleet, device list and the
// selected device's windows are polled from the analytics JSON views.
"use strict";

const POLL_MS = 5000;
const MAX_ALERTS = 100;
const METRIC_COLORS = ["#2563eb", "#16a34a", "#9333ea", "#d97706", "#0891b2", "#db2777"];
const state = { device: null, window: "tumbling", alerts: new Map() };

const $ = (id) => document.getElementById(id);
const fmt = (x, digits = 2) => (x === null || x === undefined ? "–" : Number(x).toFixed(digits));
const pct = (x) => (x === null || x === undefined ? "–" : (100 * x).toFixed(2) + " %");
const time = (ts) => (ts ? new Date(ts * 1000).toISOString().slice(11, 19) + "Z" : "–");
const date = (ts) => (ts ? new Date(ts * 1000).toISOString().replace("T", " ").slice(0, 19) : "–");

async function getJson(path) {
  const response = await fetch(path, { credentials: "same-origin", cache: "no-store" });
  if (!response.ok) throw new Error(path + ": HTTP " + response.status);
  return response.json();
}

// --- live alerts -------------------------------------------------------------------------
function renderAlert(alert) {
  const id = alert.alert_id + ":" + alert.state;
  if (state.alerts.has(id)) return;
  const li = document.createElement("li");
  li.id = "alert-" + id.replace(/[^a-zA-Z0-9_-]/g, "_");
  li.className = "alert sev-" + alert.severity + " state-" + alert.state;
  li.dataset.alertId = alert.alert_id;
  li.dataset.device = alert.device_id;
  li.dataset.severity = alert.severity;
  li.dataset.state = alert.state;
  li.dataset.ts = String(alert.ts);
  const drivers = (alert.drivers || []).slice(0, 3)
    .map((d) => d.metric + "." + d.feature + " z=" + fmt(d.zscore, 1)).join(", ");
  li.innerHTML =
    '<span class="sev"></span> <b class="device"></b> <span class="what"></span>' +
    '<div class="meta"></div>';
  li.querySelector(".sev").textContent = alert.severity + " " + alert.state;
  li.querySelector(".device").textContent = alert.device_id;
  li.querySelector(".what").textContent = "score " + fmt(alert.score, 3) + " > " + fmt(alert.threshold, 3);
  li.querySelector(".meta").textContent =
    date(alert.ts) + (alert.site ? " · " + alert.site : "") + (drivers ? " · " + drivers : "");
  li.addEventListener("click", () => selectDevice(alert.device_id));
  state.alerts.set(id, li);
  const list = $("alerts");
  // newest event time on top (alerts of several partitions arrive interleaved)
  const after = Array.from(list.children).find((other) => Number(other.dataset.ts) <= alert.ts);
  list.insertBefore(li, after || null);
  while (list.children.length > MAX_ALERTS) {
    const last = list.lastChild;
    state.alerts.forEach((node, key) => { if (node === last) state.alerts.delete(key); });
    list.removeChild(last);
  }
  $("alert-count").textContent = String(list.children.length);
  $("alerts-empty").hidden = true;
  document.body.dataset.alerts = String(list.children.length);
}

function connectAlerts() {
  const source = new EventSource("/alerts/stream");
  source.onopen = () => { $("stream").textContent = "alerts: live"; $("stream").className = "badge ok"; };
  source.onerror = () => { $("stream").textContent = "alerts: reconnecting…"; $("stream").className = "badge bad"; };
  source.addEventListener("alert", (event) => renderAlert(JSON.parse(event.data)));
}

// --- polled views ------------------------------------------------------------------------
async function refreshHealth() {
  try {
    const response = await fetch("/health", { cache: "no-store" });
    const health = await response.json();
    $("health").textContent = health.state + " · lag " + health.lag.total;
    $("health").className = "badge " + (health.status === "ok" ? "ok" : "bad");
  } catch (error) {
    $("health").textContent = "worker unreachable";
    $("health").className = "badge bad";
  }
}

async function refreshFleet() {
  try {
    const fleet = await getJson("/analytics/fleet");
    const t = fleet.totals;
    if (!t) return;
    $("fleet-count").textContent = t.count.toLocaleString();
    $("fleet-anomaly-rate").textContent = pct(t.anomaly_rate);
    $("fleet-alerts").textContent = t.alerts.critical + " crit · " + t.alerts.warning + " warn · " + t.alerts.info + " info";
    $("fleet-dlq").textContent = t.dead_letters.toLocaleString();
    $("fleet-late").textContent = t.late.toLocaleString();
  } catch (error) { /* keep the last numbers */ }
}

async function refreshDevices() {
  let listing;
  try { listing = await getJson("/analytics/devices"); } catch (error) { return; }
  $("fleet-devices").textContent = String(listing.count);
  const body = document.querySelector("#devices tbody");
  body.textContent = "";
  const select = $("device-select");
  const known = new Set(Array.from(select.options).map((o) => o.value));
  for (const device of listing.devices) {
    const t = device.totals;
    const row = document.createElement("tr");
    row.dataset.device = device.device_id;
    if (device.device_id === state.device) row.className = "selected";
    for (const cell of [device.device_id, device.site || "–", device.device_type || "–",
      t.count.toLocaleString(), pct(t.anomaly_rate),
      t.alerts.critical + t.alerts.warning + t.alerts.info, t.dead_letters, date(device.watermark)]) {
      const td = document.createElement("td");
      td.textContent = String(cell);
      row.appendChild(td);
    }
    row.addEventListener("click", () => selectDevice(device.device_id));
    body.appendChild(row);
    if (!known.has(device.device_id)) select.add(new Option(device.device_id, device.device_id));
  }
  if (!state.device && listing.devices.length) selectDevice(listing.devices[0].device_id);
}

function selectDevice(id) {
  state.device = id;
  $("device-select").value = id;
  document.querySelectorAll("#devices tbody tr").forEach((tr) => {
    tr.className = tr.dataset.device === id ? "selected" : "";
  });
  refreshDevice();
}

async function refreshDevice() {
  if (!state.device) return;
  let view;
  try {
    view = await getJson("/analytics/devices/" + encodeURIComponent(state.device) +
      "?window=" + state.window + "&last=60");
  } catch (error) { $("device-summary").textContent = String(error); return; }
  const t = view.totals;
  $("device-summary").textContent = view.device_id + " · " + (view.site || "no site") + " · " +
    (view.device_type || "") + " · " + t.count + " readings · anomaly rate " + pct(t.anomaly_rate) +
    " · " + view.window.kind + " " + view.window.size_s + " s windows";
  drawCharts(view.windows);
}

// --- charts (canvas) ---------------------------------------------------------------------
function chartBox(id, title) {
  let box = document.getElementById("chart-" + id);
  if (!box) {
    box = document.createElement("div");
    box.className = "chart";
    box.id = "chart-" + id;
    box.innerHTML = "<h3></h3><canvas></canvas>";
    $("charts").appendChild(box);
  }
  box.querySelector("h3").textContent = title;
  return box.querySelector("canvas");
}

function drawSeries(canvas, points, color, band) {
  const ratio = window.devicePixelRatio || 1;
  const width = canvas.clientWidth || 400, height = canvas.clientHeight || 150;
  canvas.width = width * ratio; canvas.height = height * ratio;
  const ctx = canvas.getContext("2d");
  ctx.scale(ratio, ratio);
  ctx.clearRect(0, 0, width, height);
  if (!points.length) return;
  const pad = { l: 48, r: 8, t: 8, b: 18 };
  const xs = points.map((p) => p.x);
  const lows = points.map((p) => (band ? p.lo : p.y)), highs = points.map((p) => (band ? p.hi : p.y));
  let x0 = Math.min(...xs), x1 = Math.max(...xs);
  let y0 = Math.min(...lows), y1 = Math.max(...highs);
  if (x1 === x0) x1 = x0 + 1;
  if (y1 === y0) { y0 -= 1; y1 += 1; }
  const X = (x) => pad.l + ((x - x0) / (x1 - x0)) * (width - pad.l - pad.r);
  const Y = (y) => height - pad.b - ((y - y0) / (y1 - y0)) * (height - pad.t - pad.b);
  ctx.strokeStyle = "#e3e6eb"; ctx.fillStyle = "#6b7280"; ctx.font = "10px system-ui";
  for (const y of [y0, (y0 + y1) / 2, y1]) {
    ctx.beginPath(); ctx.moveTo(pad.l, Y(y)); ctx.lineTo(width - pad.r, Y(y)); ctx.stroke();
    ctx.fillText(fmt(y, Math.abs(y1 - y0) < 1 ? 3 : 1), 2, Y(y) + 3);
  }
  ctx.fillText(time(x0), pad.l, height - 4);
  ctx.fillText(time(x1), width - pad.r - 50, height - 4);
  if (band) {
    ctx.fillStyle = color + "22";
    ctx.beginPath();
    points.forEach((p, i) => (i ? ctx.lineTo(X(p.x), Y(p.hi)) : ctx.moveTo(X(p.x), Y(p.hi))));
    for (let i = points.length - 1; i >= 0; i--) ctx.lineTo(X(points[i].x), Y(points[i].lo));
    ctx.closePath(); ctx.fill();
  }
  ctx.strokeStyle = color; ctx.lineWidth = 1.5; ctx.beginPath();
  points.forEach((p, i) => (i ? ctx.lineTo(X(p.x), Y(p.y)) : ctx.moveTo(X(p.x), Y(p.y))));
  ctx.stroke();
}

function drawCharts(windows) {
  const names = new Set();
  windows.forEach((w) => Object.keys(w.metrics).forEach((name) => names.add(name)));
  Array.from(names).sort().forEach((name, i) => {
    const points = windows.filter((w) => w.metrics[name]).map((w) => ({
      x: w.start, y: w.metrics[name].mean, lo: w.metrics[name].min, hi: w.metrics[name].max,
    }));
    drawSeries(chartBox(name, name + " — mean, min–max"), points, METRIC_COLORS[i % METRIC_COLORS.length], true);
  });
  drawSeries(chartBox("count", "readings per window"),
    windows.map((w) => ({ x: w.start, y: w.count })), "#374151", false);
  drawSeries(chartBox("anomaly-rate", "anomaly rate"),
    windows.map((w) => ({ x: w.start, y: w.anomaly_rate })), "#dc2626", false);
}

// --- start -------------------------------------------------------------------------------
$("device-select").addEventListener("change", (e) => selectDevice(e.target.value));
$("window-select").addEventListener("change", (e) => { state.window = e.target.value; refreshDevice(); });
connectAlerts();
function refreshAll() { refreshHealth(); refreshFleet(); refreshDevices(); refreshDevice(); }
refreshAll();
setInterval(refreshAll, POLL_MS);
