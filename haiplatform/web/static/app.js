// HAI-Platform status page: polls the JSON API and redraws without reloading.
// Every user-supplied string (job names, commands, reasons, log lines) goes into the DOM through
// text nodes (el() below) and never through innerHTML, so "<script>" in a job name is shown as text;
// names, users, commands and reasons also pass through safe(), which shows control, bidi-override and
// invisible characters as \uXXXX escapes, so a name cannot reorder or hide the text around it.
"use strict";

const ACTIVE = ["queued", "running", "suspending", "suspended"];
const MAX_LOG_RANKS = 8;
let config = { poll_ms: 1500, log_tail_bytes: 8192, anonymous_read: true, page_size: 50, fs3: false };
let token = sessionStorage.getItem("hai-token") || "";
let timer = null;
let refreshing = false;

// -- DOM helpers -------------------------------------------------------------------------------
function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (k === "class") node.className = v;
    else if (k === "dataset") Object.assign(node.dataset, v);
    else if (k.startsWith("on")) node.addEventListener(k.slice(2), v);
    else node.setAttribute(k, String(v));
  }
  for (const c of children.flat()) {
    if (c === null || c === undefined) continue;
    node.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return node;
}
const $ = (id) => document.getElementById(id);

// C0/C1 controls, DEL, bidi embeddings/overrides/isolates and marks, zero-width and other invisible
// characters, line/paragraph separators, variation selectors and tag characters.
const UNSAFE = /[\u0000-\u001f\u007f-\u009f\u00ad\u034f\u061c\u115f\u1160\u17b4\u17b5\u180b-\u180f\u200b-\u200f\u2028-\u202e\u2060-\u206f\u3164\ufe00-\ufe0f\ufeff\uffa0\ufff0-\ufffb\u{e0000}-\u{e0fff}]/gu;
function safe(s) {
  return String(s ?? "").replace(UNSAFE, (c) => {
    const cp = c.codePointAt(0);
    return cp > 0xffff ? `\\u{${cp.toString(16)}}` : `\\u${cp.toString(16).padStart(4, "0")}`;
  });
}

function duration(s) {
  if (!s || s < 0) return "–";
  s = Math.floor(s);
  if (s < 60) return s + "s";
  if (s < 3600) return Math.floor(s / 60) + "m " + (s % 60) + "s";
  if (s < 86400) return Math.floor(s / 3600) + "h " + Math.floor((s % 3600) / 60) + "m";
  return Math.floor(s / 86400) + "d " + Math.floor((s % 86400) / 3600) + "h";
}
const clock = (t) => (t ? new Date(t * 1000).toLocaleTimeString() : "–");
const stamp = (t) => (t ? new Date(t * 1000).toLocaleString() : "–");

function notice(text, ok) {
  const n = $("notice");
  n.textContent = text;
  n.className = ok ? "notice ok" : "notice";
  n.hidden = !text;
}

// -- API ---------------------------------------------------------------------------------------
async function api(path, method) {
  const headers = {};
  if (token) headers["Authorization"] = "Bearer " + token;
  const resp = await fetch(path, { method: method || "GET", headers, cache: "no-store" });
  let body = null;
  try { body = await resp.json(); } catch (e) { body = { error: resp.statusText }; }
  if (!resp.ok) {
    const err = new Error((body && body.error) || resp.statusText);
    err.status = resp.status;
    throw err;
  }
  return body;
}

async function act(jobId, action) {
  try {
    const r = await api(`/api/jobs/${jobId}/${action}`, "POST");
    notice(`job ${jobId}: ${action} accepted, now ${r.job.state}`, true);
  } catch (e) {
    notice(`job ${jobId}: ${action} refused (HTTP ${e.status || "?"}): ${e.message}`);
  }
  refresh();
}

function actionButtons(job) {
  const out = [];
  if (["queued", "running", "suspending", "suspended"].includes(job.state))
    out.push(el("button", { class: "act-cancel", onclick: () => act(job.id, "cancel") }, "Cancel"));
  if (job.state === "queued" || job.state === "running")
    out.push(el("button", { class: "act-suspend", onclick: () => act(job.id, "suspend") }, "Suspend"));
  if (job.state === "suspended")
    out.push(el("button", { class: "act-resume", onclick: () => act(job.id, "resume") }, "Resume"));
  return out;
}

// -- overview ----------------------------------------------------------------------------------
// The job table's view: filters and page, sent to the server (which pages and counts).
const view = { state: "", user: "", name: "", offset: 0 };

function jobsQuery() {
  const q = new URLSearchParams({ limit: String(config.page_size || 50), offset: String(view.offset) });
  for (const k of ["state", "user", "name"]) if (view[k]) q.set(k, view[k]);
  return "/api/jobs?" + q.toString();
}

function bar(used, total, cls) {
  const fill = el("div", { class: "fill" });
  fill.style.width = `${total ? Math.min(100, (100 * used) / total).toFixed(1) : 0}%`; // CSSOM: allowed by the CSP
  return el("div", { class: `bar ${cls || ""}` }, fill);
}

// Past this many nodes the grid draws one small square per node (details in its tooltip).
const COMPACT_NODES = 48;

function nodeTitle(n) {
  return [`${safe(n.name)}: ${n.state}${n.reason ? ` (${safe(n.reason)})` : ""}`, `${n.slots_used}/${n.slots} GPUs`,
    ...n.jobs.map((j) => `#${j.id} ${safe(j.name)}`)].join("\n");
}

function renderNodes(data) {
  const compact = data.nodes.length > COMPACT_NODES;
  $("grid").className = compact ? "grid compact" : "grid";
  $("grid").replaceChildren(
    ...data.nodes.map((n) => {
      const attrs = { class: `node state-${n.state}`, dataset: { node: n.name, state: n.state, slotsUsed: n.slots_used } };
      if (compact) {
        const fill = el("div", { class: "use" });
        fill.style.height = `${n.slots ? Math.min(100, (100 * n.slots_used) / n.slots) : 0}%`;
        return el("div", { ...attrs, title: nodeTitle(n) }, fill);
      }
      return el("div", { ...attrs, title: safe(n.reason) || n.state },
        el("div", { class: "name" }, safe(n.name)),
        el("div", { class: "state" }, n.state + (n.reason ? ` · ${safe(n.reason)}` : "")),
        el("div", { class: "slots" }, `${n.slots_used}/${n.slots} GPUs`),
        bar(n.slots_used, n.slots, "on-dark"),
        n.jobs.map((j) => el("a", { class: "job", href: `#/jobs/${j.id}`, title: `#${j.id} ${safe(j.name)}` },
          `#${j.id} ${safe(j.name)}`)));
    })
  );
  const c = data.counts;
  const states = Object.keys(c).filter((k) => c[k]).map((k) => `${c[k]} ${k}`).join(" · ");
  $("node-counts").textContent = `${states} · ${data.slots.used}/${data.slots.total} GPUs in use`;
}

function renderJobs(data) {
  const rows = data.jobs.map((j) =>
    el("tr", { dataset: { jobId: j.id, state: j.state } },
      el("td", {}, el("a", { href: `#/jobs/${j.id}` }, String(j.id))),
      el("td", { class: "name clip", title: safe(j.name) }, safe(j.name)),
      el("td", { class: "clip", title: safe(j.user) }, safe(j.user)),
      el("td", {}, j.priority),
      el("td", {}, String(j.nodes)),
      el("td", {}, el("span", { class: `badge ${j.state}` }, j.state)),
      el("td", {}, duration(j.age_s)),
      el("td", {}, duration(j.running_s)),
      el("td", { class: "reason muted clip", title: safe(j.reason) },
        j.pending_reason ? `(${j.pending_reason}) ${safe(j.reason)}` : safe(j.reason)),
      el("td", {}, actionButtons(j))));
  $("jobs").tBodies[0].replaceChildren(...rows);
  const c = data.counts;
  const parts = ACTIVE.filter((s) => c[s] || s === "running" || s === "queued").map((s) => `${c[s]} ${s}`);
  const first = data.total ? data.offset + 1 : 0, last = data.offset + data.jobs.length;
  $("job-counts").textContent = `${parts.join(" · ")} · ${data.total} matching · ${first}–${last} shown`;
  const pages = Math.max(1, Math.ceil(data.total / data.limit));
  const page = Math.floor(data.offset / data.limit) + 1;
  $("page-info").textContent = `page ${page} of ${pages}`;
  $("page-first").disabled = $("page-prev").disabled = data.offset === 0;
  $("page-next").disabled = $("page-last").disabled = last >= data.total;
  $("pager").dataset.page = String(page);
  $("pager").dataset.pages = String(pages);
  $("pager").dataset.total = String(data.total);
  // Past the end (jobs finished or a filter narrowed the set): go to the last page that exists.
  if (data.offset > 0 && data.offset >= data.total) { view.offset = (pages - 1) * data.limit; return true; }
  return false;
}

function goPage(which) {
  const size = config.page_size || 50;
  const total = Number($("pager").dataset.total || 0);
  const lastOffset = Math.max(0, Math.ceil(total / size) - 1) * size;
  view.offset = { first: 0, prev: Math.max(0, view.offset - size), next: Math.min(lastOffset, view.offset + size),
                  last: lastOffset }[which];
  refresh();
}

let filterTimer = null;
function onFilter() {
  clearTimeout(filterTimer);
  filterTimer = setTimeout(() => {
    view.state = $("filter-state").value;
    view.user = $("filter-user").value.trim();
    view.name = $("filter-name").value;
    view.offset = 0;
    refresh();
  }, 250);
}

const human = (b) => {
  if (b === null || b === undefined) return "–";
  const u = ["B", "KiB", "MiB", "GiB", "TiB", "PiB"];
  let i = 0;
  while (b >= 1024 && i < u.length - 1) { b /= 1024; i++; }
  return `${b.toFixed(i ? 1 : 0)} ${u[i]}`;
};

function renderFs3(data) {
  const card = $("fs3-card");
  card.hidden = !data.configured;
  if (!data.configured) return;
  const body = $("fs3");
  $("fs3-where").textContent = `mgmtd ${safe(data.mgmtd)} · checked ${clock(data.checked_at)}`;
  if (!data.ok) {
    body.dataset.ok = "false";
    body.replaceChildren(el("p", { class: "bad" }, `fs3 unreachable: ${safe(data.error)}`),
      el("p", { class: "muted" }, data.last_ok_at ? `last answered at ${stamp(data.last_ok_at)}` : "never answered"));
    return;
  }
  body.dataset.ok = "true";
  const cap = data.capacity;
  const capLine = cap.error ? el("p", { class: "bad" }, `capacity unknown: ${safe(cap.error)}`)
    : el("div", { class: "cap" },
        el("div", {}, `${human(cap.used_bytes)} used of ${human(cap.total_bytes)} (${human(cap.free_bytes)} free) · `
          + `files ${human(cap.file_bytes)} · ${cap.inodes} inodes`),
        bar(cap.used_bytes, cap.total_bytes));
  const chips = Object.entries(data.states).filter(([, n]) => n)
    .map(([s, n]) => el("span", { class: `chip t-${s}`, dataset: { state: s } }, `${n} ${s}`));
  const repairs = data.repairs.length
    ? el("p", { id: "fs3-repairs" }, `resyncing: ${data.repairs.map((r) => `target ${r.target_id} (chain ${r.chain_id})`).join(", ")}`)
    : el("p", { id: "fs3-repairs", class: "muted" }, "no resync in progress");
  const byNode = new Map();
  for (const t of data.targets) (byNode.get(t.node_id) || byNode.set(t.node_id, []).get(t.node_id)).push(t);
  const rows = data.nodes.map((n) =>
    el("tr", { dataset: { node: n.node_id } },
      el("td", {}, String(n.node_id)),
      el("td", { class: "clip", title: safe(n.address) }, safe(n.address) + (n.alive ? "" : " (dead)")),
      el("td", {}, (byNode.get(n.node_id) || []).map((t) =>
        el("span", { class: `chip t-${t.state}`, title: `target ${t.target_id}, chain ${t.chain_id}: ${t.state}` +
          (t.chunks === null ? "" : `, ${t.chunks} chunks`) }, String(t.target_id)))),
      el("td", {}, n.disk_total_bytes === null ? "–"
        : `${human(n.disk_total_bytes - n.disk_free_bytes)} / ${human(n.disk_total_bytes)}`)));
  body.replaceChildren(capLine, el("div", { class: "chips" }, chips), repairs,
    el("table", { class: "jobs fs3-nodes" },
      el("thead", {}, el("tr", {}, el("th", {}, "node"), el("th", {}, "address"), el("th", {}, "targets"),
        el("th", {}, "disk used"))),
      el("tbody", {}, rows)));
}

// One time-series chart on a canvas: series = [{color, label, value(sample)}], yMax, yLabel(v).
function drawChart(canvas, data, series, yMax, yLabel) {
  const ratio = window.devicePixelRatio || 1;
  const w = canvas.clientWidth || 640, h = canvas.clientHeight || 180;
  if (canvas.width !== Math.round(w * ratio)) { canvas.width = Math.round(w * ratio); canvas.height = Math.round(h * ratio); }
  const g = canvas.getContext("2d");
  g.setTransform(ratio, 0, 0, ratio, 0, 0);
  g.clearRect(0, 0, w, h);
  const pad = { l: 44, r: 12, t: 10, b: 22 };
  const pw = w - pad.l - pad.r, ph = h - pad.t - pad.b;
  const s = data.samples;
  // The window grows with the history, from 2 to 15 minutes, so a young scheduler's plot is readable.
  const span = s.length ? data.now - s[0].t : 0;
  const win = Math.min(900, Math.max(120, Math.ceil(span / 60) * 60));
  const t1 = data.now, t0 = t1 - win;
  const x = (t) => pad.l + ((t - t0) / (t1 - t0)) * pw;
  const y = (v) => pad.t + ph - (Math.min(v, yMax) / yMax) * ph;
  g.strokeStyle = "#e6e8ee"; g.fillStyle = "#687083"; g.font = "11px sans-serif"; g.lineWidth = 1;
  for (let i = 0; i <= 4; i++) {
    const yy = pad.t + (ph * i) / 4;
    g.beginPath(); g.moveTo(pad.l, yy); g.lineTo(pad.l + pw, yy); g.stroke();
    g.textAlign = "right"; g.fillText(yLabel((yMax * (4 - i)) / 4), pad.l - 4, yy + 4);
  }
  g.textAlign = "center";
  const mins = win / 60, step = mins > 6 ? 5 : 1;
  for (let m = mins; m >= 0; m -= step) g.fillText(m === 0 ? "now" : `-${m}m`, x(t1 - m * 60), h - 6);
  for (const ser of series) {
    if (!s.length) break;
    g.strokeStyle = ser.color; g.lineWidth = 2; g.beginPath();
    s.forEach((p, i) => (i ? g.lineTo(x(p.t), y(ser.value(p))) : g.moveTo(x(p.t), y(ser.value(p)))));
    g.stroke();
  }
  return mins;
}

function drawCharts(data) {
  const s = data.samples;
  const last = s[s.length - 1] || {};
  const top = Math.max(4, ...s.map((p) => Math.max(p.queue_length, p.jobs_running)));
  // Four gridlines at round numbers: the step is 1, 2 or 5 times a power of ten.
  const mag = 10 ** Math.floor(Math.log10(top / 4));
  const qmax = 4 * mag * [1, 2, ...(mag >= 10 ? [2.5] : []), 5, 10].find((m) => 4 * mag * m >= top);
  const mins = drawChart($("plot-queue"), data, [
    { color: "#e0a100", value: (p) => p.queue_length },
    { color: "#2f6fd6", value: (p) => p.jobs_running },
  ], qmax, (v) => String(Math.round(v)));
  drawChart($("plot-util"), data, [
    { color: "#2f6fd6", value: (p) => (p.nodes_total ? (100 * p.nodes_busy) / p.nodes_total : 0) },
    { color: "#3fa34d", value: (p) => (p.slots_total ? (100 * p.slots_used) / p.slots_total : 0) },
  ], 100, (v) => `${Math.round(v)}%`);
  $("plot-window").textContent = `last ${mins} min · now ${last.queue_length ?? 0} queued, ${last.jobs_running ?? 0} running`;
  $("util-now").textContent = last.slots_total ? `now ${last.slots_used}/${last.slots_total} GPUs` : "";
}

// -- job page ----------------------------------------------------------------------------------
async function renderJobPage(jobId) {
  let data;
  try {
    data = await api(`/api/jobs/${jobId}`);
  } catch (e) {
    $("job-title").textContent = `Job ${jobId}: ${e.message}`;
    $("job-fields").replaceChildren();
    return;
  }
  const j = data.job;
  $("job-title").replaceChildren(`Job ${j.id}: `, el("span", { id: "job-name", class: "clip", title: safe(j.name) }, safe(j.name)), " ",
    el("span", { id: "job-state", class: `badge ${j.state}` }, j.state));
  $("job-actions").replaceChildren(...actionButtons(j));
  const fields = [
    ["user", `${safe(j.user)} (group ${safe(j.group)})`], ["command", el("code", {}, safe(j.command))],
    ["workdir", safe(j.workdir)], ["reason", safe(j.reason)], ["waiting for", j.pending_reason || "–"], ["priority", j.priority === j.base_priority ? j.priority : `${j.priority} (submitted ${j.base_priority})`],
    ["nodes", `${j.nodes} × ${j.ranks_per_node} ranks`], ["assigned", j.assigned_nodes.join(", ") || "–"],
    ["submitted", `${stamp(j.submitted_at)} (${duration(j.age_s)} ago)`], ["running for", duration(j.running_s)],
    ["runs", `${j.run_seq} (suspended ${j.suspend_count}×)`], ["exit code", String(j.exit_code)],
  ];
  $("job-fields").replaceChildren(...fields.flatMap(([k, v]) => [el("dt", {}, k), el("dd", {}, v)]));
  $("history").tBodies[0].replaceChildren(...j.history.map((t) =>
    el("tr", {}, el("td", {}, stamp(t.at)), el("td", {}, t.from_state || "–"), el("td", {}, t.to_state),
      el("td", { class: "reason" }, safe(t.reason)))));
  await renderLogs(j);
}

async function renderLogs(j) {
  const box = $("logs");
  if (!j.assigned_nodes.length) {
    $("log-note").textContent = "";
    box.replaceChildren(el("p", { class: "muted" }, "not started yet: no logs"));
    return;
  }
  const n = Math.min(j.world_size, MAX_LOG_RANKS);
  $("log-note").textContent = `last ${config.log_tail_bytes} bytes per rank` +
    (j.world_size > n ? `; ranks 0–${n - 1} of ${j.world_size}` : "");
  const tails = await Promise.all([...Array(n).keys()].map((r) =>
    api(`/api/jobs/${j.id}/logs?rank=${r}`).then((x) => ({ r, x }), (e) => ({ r, e }))));
  for (const { r, x, e } of tails) {
    let div = box.querySelector(`[data-rank="${r}"]`);
    if (!div || box.dataset.job !== String(j.id)) {
      if (box.dataset.job !== String(j.id)) { box.replaceChildren(); box.dataset.job = String(j.id); }
      div = el("div", { class: "rank", dataset: { rank: r } }, el("h3", {}), el("pre", { class: "log" }));
      box.append(div);
    }
    const pre = div.querySelector("pre");
    const atBottom = pre.scrollTop + pre.clientHeight >= pre.scrollHeight - 4;
    if (e) {
      div.querySelector("h3").textContent = `rank ${r}`;
      pre.textContent = e.status === 401 ? "sign in with the job owner's (or an admin's) token to read its logs"
        : `cannot read log (HTTP ${e.status || "?"}): ${e.message}`;
    } else {
      div.querySelector("h3").textContent = `rank ${r} on ${x.node}` + (x.start_offset > 0 ? " (tail)" : "");
      pre.textContent = x.text;
    }
    if (atBottom) pre.scrollTop = pre.scrollHeight;
  }
}

// -- loop --------------------------------------------------------------------------------------
function route() {
  const m = location.hash.match(/^#\/jobs\/(\d+)$/);
  return m ? { page: "job", id: Number(m[1]) } : { page: "overview" };
}

async function refresh() {
  if (refreshing) return;
  refreshing = true;
  clearTimeout(timer);
  const r = route();
  $("overview").hidden = r.page !== "overview";
  $("jobpage").hidden = r.page !== "job";
  try {
    if (r.page === "overview") {
      const [nodes, jobs, util, fs3] = await Promise.all([
        api("/api/nodes"), api(jobsQuery()), api("/api/utilization?window_s=900"),
        config.fs3 ? api("/api/fs3") : Promise.resolve({ configured: false })]);
      renderNodes(nodes);
      if (renderJobs(jobs)) renderJobs(await api(jobsQuery()));
      drawCharts(util);
      renderFs3(fs3);
    } else {
      await renderJobPage(r.id);
    }
    $("conn").textContent = `updated ${new Date().toLocaleTimeString()}`;
    $("conn").className = "conn";
  } catch (e) {
    $("conn").textContent = `update failed: ${e.message}`;
    $("conn").className = "conn bad";
  } finally {
    refreshing = false;
    timer = setTimeout(refresh, config.poll_ms);
  }
}

async function signIn(newToken) {
  token = newToken;
  if (token) sessionStorage.setItem("hai-token", token); else sessionStorage.removeItem("hai-token");
  $("signout").hidden = !token;
  if (!token) { $("whoami").textContent = "anonymous"; notice(""); refresh(); return; }
  try {
    const me = await api("/api/whoami");
    $("whoami").textContent = `${me.user}${me.admin ? " (admin)" : ""}`;
    notice("");
  } catch (e) {
    $("whoami").textContent = "anonymous";
    notice(`sign-in failed: ${e.message}`);
    token = "";
    sessionStorage.removeItem("hai-token");
    $("signout").hidden = true;
  }
  refresh();
}

async function main() {
  try { config = await api("/api/config"); } catch (e) { /* keep defaults */ }
  $("login").addEventListener("submit", (ev) => { ev.preventDefault(); signIn($("token").value.trim()); $("token").value = ""; });
  $("signout").addEventListener("click", () => signIn(""));
  for (const id of ["filter-state", "filter-user", "filter-name"]) $(id).addEventListener("input", onFilter);
  $("filters").addEventListener("submit", (ev) => ev.preventDefault());
  for (const which of ["first", "prev", "next", "last"]) $(`page-${which}`).addEventListener("click", () => goPage(which));
  window.addEventListener("hashchange", () => { $("logs").replaceChildren(); delete $("logs").dataset.job; notice(""); refresh(); });
  window.addEventListener("resize", refresh);
  if (token) await signIn(token); else refresh();
}

document.addEventListener("DOMContentLoaded", main);
