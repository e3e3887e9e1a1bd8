// The dbt health page: three views (#runs, #timeline/<dag>/<run>, #trends) drawn from the app's JSON (api/...),
// charts by Vega-Lite through Vega-Embed (served from node_modules, see include/health_site.py), sortable tables.
// Each view marks its section data-state="ready" once its tables and charts are drawn (the browser test waits on it).
"use strict";

const STATUS_COLORS = {
  success: "#54a24b", pass: "#54a24b", warned: "#f58518", warn: "#f58518",
  failed: "#e45756", fail: "#e45756", error: "#e45756", "runtime error": "#b22222", skipped: "#9aa5b1",
};
const KIND_COLORS = {
  model: "#4c78a8", snapshot: "#72b7b2", seed: "#b279a2", test: "#bab0ac", unit_test: "#9d755d",
  "source freshness": "#54a24b", warned: "#f58518", failed: "#e45756",
};
const FAILED = new Set(["error", "fail", "runtime error"]);
const EMBED_OPTIONS = {
  // ast: Vega's interpreter instead of eval, so the page keeps a script-src 'self' Content-Security-Policy.
  ast: true, renderer: "svg", actions: { export: true, source: false, compiled: false, editor: false },
};
// A time axis in UTC: the date at midnight, the hour otherwise.
const UTC_TICK = "utchours(datum.value) === 0 && utcminutes(datum.value) === 0 ? utcFormat(datum.value, '%b %d') : utcFormat(datum.value, '%H:%M')";

// -- small helpers -------------------------------------------------------------------------------------------
function el(tag, attributes = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attributes)) {
    if (value === null || value === undefined || value === false) continue;
    if (key === "class") node.className = value;
    else node.setAttribute(key, value === true ? "" : value);
  }
  for (const child of children.flat()) {
    if (child !== null && child !== undefined) node.append(child instanceof Node ? child : String(child));
  }
  return node;
}

function link(href, text) {
  return href ? el("a", { href }, text) : text;
}

function badge(status) {
  return el("span", { class: `status ${String(status).replace(" ", "-")}` }, status);
}

function utc(value) {
  return value ? value.replace("T", " ").replace(/(\.\d+)?(Z|\+00:00)$/, "") + " UTC" : "";
}

function seconds(value) {
  if (value === null || value === undefined) return "";
  if (value < 60) return `${value.toFixed(value < 10 ? 2 : 1)} s`;
  const minutes = Math.floor(value / 60);
  return `${minutes} min ${Math.round(value - minutes * 60)} s`;
}

async function getJson(url) {
  const response = await fetch(url, { credentials: "same-origin", headers: { Accept: "application/json" } });
  if (response.status === 401) {
    window.location.reload(); // the page itself sends a browser without a valid login to Airflow's login
    throw new Error("Not logged in");
  }
  const body = await response.json().catch(() => ({}));
  if (!response.ok) throw new Error(body.detail || `${url} answered ${response.status}`);
  return body;
}

function notice(text) {
  const box = document.getElementById("notice");
  box.textContent = text;
  box.hidden = !text;
}

// A table whose column headers sort it (click again: the other way). columns: {label, value(row), cell(row), number
// (right-aligned, sorts largest first), largestFirst, nowrap}.
function sortableTable(container, id, columns, rows, sortBy = null, descending = false) {
  const table = el("table", { id });
  const head = el("tr");
  const body = el("tbody");
  let current = sortBy;
  let down = descending;
  const draw = () => {
    const column = columns[current];
    const ordered = current === null ? rows : [...rows].sort((a, b) => {
      const x = column.value(a);
      const y = column.value(b);
      const order = x === y ? 0 : x === null || x === undefined ? 1 : y === null || y === undefined ? -1 : x < y ? -1 : 1;
      return down ? -order : order;
    });
    body.replaceChildren(...ordered.map((row) => el("tr", {}, columns.map((c) =>
      el("td", { class: [c.number ? "number" : "", c.nowrap ? "nowrap" : ""].join(" ").trim() || null },
        (c.cell || c.value)(row))))));
    head.querySelectorAll("th").forEach((th, index) => {
      th.setAttribute("aria-sort", index === current ? (down ? "descending" : "ascending") : "none");
    });
  };
  columns.forEach((column, index) => {
    const button = el("button", { type: "button" }, column.label);
    button.addEventListener("click", () => {
      down = index === current ? !down : !!(column.number || column.largestFirst);
      current = index;
      draw();
    });
    head.append(el("th", { scope: "col", class: column.number ? "number" : null }, button));
  });
  table.append(el("thead", {}, head), body);
  draw();
  container.replaceChildren(rows.length ? table : el("p", { class: "lead" }, "Nothing recorded yet."));
}

async function chart(container, spec) {
  if (typeof window.vegaEmbed !== "function") {
    container.replaceChildren(el("p", { class: "lead" }, "Charts need the chart libraries: run make chart-libs."));
    return;
  }
  await window.vegaEmbed(container, { $schema: "https://vega.github.io/schema/vega-lite/v6.json", ...spec }, EMBED_OPTIONS);
  container.dataset.rendered = "true";
}

function colorScale(colors, used) {
  const domain = Object.keys(colors).filter((key) => used.has(key));
  return { domain, range: domain.map((key) => colors[key]) };
}

// -- Runs ----------------------------------------------------------------------------------------------------
function nodeList(nodes) {
  return nodes.length ? el("ul", {}, nodes.map((node) => el("li", {},
    link(node.log_url, node.name), " ", badge(node.status),
    node.failures ? ` ${node.failures} failing rows` : "",
    node.message ? el("div", { class: "message small" }, node.message) : null))) : "";
}

async function showRuns() {
  const data = await getJson("api/runs?per_dag=30");
  const runs = data.runs;
  const columns = [
    { label: "DAG", value: (r) => r.dag_id },
    { label: "Run, dbt started", nowrap: true, value: (r) => r.started_at, cell: (r) => [link(r.url, r.run_id), el("br"),
      el("span", { class: "small" }, utc(r.started_at), " · ", el("a", {
        href: `#timeline/${encodeURIComponent(r.dag_id)}/${encodeURIComponent(r.run_id)}` }, "model timing"))] },
    { label: "dbt time", number: true, value: (r) => r.dbt_seconds, cell: (r) => seconds(r.dbt_seconds) },
    { label: "Status", value: (r) => r.status, cell: (r) => badge(r.status) },
    { label: "dbt commands", nowrap: true, value: (r) => r.invocations.length,
      cell: (r) => el("ul", {}, r.invocations.map((i) => el("li", {}, link(i.log_url, i.command), " ",
        badge(i.status), ` ${seconds(i.elapsed_seconds)}`))) },
    { label: "Built", number: true, value: (r) => r.built },
    { label: "Failed", number: true, value: (r) => r.failed.length },
    { label: "Warned", number: true, value: (r) => r.warned.length },
    { label: "Failed or warned nodes", largestFirst: true, value: (r) => r.failed.length * 10000 + r.warned.length,
      cell: (r) => nodeList([...r.failed, ...r.warned]) },
  ];
  sortableTable(document.getElementById("runs-table"), "runs", columns, runs, 1, true);
  const values = runs.map((r) => ({
    dag: r.dag_id, start: r.started_at, started: utc(r.started_at), seconds: r.dbt_seconds, status: r.status, run: r.run_id,
  }));
  await chart(document.getElementById("runs-chart"), {
    data: { values },
    facet: { row: { field: "dag", title: null } },
    resolve: { scale: { x: "independent", y: "independent" } },
    spec: {
      width: 900, height: 110,
      layer: [
        { mark: { type: "line", color: "#9aa5b1" },
          encoding: { x: { field: "start", type: "temporal", title: null, scale: { type: "utc" }, axis: { labelExpr: UTC_TICK, tickCount: 8 } },
            y: { field: "seconds", type: "quantitative", title: "dbt seconds" } } },
        { mark: { type: "point", filled: true, size: 60 },
          encoding: {
            x: { field: "start", type: "temporal", scale: { type: "utc" } }, y: { field: "seconds", type: "quantitative" },
            color: { field: "status", type: "nominal", scale: colorScale(STATUS_COLORS, new Set(values.map((v) => v.status))) },
            tooltip: [{ field: "run", title: "run" }, { field: "started" },
              { field: "seconds", format: ".1f", title: "dbt seconds" }, { field: "status" }],
          } },
      ],
    },
  });
  return runs;
}

// -- Model timing --------------------------------------------------------------------------------------------
async function showTimeline(dagId, runId) {
  const select = document.getElementById("timeline-run");
  const runs = (await getJson("api/runs?per_dag=30")).runs;
  select.replaceChildren(...runs.map((r) => el("option", {
    value: `${encodeURIComponent(r.dag_id)}/${encodeURIComponent(r.run_id)}`,
    selected: r.dag_id === dagId && r.run_id === runId,
  }, `${r.dag_id} · ${r.run_id} (${r.status})`)));
  const query = new URLSearchParams({ dag_id: dagId || "greenery_daily" });
  if (runId) query.set("run_id", runId);
  const data = await getJson(`api/timeline?${query}`);
  if (!runId && data.run_id) select.value = `${encodeURIComponent(data.dag_id)}/${encodeURIComponent(data.run_id)}`;
  const summary = document.getElementById("timeline-summary");
  if (!data.nodes.length) {
    summary.textContent = `No dbt results recorded for ${data.dag_id} ${data.run_id || ""}.`;
    document.getElementById("timeline-chart").replaceChildren();
    document.getElementById("timeline-table").replaceChildren();
    return;
  }
  const withTests = document.getElementById("timeline-tests").checked;
  const start = Date.parse(data.started_at);
  const nodes = data.nodes.map((n) => ({
    ...n,
    kind: FAILED.has(n.status) ? "failed" : n.status === "warn" ? "warned" : n.resource_type,
    t0: Date.parse(n.started_at), offset: (Date.parse(n.started_at) - start) / 1000,
  }));
  // Tests that passed only when asked for: a run has a hundred of them, each a fraction of a second.
  const shown = nodes.filter((n) => withTests || n.critical || n.kind !== n.resource_type || !["test", "unit_test"].includes(n.resource_type));
  summary.replaceChildren(
    link(data.url, `${data.dag_id} · ${data.run_id}`), `: dbt ran ${seconds(data.dbt_seconds)} from ${utc(data.started_at)}, `,
    `${data.nodes.length} node results. `,
    data.critical_path.length && data.has_dependencies
      ? el("span", { id: "critical-path" }, `Critical path (outlined, ${seconds(data.critical_seconds)} of dbt's time): `,
        el("strong", {}, data.critical_path.join(" → ")))
      : "No critical path: the dbt manifest the DAGs render from is not on this machine.");
  sortableTable(document.getElementById("timeline-table"), "timeline", [
    { label: "Node", value: (n) => n.name, cell: (n) => link(n.log_url, n.name) },
    { label: "Type", value: (n) => n.resource_type },
    { label: "Status", value: (n) => n.status, cell: (n) => badge(n.status) },
    { label: "Starts at", number: true, value: (n) => n.offset, cell: (n) => `+${n.offset.toFixed(1)} s` },
    { label: "Seconds", number: true, value: (n) => n.execution_seconds, cell: (n) => seconds(n.execution_seconds) },
    { label: "Critical path", value: (n) => (n.critical ? 1 : 0), cell: (n) => (n.critical ? "yes" : "") },
    { label: "Failing rows", number: true, value: (n) => n.failures, cell: (n) => n.failures || "" },
    { label: "dbt command", value: (n) => n.command },
  ], shown, 3, false);
  await chart(document.getElementById("timeline-chart"), {
    data: { values: shown.map((n) => ({ ...n, end: n.completed_at })) },
    width: 1000, height: { step: 14 },
    mark: { type: "bar", cornerRadius: 2 },
    encoding: {
      y: { field: "name", type: "nominal", title: null, sort: { field: "t0", op: "min", order: "ascending" }, axis: { labelLimit: 280 } },
      x: { field: "started_at", type: "temporal", title: "UTC", scale: { type: "utc" }, axis: { format: "%H:%M:%S" } },
      x2: { field: "end" },
      color: { field: "kind", type: "nominal", title: "node", scale: colorScale(KIND_COLORS, new Set(shown.map((n) => n.kind))) },
      stroke: { condition: { test: "datum.critical", value: "#111" }, value: null },
      strokeWidth: { condition: { test: "datum.critical", value: 2 }, value: 0 },
      opacity: { condition: { test: "datum.critical", value: 1 }, value: 0.6 },
      tooltip: [{ field: "name" }, { field: "status" }, { field: "execution_seconds", title: "seconds", format: ".2f" },
        { field: "offset", title: "starts at +s", format: ".1f" }, { field: "critical", title: "critical path" },
        { field: "command", title: "dbt command" }],
    },
  });
}

// -- Trends --------------------------------------------------------------------------------------------------
async function showTrends() {
  const runs = document.getElementById("trends-runs").value;
  const data = await getJson(`api/trends?runs=${runs}`);
  const flagged = data.models.filter((m) => m.regression);
  document.getElementById("models-lead").replaceChildren(
    `Each model's time in its last ${data.runs} successful builds, oldest to newest, and the median before the newest `,
    `(dashed). A newest build over ${data.regression_factor}× that median (and ${data.regression_min_seconds} s more) is a regression: `,
    flagged.length ? el("strong", { class: "flag" }, flagged.map((m) => m.name).join(", ")) : "none now.");
  sortableTable(document.getElementById("models-table"), "models", [
    { label: "Model", value: (m) => m.name },
    { label: "Type", value: (m) => m.resource_type },
    { label: "Builds", number: true, value: (m) => m.builds.length },
    { label: "Median", number: true, value: (m) => m.median_seconds, cell: (m) => seconds(m.median_seconds) },
    { label: "Newest", number: true, value: (m) => m.latest_seconds, cell: (m) => seconds(m.latest_seconds) },
    { label: "× median", number: true, value: (m) => m.ratio, cell: (m) => (m.ratio === null ? "" : `${m.ratio}×`) },
    { label: "Regression", value: (m) => (m.regression ? 1 : 0), cell: (m) => (m.regression ? el("span", { class: "flag" }, "regression") : "") },
  ], data.models, 6, true);
  const allTests = document.getElementById("trends-all-tests").checked;
  const eventful = data.tests.filter((t) => t.failed || t.warned);
  document.getElementById("tests-lead").textContent = `${eventful.length} of ${data.tests.length} tests failed or warned `
    + `in their last ${data.runs} results${allTests ? "" : "; the others passed every time"}.`;
  sortableTable(document.getElementById("tests-table"), "tests", [
    { label: "Test", value: (t) => t.name },
    { label: "Tests", value: (t) => t.tested_node || "" },
    { label: "Newest", value: (t) => t.last_status, cell: (t) => badge(t.last_status) },
    { label: "Failing rows (newest)", number: true, value: (t) => t.last_failures, cell: (t) => (t.last_failures ? t.last_failures : "") },
    { label: "Passed", number: true, value: (t) => t.passed },
    { label: "Warned", number: true, value: (t) => t.warned },
    { label: "Failed", number: true, value: (t) => t.failed },
  ], allTests ? data.tests : eventful, 6, true);
  sortableTable(document.getElementById("sources-table"), "sources", [
    { label: "Source table", value: (s) => s.name },
    { label: "Newest", value: (s) => s.last_status, cell: (s) => badge(s.last_status) },
    { label: "Age (h, newest check)", number: true, value: (s) => s.last_age_hours },
    { label: "Warn after", value: (s) => s.warn_hours, cell: (s) => s.warn_after || "" },
    { label: "Error after", value: (s) => s.error_hours, cell: (s) => s.error_after || "" },
    { label: "Stale checks", number: true, value: (s) => s.stale },
  ], data.sources, 5, true);
  await Promise.all([modelsChart(data), testsChart(data), sourcesChart(data)]);
}

function modelsChart(data) {
  const values = data.models.flatMap((m, order) => m.builds.map((b, index) => ({
    name: m.regression ? `${m.name} (regression)` : m.name, order, start: b.started_at, started: utc(b.started_at), seconds: b.seconds,
    median: m.median_seconds, newest: index === m.builds.length - 1, regression: m.regression, run: b.run_id,
  })));
  return chart(document.getElementById("models-chart"), {
    data: { values },
    facet: { field: "name", type: "nominal", title: null, sort: { field: "order", op: "min" }, header: { labelLimit: 230 } },
    columns: 4,
    resolve: { scale: { x: "independent", y: "independent" } },
    spec: {
      width: 220, height: 70,
      layer: [
        { mark: { type: "line", color: "#4c78a8", point: { size: 12 } },
          encoding: { x: { field: "start", type: "temporal", title: null, scale: { type: "utc" }, axis: { format: "%m-%d", tickCount: 3 } },
            y: { field: "seconds", type: "quantitative", title: "s", scale: { zero: true } },
            tooltip: [{ field: "run" }, { field: "started" }, { field: "seconds", format: ".2f" }] } },
        { mark: { type: "rule", strokeDash: [4, 3], color: "#616e7c" }, encoding: { y: { field: "median", aggregate: "max" } } },
        { transform: [{ filter: "datum.newest && datum.regression" }], mark: { type: "point", filled: true, size: 80, color: "#e45756" },
          encoding: { x: { field: "start", type: "temporal", scale: { type: "utc" } }, y: { field: "seconds", type: "quantitative" } } },
      ],
    },
  });
}

function testsChart(data) {
  const charted = data.tests.filter((t) => t.failed || t.warned).slice(0, 40);
  const values = charted.flatMap((t) => t.results.map((r, index) => ({
    test: t.name, position: Number(data.runs) - t.results.length + index + 1, status: r.status,
    failures: r.failures || 0, started: utc(r.started_at), run: r.run_id,
  })));
  if (!values.length) {
    document.getElementById("tests-chart").replaceChildren(el("p", { class: "lead" }, "No test failed or warned in these runs."));
    return null;
  }
  return chart(document.getElementById("tests-chart"), {
    data: { values },
    width: 1000, height: { step: 18 },
    encoding: {
      y: { field: "test", type: "nominal", title: null, sort: null, axis: { labelLimit: 320 } },
      x: { field: "position", type: "ordinal", title: "result, oldest → newest", axis: { labels: false, ticks: false } },
    },
    layer: [
      { mark: { type: "rect", stroke: "#fff" },
        encoding: { color: { field: "status", type: "nominal", scale: colorScale(STATUS_COLORS, new Set(values.map((v) => v.status))) },
          tooltip: [{ field: "test" }, { field: "status" }, { field: "failures", title: "failing rows" },
            { field: "started" }, { field: "run" }] } },
      { transform: [{ filter: "datum.failures > 0" }], mark: { type: "text", fontSize: 9, color: "#fff" },
        encoding: { text: { field: "failures", type: "quantitative" } } },
    ],
  });
}

function sourcesChart(data) {
  const values = data.sources.flatMap((s) => s.checks.map((c) => ({
    table: s.name, checked: c.checked_at, checkedText: utc(c.checked_at), age: c.age_hours, status: c.status,
    warn: s.warn_hours, error: s.error_hours,
  })));
  if (!values.length) return null;
  return chart(document.getElementById("sources-chart"), {
    data: { values },
    facet: { field: "table", type: "nominal", title: null },
    columns: 3,
    resolve: { scale: { x: "independent", y: "independent" } },
    spec: {
      width: 300, height: 90,
      layer: [
        { mark: { type: "line", color: "#4c78a8" },
          encoding: { x: { field: "checked", type: "temporal", title: null, scale: { type: "utc" }, axis: { format: "%m-%d", tickCount: 4 } },
            y: { field: "age", type: "quantitative", title: "hours" } } },
        { mark: { type: "point", filled: true },
          encoding: { x: { field: "checked", type: "temporal", scale: { type: "utc" } }, y: { field: "age", type: "quantitative" },
            color: { field: "status", type: "nominal", scale: colorScale(STATUS_COLORS, new Set(values.map((v) => v.status))) },
            tooltip: [{ field: "table" }, { field: "checkedText", title: "checked" },
              { field: "age", title: "hours old", format: ".1f" }, { field: "status" }] } },
        { mark: { type: "rule", color: "#f58518", strokeDash: [4, 3] }, encoding: { y: { field: "warn", aggregate: "max" } } },
        { mark: { type: "rule", color: "#e45756", strokeDash: [4, 3] }, encoding: { y: { field: "error", aggregate: "max" } } },
      ],
    },
  });
}

// -- routing -------------------------------------------------------------------------------------------------
async function show() {
  const [view = "runs", ...rest] = window.location.hash.slice(1).split("/");
  const name = ["runs", "timeline", "trends"].includes(view) ? view : "runs";
  const section = document.getElementById(`view-${name}`);
  document.querySelectorAll("main > section").forEach((s) => { s.hidden = s !== section; });
  document.querySelectorAll("nav a").forEach((a) => {
    if (a.dataset.view === name) a.setAttribute("aria-current", "page");
    else a.removeAttribute("aria-current");
  });
  section.dataset.state = "loading";
  try {
    if (name === "runs") await showRuns();
    else if (name === "timeline") await showTimeline(rest[0] && decodeURIComponent(rest[0]), rest[1] && decodeURIComponent(rest.slice(1).join("/")));
    else await showTrends();
    notice(typeof window.vegaEmbed === "function" ? "" : "The chart libraries are not installed where the api-server runs: run make chart-libs. The tables below work without them.");
    section.dataset.state = "ready";
    if (!document.body.dataset.loadMs) document.body.dataset.loadMs = String(Math.round(performance.now()));
  } catch (error) {
    notice(error.message);
    section.dataset.state = "error";
  }
}

window.addEventListener("hashchange", show);
document.getElementById("timeline-run").addEventListener("change", (event) => { window.location.hash = `timeline/${event.target.value}`; });
document.getElementById("timeline-tests").addEventListener("change", show);
document.getElementById("trends-runs").addEventListener("change", show);
document.getElementById("trends-all-tests").addEventListener("change", show);
show();
