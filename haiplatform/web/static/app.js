// HAI-Platform status page: polls the JSON API and redraws without reloading.
// Every user-supplied string (job names, commands, reasons, log lines) goes into the DOM through
// text nodes (el() below) and never through innerHTML, so "<script>" in a job name is shown as text.
"use strict";

const ACTIVE = ["queued", "running", "suspending", "suspended"];
const MAX_LOG_RANKS = 8;
let config = { poll_ms: 1500, log_tail_bytes: 8192, anonymous_read: true };
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
function renderNodes(data) {
  $("grid").replaceChildren(
    ...data.nodes.map((n) =>
      el("div", { class: `node state-${n.state}`, dataset: { node: n.name, state: n.state },
                  title: n.reason || n.state },
        el("div", { class: "name" }, n.name),
        el("div", { class: "state" }, n.state + (n.reason ? ` · ${n.reason}` : "")),
        n.jobs.map((j) => el("a", { class: "job", href: `#/jobs/${j.id}` }, `#${j.id} ${j.name}`))))
  );
  const c = data.counts;
  $("node-counts").textContent = Object.keys(c).filter((k) => c[k]).map((k) => `${c[k]} ${k}`).join(" · ");
}

function renderJobs(data) {
  const rows = data.jobs.map((j) =>
    el("tr", { dataset: { jobId: j.id, state: j.state } },
      el("td", {}, el("a", { href: `#/jobs/${j.id}` }, String(j.id))),
      el("td", { class: "name" }, j.name),
      el("td", {}, j.user),
      el("td", {}, j.priority),
      el("td", {}, String(j.nodes)),
      el("td", {}, el("span", { class: `badge ${j.state}` }, j.state)),
      el("td", {}, duration(j.age_s)),
      el("td", {}, duration(j.running_s)),
      el("td", { class: "reason muted" }, j.reason),
      el("td", {}, actionButtons(j))));
  $("jobs").tBodies[0].replaceChildren(...rows);
  const active = data.jobs.filter((j) => ACTIVE.includes(j.state));
  $("job-counts").textContent =
    `${active.filter((j) => j.state === "running").length} running · ` +
    `${active.filter((j) => j.state === "queued").length} queued · ${data.jobs.length} shown`;
}

function drawPlot(data) {
  const canvas = $("plot");
  const ratio = window.devicePixelRatio || 1;
  const w = canvas.clientWidth || 640, h = canvas.clientHeight || 220;
  if (canvas.width !== Math.round(w * ratio)) { canvas.width = Math.round(w * ratio); canvas.height = Math.round(h * ratio); }
  const g = canvas.getContext("2d");
  g.setTransform(ratio, 0, 0, ratio, 0, 0);
  g.clearRect(0, 0, w, h);
  const pad = { l: 40, r: 40, t: 10, b: 22 };
  const pw = w - pad.l - pad.r, ph = h - pad.t - pad.b;
  const s = data.samples;
  // The window grows with the history, from 2 to 15 minutes, so a young scheduler's plot is readable.
  const span = s.length ? data.now - s[0].t : 0;
  const win = Math.min(900, Math.max(120, Math.ceil(span / 60) * 60));
  const t1 = data.now, t0 = t1 - win;
  const qmax = Math.max(4, ...s.map((x) => x.queue_length));
  const x = (t) => pad.l + ((t - t0) / (t1 - t0)) * pw;
  const yU = (u) => pad.t + ph - u * ph;
  const yQ = (q) => pad.t + ph - (q / qmax) * ph;
  g.strokeStyle = "#e6e8ee"; g.fillStyle = "#687083"; g.font = "11px sans-serif"; g.lineWidth = 1;
  for (let i = 0; i <= 4; i++) {
    const y = pad.t + (ph * i) / 4;
    g.beginPath(); g.moveTo(pad.l, y); g.lineTo(pad.l + pw, y); g.stroke();
    g.textAlign = "right"; g.fillText(`${100 - 25 * i}%`, pad.l - 4, y + 4);
    g.textAlign = "left"; g.fillText(String(Math.round((qmax * (4 - i)) / 4)), pad.l + pw + 4, y + 4);
  }
  g.textAlign = "center";
  const mins = win / 60, step = mins > 6 ? 5 : 1;
  for (let m = mins; m >= 0; m -= step) g.fillText(m === 0 ? "now" : `-${m}m`, x(t1 - m * 60), h - 6);
  $("plot-window").textContent = `last ${mins} min`;
  const line = (color, yOf) => {
    g.strokeStyle = color; g.lineWidth = 2; g.beginPath();
    s.forEach((p, i) => (i ? g.lineTo(x(p.t), yOf(p)) : g.moveTo(x(p.t), yOf(p))));
    g.stroke();
  };
  if (s.length) {
    line("#2f6fd6", (p) => yU(p.nodes_total ? p.nodes_busy / p.nodes_total : 0));
    line("#e0a100", (p) => yQ(p.queue_length));
  }
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
  $("job-title").replaceChildren(`Job ${j.id}: `, el("span", { id: "job-name" }, j.name), " ",
    el("span", { id: "job-state", class: `badge ${j.state}` }, j.state));
  $("job-actions").replaceChildren(...actionButtons(j));
  const fields = [
    ["user", `${j.user} (group ${j.group})`], ["command", el("code", {}, j.command)], ["workdir", j.workdir],
    ["reason", j.reason], ["priority", j.priority === j.base_priority ? j.priority : `${j.priority} (submitted ${j.base_priority})`],
    ["nodes", `${j.nodes} × ${j.ranks_per_node} ranks`], ["assigned", j.assigned_nodes.join(", ") || "–"],
    ["submitted", `${stamp(j.submitted_at)} (${duration(j.age_s)} ago)`], ["running for", duration(j.running_s)],
    ["runs", `${j.run_seq} (suspended ${j.suspend_count}×)`], ["exit code", String(j.exit_code)],
  ];
  $("job-fields").replaceChildren(...fields.flatMap(([k, v]) => [el("dt", {}, k), el("dd", {}, v)]));
  $("history").tBodies[0].replaceChildren(...j.history.map((t) =>
    el("tr", {}, el("td", {}, stamp(t.at)), el("td", {}, t.from_state || "–"), el("td", {}, t.to_state),
      el("td", { class: "reason" }, t.reason))));
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
      const [nodes, jobs, util] = await Promise.all([
        api("/api/nodes"), api("/api/jobs?limit=100"), api("/api/utilization?window_s=900")]);
      renderNodes(nodes);
      renderJobs(jobs);
      drawPlot(util);
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
  window.addEventListener("hashchange", () => { $("logs").replaceChildren(); delete $("logs").dataset.job; notice(""); refresh(); });
  window.addEventListener("resize", refresh);
  if (token) await signIn(token); else refresh();
}

document.addEventListener("DOMContentLoaded", main);
