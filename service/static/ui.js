// qldm dashboard: the overview of runs and jobs, a run's page, a job's page.
// It reads the /v1 API with the key kept in sessionStorage (X-API-Key), so it sees what the
// key's tenant sees; it polls every POLL_MS and redraws, without reloading the page.
"use strict";

const POLL_MS = 2000;
const KEY = "qldm_api_key";
const STATES = ["queued", "running", "succeeded", "failed", "cancelled"];

// ------------------------------------------------------------------ small helpers

function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === null || v === undefined) continue;
    if (k === "class") node.className = v;
    else if (k.startsWith("on")) node.addEventListener(k.slice(2), v);
    else node.setAttribute(k, v);
  }
  for (const c of children.flat(Infinity)) {
    if (c === null || c === undefined) continue;
    node.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return node;
}

function svgEl(tag, attrs) {
  const node = document.createElementNS("http://www.w3.org/2000/svg", tag);
  for (const [k, v] of Object.entries(attrs || {})) node.setAttribute(k, v);
  return node;
}

function when(iso) {
  if (!iso) return "—";
  const d = new Date(iso);
  return d.toLocaleString(undefined, { hour12: false });
}

function seconds(a, b) {
  if (!a) return null;
  const end = b ? new Date(b) : new Date();
  return (end - new Date(a)) / 1000;
}

function dur(s) {
  if (s === null || s === undefined || Number.isNaN(s)) return "—";
  if (s < 1) return `${(s * 1000).toFixed(0)} ms`;
  if (s < 120) return `${s.toFixed(1)} s`;
  return `${(s / 60).toFixed(1)} min`;
}

function num(x, digits = 4) {
  if (x === null || x === undefined) return "—";
  if (typeof x !== "number") return String(x);
  return Math.abs(x) >= 1e4 || (Math.abs(x) < 1e-3 && x !== 0)
    ? x.toExponential(2) : x.toFixed(digits).replace(/\.?0+$/, "");
}

function badge(status) {
  return el("span", { class: `badge s-${status}`, "data-status": status }, status);
}

function short(id) {
  return id ? id.slice(0, 8) : "—";
}

// ------------------------------------------------------------------ the API

class ApiError extends Error {
  constructor(status, body) {
    const e = (body && body.error) || {};
    super(e.message || `HTTP ${status}`);
    this.status = status;
    this.code = e.code || String(status);
  }
}

async function api(path, options) {
  const headers = { Accept: "application/json" };
  const key = sessionStorage.getItem(KEY);
  if (key) headers["X-API-Key"] = key;
  const response = await fetch(path, { ...(options || {}), headers });
  let body = null;
  try {
    body = await response.json();
  } catch (_) {
    body = null;
  }
  if (!response.ok) throw new ApiError(response.status, body);
  return body;
}

// ------------------------------------------------------------------ the key form

function showKeyState() {
  const has = Boolean(sessionStorage.getItem(KEY));
  document.getElementById("key-state").textContent = has ? "key set" : "no key";
}

function setupKeyForm() {
  const form = document.getElementById("key-form");
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    const input = document.getElementById("key-input");
    const value = input.value.trim();
    if (value) sessionStorage.setItem(KEY, value);
    input.value = "";
    showKeyState();
    refresh(true);
  });
  document.getElementById("key-forget").addEventListener("click", () => {
    sessionStorage.removeItem(KEY);
    showKeyState();
    refresh(true);
  });
  showKeyState();
}

// ------------------------------------------------------------------ the loss chart

function lossChart(points, { width = 640, height = 220, small = false } = {}) {
  const pad = small ? { l: 2, r: 2, t: 2, b: 2 } : { l: 56, r: 12, t: 12, b: 28 };
  const svg = svgEl("svg", {
    viewBox: `0 0 ${width} ${height}`, width, height, class: small ? "spark" : "chart",
    role: "img", "aria-label": `training loss, ${points.length} steps`,
  });
  svg.dataset.points = String(points.length);
  if (points.length === 0) {
    const t = svgEl("text", { x: width / 2, y: height / 2, "text-anchor": "middle", class: "axis" });
    t.textContent = small ? "—" : "no losses reported yet";
    svg.append(t);
    return svg;
  }
  const xs = points.map((p) => p.step);
  const ys = points.map((p) => p.loss);
  const x0 = Math.min(...xs), x1 = Math.max(...xs, x0 + 1);
  let y0 = Math.min(...ys), y1 = Math.max(...ys);
  if (y1 === y0) { y0 -= 0.5; y1 += 0.5; }
  const X = (x) => pad.l + ((x - x0) / (x1 - x0)) * (width - pad.l - pad.r);
  const Y = (y) => pad.t + (1 - (y - y0) / (y1 - y0)) * (height - pad.t - pad.b);
  if (!small) {
    for (const f of [0, 0.5, 1]) {
      const y = y0 + f * (y1 - y0);
      svg.append(svgEl("line", { x1: pad.l, x2: width - pad.r, y1: Y(y), y2: Y(y), class: "grid" }));
      const t = svgEl("text", { x: pad.l - 6, y: Y(y) + 4, "text-anchor": "end", class: "axis" });
      t.textContent = num(y, 3);
      svg.append(t);
    }
    for (const [x, anchor] of [[x0, "start"], [x1, "end"]]) {
      const t = svgEl("text", { x: X(x), y: height - 8, "text-anchor": anchor, class: "axis" });
      t.textContent = `step ${x}`;
      svg.append(t);
    }
  }
  const d = points.map((p, i) => `${i ? "L" : "M"}${X(p.step).toFixed(1)},${Y(p.loss).toFixed(1)}`);
  svg.append(svgEl("path", { d: d.join(""), class: "line" }));
  return svg;
}

// Losses per run, fetched incrementally (?after=last step).
const losses = new Map();

async function runLosses(runId) {
  const known = losses.get(runId) || [];
  let after = known.length ? known[known.length - 1].step : -1;
  for (;;) {
    const page = await api(`/v1/runs/${encodeURIComponent(runId)}/losses?after=${after}`);
    if (!page.data.length) break;
    known.push(...page.data);
    after = page.data[page.data.length - 1].step;
    if (page.data.length < 1000) break;
  }
  losses.set(runId, known);
  return known;
}

// ------------------------------------------------------------------ tables

function countsCell(counts) {
  const parts = STATES.filter((s) => counts && counts[s]).map((s) =>
    el("span", { class: `count s-${s}`, title: s }, `${counts[s]} ${s}`));
  return parts.length ? parts : ["no jobs"];
}

function costText(run) {
  // cost fields appear when the server reports them (runtime usage on ibm: backends)
  if (run.usage_s !== undefined && run.usage_s !== null) return `${num(run.usage_s, 2)} s QPU reported`;
  const c = run.cost || run.usage;
  if (!c) return run.backend.startsWith("ibm:") ? "not reported yet" : "free (simulator)";
  if (typeof c === "number") return `${num(c, 1)} s QPU`;
  if (c.quantum_seconds !== undefined) return `${num(c.quantum_seconds, 1)} s QPU`;
  return JSON.stringify(c);
}

function runsTable(runs, sparks) {
  if (!runs.length) return el("p", { class: "muted" }, "No runs yet. A training client opens one (qldm train --url, qldm demo).");
  return el("table", { id: "runs" },
    el("thead", {}, el("tr", {}, ["run", "state", "backend", "execution mode", "jobs", "cost so far", "loss", "opened"].map((h) => el("th", {}, h)))),
    el("tbody", {}, runs.map((r) => el("tr", { "data-run": r.id },
      el("td", {}, el("a", { href: `/ui/runs/${r.id}` }, r.name), el("div", { class: "muted mono" }, short(r.id))),
      el("td", {}, badge(r.status)),
      el("td", { class: "mono" }, r.backend),
      el("td", {}, r.execution_mode || (r.session_id ? "session" : "—")),
      el("td", {}, countsCell(r.job_counts)),
      el("td", {}, costText(r)),
      el("td", {}, sparks.get(r.id) || "—"),
      el("td", {}, when(r.created_at)),
    ))));
}

function jobsTable(jobs, id = "jobs") {
  if (!jobs.length) return el("p", { class: "muted" }, "No jobs.");
  return el("table", { id },
    el("thead", {}, el("tr", {}, ["job", "state", "task", "backend", "run", "submitted", "waited", "ran", "attempts", "progress"].map((h) => el("th", {}, h)))),
    el("tbody", {}, jobs.map((j) => el("tr", { "data-job": j.id, "data-status": j.status },
      el("td", { class: "mono" }, el("a", { href: `/ui/jobs/${j.id}` }, short(j.id))),
      el("td", {}, badge(j.status), j.runtime_status ? el("div", { class: "muted" }, `runtime: ${j.runtime_status}`) : null,
        j.cancel_requested && j.status === "running" ? el("div", { class: "muted" }, "cancel requested") : null),
      el("td", {}, j.task),
      el("td", { class: "mono" }, j.backend),
      el("td", { class: "mono" }, j.run_id ? el("a", { href: `/ui/runs/${j.run_id}` }, short(j.run_id)) : "—"),
      el("td", {}, when(j.created_at)),
      el("td", {}, dur(seconds(j.created_at, j.started_at || j.finished_at))),
      el("td", {}, j.started_at ? dur(seconds(j.started_at, j.finished_at)) : "—"),
      el("td", {}, String(j.attempts)),
      el("td", {}, `${Math.round(100 * (j.progress || 0))}%`),
    ))));
}

// ------------------------------------------------------------------ pages

async function overview() {
  const [runs, jobs] = await Promise.all([api("/v1/runs?limit=20"), api("/v1/jobs?limit=50")]);
  const sparks = new Map();
  await Promise.all(runs.data.map(async (r) => {
    sparks.set(r.id, lossChart(await runLosses(r.id), { width: 160, height: 36, small: true }));
  }));
  return [
    el("h2", {}, `Runs `, el("span", { class: "muted" }, `(${runs.count})`)),
    runsTable(runs.data, sparks),
    el("h2", {}, `Jobs `, el("span", { class: "muted" }, `(${jobs.count}, newest 50)`)),
    jobsTable(jobs.data),
  ];
}

function facts(rows) {
  return el("dl", { class: "facts" }, rows.filter((r) => r).map(([k, v]) => [el("dt", {}, k), el("dd", {}, v)]));
}

async function runPage(runId) {
  const id = encodeURIComponent(runId);
  const [run, jobs, points] = await Promise.all([
    api(`/v1/runs/${id}`), api(`/v1/jobs?run_id=${id}&limit=100`), runLosses(runId),
  ]);
  const last = points.length ? points[points.length - 1] : null;
  return [
    el("p", {}, el("a", { href: "/ui" }, "← all runs")),
    el("h2", { id: "run-title" }, `Run ${run.name} `, badge(run.status)),
    facts([
      ["id", el("span", { class: "mono" }, run.id)],
      ["backend", el("span", { class: "mono" }, run.backend)],
      ["execution mode", run.execution_mode || (run.session_id ? "session" : "—")],
      run.session_id ? ["runtime session", el("span", { class: "mono" }, run.session_id)] : null,
      ["jobs", countsCell(run.job_counts)],
      ["cost so far", costText(run)],
      ["opened", when(run.created_at)],
      ["closed", when(run.closed_at)],
      ["latest loss", last ? `${num(last.loss)} at step ${last.step}` : "—"],
    ]),
    el("h3", {}, "Training loss ", el("span", { class: "muted", id: "loss-count" }, `(${points.length} steps reported)`)),
    el("div", { id: "loss-chart" }, lossChart(points)),
    el("h3", {}, `Jobs `, el("span", { class: "muted" }, `(${jobs.count}, newest 100)`)),
    jobsTable(jobs.data, "run-jobs"),
  ];
}

function valuesTable(meta, result) {
  // raw (before readout mitigation / noise-floor handling) against the returned values
  const raw = meta.raw_values, values = result.values;
  if (!raw || !values) return null;
  const rows = [];
  const k = 0;
  for (let b = 0; b < Math.min(values[k].length, 6); b++) {
    for (let o = 0; o < Math.min(values[k][b].length, 4); o++) {
      const r = raw[k][b][o], m = values[k][b][o];
      rows.push(el("tr", {}, el("td", {}, `sample ${b}`), el("td", {}, `output ${o}`),
        el("td", {}, num(r)), el("td", {}, num(m)), el("td", {}, num(m - r))));
    }
  }
  return [
    el("h3", {}, "Mitigation: raw against mitigated values"),
    el("table", { id: "mitigation" },
      el("thead", {}, el("tr", {}, ["sample", "output", "raw", "mitigated", "difference"].map((h) => el("th", {}, h)))),
      el("tbody", {}, rows)),
  ];
}

function jobCost(job, meta) {
  // runtime jobs: the estimate made before submitting (meta.cost) and the runtime's reported
  // usage (meta.usage_s, quantum seconds); simulators cost nothing
  const parts = [];
  if (meta.usage_s !== undefined && meta.usage_s !== null) parts.push(`${num(meta.usage_s, 2)} s QPU reported`);
  if (meta.cost && meta.cost.qpu_seconds !== undefined) {
    parts.push(`estimated ${num(meta.cost.qpu_seconds, 2)} s QPU (${meta.cost.executions} executions, ${meta.cost.submissions} submission(s))`);
  }
  if (parts.length) return parts.join("; ");
  return job.backend.startsWith("ibm:") ? "not reported yet" : "free (simulator)";
}

function nested(a) {
  return Array.isArray(a) ? `[${a.map(nested).join(", ")}]` : num(a, 4);
}

function noiseFacts(noise) {
  if (!noise || noise.kind === "none") return null;
  const fmt = (a) => (Array.isArray(a) ? a.map(nested).join(" ") : "—");
  return [
    el("h3", {}, "Noise"),
    facts([
      ["channel", noise.kind],
      ["device floor per layer", fmt(noise.device_floor)],
      ["injected strengths (per level)", fmt(noise.injected)],
    ]),
  ];
}

const results = new Map();

async function jobPage(jobId) {
  const id = encodeURIComponent(jobId);
  const job = await api(`/v1/jobs/${id}`);
  let result = null, resultNote = null;
  if (job.status === "succeeded") {
    // a succeeded job's result never changes: fetch it once per page
    try {
      result = results.get(jobId) || await api(`/v1/jobs/${id}/result`);
      results.set(jobId, result);
    } catch (e) {
      resultNote = e.code === "result_expired" ? "result pruned (the server's retention)" : e.message;
    }
  }
  const meta = (result && result.metadata) || {};
  const cancel = ["queued", "running"].includes(job.status)
    ? el("button", { id: "cancel", onclick: async () => { await api(`/v1/jobs/${id}`, { method: "DELETE" }); refresh(true); } }, "cancel job")
    : null;
  return [
    el("p", {}, job.run_id ? el("a", { href: `/ui/runs/${job.run_id}` }, "← its run") : el("a", { href: "/ui" }, "← all jobs")),
    el("h2", { id: "job-title" }, `Job ${short(job.id)} `, badge(job.status), " ", cancel),
    facts([
      ["id", el("span", { class: "mono" }, job.id)],
      ["task", job.task],
      ["backend", el("span", { class: "mono" }, job.backend)],
      ["run", job.run_id ? el("a", { href: `/ui/runs/${job.run_id}`, class: "mono" }, job.run_id) : "—"],
      job.runtime_status ? ["runtime state", job.runtime_status] : null,
      ["submitted", when(job.created_at)],
      ["waited in the queue", dur(seconds(job.created_at, job.started_at || job.finished_at))],
      ["ran", job.started_at ? dur(seconds(job.started_at, job.finished_at)) : "—"],
      ["attempts", String(job.attempts)],
      ["progress", `${Math.round(100 * (job.progress || 0))}%`],
      ["circuits", meta.circuits !== undefined ? String(meta.circuits) : "—"],
      ["shots", meta.shots !== undefined && meta.shots !== null ? String(meta.shots) : (result ? "exact (no shots)" : "—")],
      meta.execution_mode ? ["execution mode", meta.execution_mode] : null,
      meta.runtime_job_id ? ["runtime job", el("span", { class: "mono" }, meta.runtime_job_id)] : null,
      ["cost", jobCost(job, meta)],
      meta.runtime_statuses && meta.runtime_statuses.length ? ["runtime states seen", meta.runtime_statuses.join(" → ")] : null,
      meta.seconds !== undefined ? ["backend time", dur(meta.seconds)] : null,
      resultNote ? ["result", resultNote] : null,
    ]),
    job.error ? [el("h3", {}, "Error"), el("pre", { id: "job-error" }, `${job.error.code}: ${job.error.message}`)] : null,
    result ? valuesTable(meta, result) : null,
    noiseFacts(meta.noise),
  ];
}

function notFound(what) {
  return [
    el("h2", { id: "not-found" }, "404 · not found"),
    el("p", {}, `No ${what} with this id is visible to your key: it does not exist, or it belongs to another tenant.`),
    el("p", {}, el("a", { href: "/ui" }, "← back to the overview")),
  ];
}

// ------------------------------------------------------------------ routing and polling

function route() {
  const parts = location.pathname.replace(/\/+$/, "").split("/").slice(2);
  if (parts[0] === "runs" && parts[1]) return { what: "run", draw: () => runPage(parts[1]) };
  if (parts[0] === "jobs" && parts[1]) return { what: "job", draw: () => jobPage(parts[1]) };
  return { what: "page", draw: overview };
}

let busy = false;

async function refresh(force) {
  if (busy && !force) return;
  busy = true;
  const main = document.getElementById("main");
  const r = route();
  try {
    const content = await r.draw();
    main.replaceChildren(...[content].flat(3).filter((c) => c));
    document.getElementById("updated").textContent = `updated ${new Date().toLocaleTimeString(undefined, { hour12: false })}`;
  } catch (e) {
    if (e instanceof ApiError && e.status === 404) main.replaceChildren(...notFound(r.what));
    else if (e instanceof ApiError && e.status === 401) {
      main.replaceChildren(el("h2", { id: "need-key" }, "This server needs an API key"),
        el("p", {}, `Enter your key above (${e.message}). It stays in this browser tab only.`));
    } else main.replaceChildren(el("h2", {}, "Error"), el("pre", {}, String(e.message || e)));
  } finally {
    busy = false;
  }
}

setupKeyForm();
refresh(true);
setInterval(refresh, POLL_MS);
