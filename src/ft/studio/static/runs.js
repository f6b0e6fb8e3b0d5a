// Runs: the table of the runs directory, the open run's live view (log, chart, progress, stop/resume, card),
// and Compare (overlaid curves, a results table that fills while the runs train, the config diff).
import {COLORS, curve, drawChart} from "./chart.js";
import {showFinish} from "./finish.js";
import {renderMarkdown, terminalText} from "./markdown.js";
import {$, TOKEN, api, el, fmtNum, fmtTime, formatValue, guarded, showTab, toast} from "./util.js";

const runs = {list: [], open: null, log: "", logOffset: 0, timer: null, tableTimer: null};
export const ACTIVE = new Set(["queued", "running"]);

async function refreshRuns() {
  const {runs: list} = await api("/api/runs");
  runs.list = list;
  const selected = new Set([...document.querySelectorAll("#runs-table tbody input:checked")].map((c) => c.value));
  $("#runs-table tbody").replaceChildren(...list.map((r) => el("tr", {"data-run": r.name, "data-status": r.status},
    el("td", {}, el("input", {type: "checkbox", value: r.name, checked: selected.has(r.name), "aria-label": `select ${r.name}`})),
    el("td", {}, el("a", {href: "#", text: r.name, onclick: (e) => { e.preventDefault(); openRun(r.name); }})),
    el("td", {text: r.task || ""}),
    el("td", {text: r.recipe || ""}),
    el("td", {}, el("span", {class: `status status-${r.status}`, text: r.status})),
    el("td", {text: r.max_steps ? `${r.step ?? 0}/${r.max_steps}` : String(r.step ?? "")}),
    el("td", {text: fmtNum(r.start_loss)}),
    el("td", {text: fmtNum(r.end_loss)}),
    el("td", {text: fmtTime(r.elapsed_s)}))));
  clearTimeout(runs.tableTimer);
  if (list.some((r) => ACTIVE.has(r.status))) runs.tableTimer = setTimeout(guarded(refreshRuns), 2000);
}

export function openRun(name) {
  runs.open = name;
  runs.logOffset = 0;
  runs.log = "";
  $("#run-view").hidden = false;
  $("#run-name").textContent = name;
  $("#run-log").textContent = "";
  $("#run-card").replaceChildren();
  $("#run-images").replaceChildren();
  $("#run-finish").hidden = true;
  drawChart($("#run-chart"), []);
  clearTimeout(runs.timer);
  pollRun(name);
  $("#run-view").scrollIntoView({block: "start"});
}

async function pollRun(name) {
  if (runs.open !== name) return;
  let info;
  try {
    const [detail, log, metrics] = await Promise.all([
      api(`/api/runs/${encodeURIComponent(name)}`),
      api(`/api/runs/${encodeURIComponent(name)}/log?offset=${runs.logOffset}`),
      api(`/api/runs/${encodeURIComponent(name)}/metrics`),
    ]);
    if (runs.open !== name) return;
    info = detail;
    showRunInfo(detail);
    if (log.text) {
      const pre = $("#run-log");
      const atBottom = pre.scrollTop + pre.clientHeight >= pre.scrollHeight - 4;
      runs.log = (runs.log + log.text).slice(-200000);
      pre.textContent = terminalText(runs.log);
      if (atBottom) pre.scrollTop = pre.scrollHeight;
    }
    runs.logOffset = log.offset;
    drawChart($("#run-chart"), [
      {label: "loss", points: curve(metrics.points, "loss")},
      {label: "eval_loss", points: curve(metrics.points, "eval_loss"), dashed: true},
    ]);
  } catch (e) {
    toast(e.message);
  }
  if (!info || ACTIVE.has(info.status)) runs.timer = setTimeout(() => pollRun(name), 1000);
  else {
    showRunFiles(info).catch((e) => toast(e.message));
    showFinish(info);
    refreshRuns().catch((e) => toast(e.message));
  }
}

function showRunInfo(r) {
  const status = $("#run-status");
  status.textContent = r.status;
  status.className = `status status-${r.status}`;
  $("#run-view").dataset.status = r.status;
  const fraction = r.max_steps ? Math.min(1, (r.step || 0) / r.max_steps) : r.status === "finished" ? 1 : 0;
  $("#run-bar").style.width = `${(100 * fraction).toFixed(1)}%`;
  $("#run-progress").textContent = `step ${r.step ?? 0}${r.max_steps ? "/" + r.max_steps : ""}`
    + (r.eta_s != null && ACTIVE.has(r.status) ? ` · ETA ${fmtTime(r.eta_s)}` : "")
    + (r.elapsed_s != null ? ` · ${fmtTime(r.elapsed_s)} elapsed` : "");
  $("#run-stop").disabled = !ACTIVE.has(r.status);
  $("#run-resume").disabled = !["stopped", "failed"].includes(r.status);
  $("#run-config").textContent = r.config_yaml || "";
  $("#run-command").textContent = Array.isArray(r.command) ? r.command.join(" ") : r.command || "";
}

function fileUrl(name, file) {
  const url = `/api/runs/${encodeURIComponent(name)}/file/${encodeURIComponent(file)}`;
  return TOKEN ? `${url}?token=${encodeURIComponent(TOKEN)}` : url;
}

async function showRunFiles(r) {
  const files = r.files || [];
  let card = "";
  if (files.includes("README.md")) {
    const response = await api(`/api/runs/${encodeURIComponent(r.name)}/file/README.md`, undefined, {raw: true});
    card = await response.text();
    $("#run-card").replaceChildren(renderMarkdown(card, (file) => fileUrl(r.name, file)));
  }
  // the loss plot and the sample grid, unless the card shows them already
  const plots = ["loss.png", "samples.png"].filter((f) => files.includes(f) && !card.includes(`(${f})`));
  $("#run-images").replaceChildren(...plots.map((f) =>
    el("figure", {}, el("img", {src: fileUrl(r.name, f), alt: f}), el("figcaption", {text: f}))));
}

async function stopOrResume(action) {
  const name = runs.open;
  await api(`/api/runs/${encodeURIComponent(name)}/${action}`, {});
  clearTimeout(runs.timer);
  pollRun(name);
}

// ---- Compare: overlaid curves, a results table that fills while the runs train, the config diff --------------
const comparing = {names: [], timer: null};

async function compareSelected() {
  const names = [...document.querySelectorAll("#runs-table tbody input:checked")].map((c) => c.value);
  if (names.length < 2) throw new Error("Tick two or more runs to compare");
  await compareRuns(names);
}

export async function compareRuns(names) {
  comparing.names = names;
  clearTimeout(comparing.timer);
  showTab("compare");
  await refreshCompare(names);
}

async function refreshCompare(names) {
  const [result, {runs: list}] = await Promise.all([
    api(`/api/compare?runs=${names.map(encodeURIComponent).join(",")}`), api("/api/runs")]);
  if (comparing.names !== names) return;  // another comparison was opened meanwhile
  $("#compare-hint").textContent = `Comparing ${result.runs.map((r) => r.name).join(", ")}`;
  drawChart($("#compare-chart"), result.runs.flatMap((r, i) => [
    {label: r.name, color: COLORS[i % COLORS.length], points: curve(r.points, "loss")},
    {label: `${r.name} eval`, color: COLORS[i % COLORS.length], points: curve(r.points, "eval_loss"), dashed: true,
      legend: false},
  ]), {yLabel: "loss (dashed: eval_loss)"});
  // a queued run has no config yet: the keys that differ are those that differ between the started ones
  const info = Object.fromEntries(list.map((r) => [r.name, r]));
  const started = result.runs.map((r) => !info[r.name] || info[r.name].status !== "queued");
  const diff = result.config_diff.filter((d) =>
    new Set(d.values.filter((_, i) => started[i]).map((v) => JSON.stringify(v))).size > 1);
  if (!started.every(Boolean)) $("#compare-hint").textContent += " (a queued run shows its config once it starts)";
  // one row per run: the keys that differ, then where the run is and its losses
  const last = (points, key) => { const c = curve(points, key); return c.length ? c[c.length - 1][1] : null; };
  $("#results-table thead").replaceChildren(el("tr", {}, el("th", {text: "run"}),
    ...diff.map((d) => el("th", {class: "key", text: d.key})),
    ...["status", "step", "end loss", "last eval loss"].map((h) => el("th", {text: h}))));
  $("#results-table tbody").replaceChildren(...result.runs.map((r, i) => {
    const row = info[r.name] || {};
    return el("tr", {"data-run": r.name}, el("td", {text: r.name}),
      ...diff.map((d) => el("td", {text: started[i] ? formatValue(d.values[i]) : ""})),
      el("td", {}, el("span", {class: `status status-${row.status}`, text: row.status || "?"})),
      el("td", {text: row.max_steps ? `${row.step ?? 0}/${row.max_steps}` : String(row.step ?? "")}),
      el("td", {text: fmtNum(last(r.points, "loss"))}),
      el("td", {text: fmtNum(last(r.points, "eval_loss"))}));
  }));
  $("#diff-table thead").replaceChildren(el("tr", {}, el("th", {text: "key"}), ...result.runs.map((r) => el("th", {text: r.name}))));
  $("#diff-table tbody").replaceChildren(...(diff.length ? diff.map((d) =>
    el("tr", {"data-key": d.key}, el("td", {class: "key", text: d.key}),
      ...d.values.map((v, i) => el("td", {text: started[i] ? formatValue(v) : ""}))))
    : [el("tr", {}, el("td", {colspan: result.runs.length + 1, text: "the configs are the same"}))]));
  if (names.some((n) => info[n] && ACTIVE.has(info[n].status))) {
    comparing.timer = setTimeout(() => refreshCompare(names).catch((e) => toast(e.message)), 2000);
  }
}

export function init() {
  $("#runs-refresh").addEventListener("click", guarded(refreshRuns));
  $("#compare-btn").addEventListener("click", guarded(compareSelected));
  $("#run-stop").addEventListener("click", guarded(() => stopOrResume("stop")));
  $("#run-resume").addEventListener("click", guarded(() => stopOrResume("resume")));
  document.addEventListener("studio:tab", (e) => { if (e.detail === "runs") guarded(refreshRuns)(); });
}
