// ft studio's page: plain DOM code over the JSON API (docs/studio.md). Every view reads the server;
// the page keeps only what the user is composing (recipe + overrides) and which run is open.
"use strict";

const $ = (sel, root = document) => root.querySelector(sel);
const el = (tag, attrs = {}, ...children) => {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (k === "class") node.className = v;
    else if (k === "text") node.textContent = v;
    else if (k.startsWith("on")) node.addEventListener(k.slice(2), v);
    else if (v !== null && v !== undefined && v !== false) node.setAttribute(k, v === true ? "" : v);
  }
  node.append(...children.filter((c) => c !== null && c !== undefined));
  return node;
};
const SVG = "http://www.w3.org/2000/svg";
const svg = (tag, attrs = {}) => {
  const node = document.createElementNS(SVG, tag);
  for (const [k, v] of Object.entries(attrs)) node.setAttribute(k, v);
  return node;
};

// ---- the API: the token of the page's own URL goes on every call --------------------------------
const TOKEN = new URLSearchParams(location.search).get("token");

async function api(path, body, {raw = false} = {}) {
  const headers = {};
  if (TOKEN) headers["X-FT-Token"] = TOKEN;
  if (body !== undefined) headers["Content-Type"] = "application/json";
  const response = await fetch(path, {
    method: body === undefined ? "GET" : "POST",
    headers,
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  if (!response.ok) {
    let message = `${response.status} ${response.statusText}`;
    try { message = (await response.json()).error || message; } catch { /* not JSON */ }
    throw new Error(message);
  }
  return raw ? response : response.json();
}

function toast(message) {
  const box = $("#toast");
  box.textContent = message;
  box.hidden = false;
  clearTimeout(toast.timer);
  toast.timer = setTimeout(() => { box.hidden = true; }, 6000);
}
const guarded = (fn) => (...args) => fn(...args).catch((e) => toast(e.message));

const formatValue = (v) => {
  if (v === null || v === undefined) return "";
  if (Array.isArray(v)) return "[" + v.map(formatValue).join(", ") + "]";
  if (typeof v === "object") return JSON.stringify(v);
  return String(v);
};
const fmtNum = (v, digits = 4) => (typeof v === "number" ? Number(v.toPrecision(digits)).toString() : "");
const fmtTime = (s) => {
  if (s === null || s === undefined) return "";
  s = Math.round(s);
  return s >= 3600 ? `${Math.floor(s / 3600)}h${String(Math.floor(s / 60) % 60).padStart(2, "0")}m`
    : s >= 60 ? `${Math.floor(s / 60)}m${String(s % 60).padStart(2, "0")}s` : `${s}s`;
};

// ---- tabs ------------------------------------------------------------------------------------------
function showTab(name) {
  for (const b of document.querySelectorAll("#tabs button")) b.classList.toggle("active", b.dataset.tab === name);
  for (const v of document.querySelectorAll(".view")) v.classList.toggle("active", v.id === name);
  if (name === "runs") guarded(refreshRuns)();
  if (name === "chat") guarded(refreshChatRuns)();
}

// ---- Compose: the form generated from the schema, checked on every change --------------------------
// The sections a first look needs are open; the rest (other tasks' sections, hub, distributed) are folded.
const OPEN_GROUPS = new Set(["general", "model", "peft", "data", "training"]);
const compose = {recipe: null, task: null, overrides: {}, initial: {}, recipes: [], formSeq: 0, checkSeq: 0, timer: null};

async function loadTasks() {
  const {tasks, recipes} = await api("/api/tasks");
  compose.recipes = recipes;
  const taskSelect = $("#task");
  taskSelect.replaceChildren(...tasks.map((t) => el("option", {value: t.name, title: t.summary, text: t.name})));
  const first = recipes.find((r) => r.name === "default") || recipes[0];
  taskSelect.value = first ? first.task : tasks[0].name;
  fillRecipes(first && first.name);
  if (first) await loadForm(first.name);
}

function fillRecipes(selected) {
  const task = $("#task").value;
  const options = compose.recipes.filter((r) => r.task === task)
    .map((r) => el("option", {value: r.name, title: r.description || "", text: r.name}));
  $("#recipe").replaceChildren(...options);
  // a task's tiny recipe first: it trains offline, on any machine
  const tiny = options.find((o) => o.value.startsWith("tiny"));
  $("#recipe").value = selected || (tiny ? tiny.value : options.length ? options[0].value : "");
}

async function loadForm(recipe) {
  const seq = ++compose.formSeq;
  compose.requested = recipe;
  const form = await api(`/api/form?recipe=${encodeURIComponent(recipe)}`);
  if (seq !== compose.formSeq) return;  // another recipe was picked meanwhile
  compose.recipe = form.recipe;
  compose.task = form.task;
  compose.overrides = {};
  compose.initial = {};
  const meta = compose.recipes.find((r) => r.name === recipe);
  $("#recipe-description").textContent = meta ? meta.description || "" : `recipe file ${recipe}`;
  // A task's own section (dpo, grpo, ...) is shown only on that task's form.
  const groups = form.groups.filter((group) => !group.task || group.task === form.task);
  $("#form").replaceChildren(...groups.map((group) =>
    el("details", {class: "group", "data-group": group.name, open: OPEN_GROUPS.has(group.name)},
      el("summary", {}, group.name, el("span", {class: "count", text: ` ${group.fields.length}`})),
      ...group.fields.map(fieldRow))));
  $("#sweep-keys").replaceChildren(...groups.flatMap((g) => g.fields.map((f) => el("option", {value: f.key}))));
  filterFields();
  $("#form").dataset.recipe = recipe;  // tests wait on this
  scheduleCheck(0);
}

function fieldRow(field) {
  const id = "f-" + field.key.replace(/[^A-Za-z0-9_]/g, "-");
  let input;
  if (field.type === "bool") {
    input = el("input", {type: "checkbox", id});
    input.checked = Boolean(field.value);
  } else if (field.type === "choice" && field.choices) {
    const choices = field.nullable && !field.choices.includes(null) ? [null, ...field.choices] : field.choices;
    input = el("select", {id}, ...choices.map((c) => el("option", {value: formatValue(c), text: c === null ? "null" : formatValue(c)})));
    input.value = formatValue(field.value);
  } else if (field.type === "int" || field.type === "float") {
    input = el("input", {type: "number", id, min: field.min ?? null, max: field.max ?? null,
      step: field.type === "int" ? "1" : "any", placeholder: field.nullable ? "null" : null});
    input.value = formatValue(field.value);
  } else {
    input = el("input", {type: "text", id, placeholder: field.nullable ? "null" : null});
    input.value = formatValue(field.value);
  }
  input.dataset.key = field.key;
  const current = () => (input.type === "checkbox" ? String(input.checked)
    : input.value === "" && field.nullable ? "null" : input.value);
  compose.initial[field.key] = current();
  input.addEventListener(input.tagName === "SELECT" || input.type === "checkbox" ? "change" : "input", () => {
    const value = current();
    if (value === compose.initial[field.key]) delete compose.overrides[field.key];
    else compose.overrides[field.key] = value;
    row.classList.toggle("changed", field.key in compose.overrides);
    scheduleCheck();
  });
  const bounds = [field.min != null ? `min ${field.min}` : null, field.max != null ? `max ${field.max}` : null]
    .filter(Boolean).join(", ");
  const row = el("div", {class: "field", "data-key": field.key, "data-type": field.type},
    el("label", {for: id, class: "key"}, ...breakable(field.key)),
    input,
    el("span", {class: "field-error"}),
    el("div", {class: "hint"}, field.help || "",
      el("span", {class: "default", text: ` default: ${field.default === null ? "null" : formatValue(field.default)}`
        + (bounds ? ` (${bounds})` : "")})));
  return row;
}

// A long key wraps after its dots and underscores, never inside a word.
const breakable = (key) => key.split(/(?<=[._])/).flatMap((part, i) => (i ? [el("wbr"), part] : [part]));

function filterFields() {
  const needle = $("#field-filter").value.trim().toLowerCase();
  for (const group of document.querySelectorAll("#form details.group")) {
    let shown = 0;
    for (const row of group.querySelectorAll(".field")) {
      const hit = !needle || row.dataset.key.toLowerCase().includes(needle);
      row.hidden = !hit;
      shown += hit;
    }
    group.hidden = shown === 0;
    if (needle && shown) group.open = true;
  }
}

function scheduleCheck(delay = 300) {
  clearTimeout(compose.timer);
  compose.timer = setTimeout(guarded(check), delay);
}

async function check() {
  const seq = ++compose.checkSeq;
  const result = await api("/api/check", {recipe: compose.recipe, overrides: compose.overrides});
  if (seq !== compose.checkSeq) return;  // a newer check is on its way
  for (const row of document.querySelectorAll("#form .field")) {
    const message = (result.errors || {})[row.dataset.key] || "";
    row.querySelector(".field-error").textContent = message;
    row.classList.toggle("invalid", Boolean(message));
    if (message && row.closest("details")) row.closest("details").open = true;
  }
  const box = $("#check-error");
  box.textContent = result.error || "";
  box.hidden = !result.error;
  $("#command").textContent = result.command_line || "";
  $("#yaml").textContent = result.yaml || "# the recipe file is shown once the errors are fixed";
  $("#launch").disabled = !result.ok;
  document.body.dataset.checked = String(seq);  // tests wait on this
}

async function saveRecipe() {
  const path = $("#save-path").value.trim();
  if (!path) throw new Error("Give the recipe file a path, e.g. recipes/my_recipe.yaml");
  const result = await api("/api/recipe/save", {recipe: compose.recipe, overrides: compose.overrides, path,
    overwrite: $("#save-overwrite").checked});
  $("#save-status").textContent = `saved ${result.path}`;
}

async function launch() {
  $("#launch").disabled = true;
  try {
    const result = await api("/api/launch", {recipe: compose.recipe, overrides: compose.overrides});
    const name = result.id || result.run_dir.split("/").filter(Boolean).pop();
    showTab("runs");
    openRun(name);
  } finally {
    $("#launch").disabled = false;
  }
}

// ---- Data: ft data preview in the page ---------------------------------------------------------------
async function preview() {
  const button = $("#preview-btn");
  button.disabled = true;
  $("#preview").replaceChildren(el("p", {class: "hint", text: "Loading the data and the tokenizer..."}));
  try {
    const result = await api("/api/preview", {recipe: compose.recipe, overrides: compose.overrides,
      n: Number($("#preview-n").value) || 3});
    $("#preview-warnings").replaceChildren(...(result.warnings || []).map((w) => el("li", {text: w})));
    $("#preview").replaceChildren(...result.examples.map((example, i) => {
      if (example.image) {
        return el("figure", {class: "example thumb"}, el("img", {src: example.image, alt: example.caption || ""}),
          el("figcaption", {text: example.caption || ""}));
      }
      return el("div", {class: "example"},
        el("div", {class: "example-head"}, `Example ${i + 1}`,
          el("span", {class: "percent", text: `${fmtNum(example.percent_trained, 3)}% trained`})),
        el("pre", {}, ...example.segments.map((s) => el("span", {class: s.trained ? "trained" : "prompt", text: s.text}))));
    }));
  } catch (e) {
    $("#preview").replaceChildren(el("div", {class: "error", text: e.message}));
  } finally {
    button.disabled = false;
  }
}

// ---- the SVG chart: curves of loss against step, with axes ---------------------------------------------
const COLORS = ["#2563eb", "#dc2626", "#059669", "#d97706", "#7c3aed", "#0891b2", "#db2777"];

// Round tick values covering [lo, hi]: the first at or below lo, the last at or above hi.
function niceTicks(lo, hi, count = 5) {
  if (hi <= lo) hi = lo + 1;
  const raw = (hi - lo) / count;
  const mag = Math.pow(10, Math.floor(Math.log10(raw)));
  const step = [1, 2, 5, 10].map((m) => m * mag).find((s) => s >= raw);
  const ticks = [];
  const last = Math.ceil(hi / step - 1e-9) * step;
  for (let t = Math.floor(lo / step + 1e-9) * step; t <= last + step * 1e-9; t += step) ticks.push(Number(t.toPrecision(12)));
  return ticks;
}

// series: [{label, points: [[step, value], ...], dashed, color, legend}]; legend: false leaves it out of the legend.
function drawChart(chart, series, {xLabel = "step", yLabel = "loss"} = {}) {
  const W = 640, H = 300, left = 56, right = 16, top = 28, bottom = 40;
  chart.replaceChildren();
  const all = series.flatMap((s) => s.points);
  chart.dataset.points = String(all.length);
  if (!all.length) {
    const t = svg("text", {x: W / 2, y: H / 2, "text-anchor": "middle", class: "empty"});
    t.textContent = "no points yet";
    chart.append(t);
    return;
  }
  const xs = all.map((p) => p[0]), ys = all.map((p) => p[1]);
  const xTicks = niceTicks(Math.min(0, ...xs), Math.max(...xs));
  const yTicks = niceTicks(Math.min(...ys), Math.max(...ys));
  const [x0, x1] = [xTicks[0], xTicks[xTicks.length - 1]], [y0, y1] = [yTicks[0], yTicks[yTicks.length - 1]];
  const sx = (x) => left + ((x - x0) / (x1 - x0 || 1)) * (W - left - right);
  const sy = (y) => H - bottom - ((y - y0) / (y1 - y0 || 1)) * (H - top - bottom);
  for (const t of yTicks) {
    chart.append(svg("line", {x1: left, x2: W - right, y1: sy(t), y2: sy(t), class: "grid"}));
    const label = svg("text", {x: left - 6, y: sy(t) + 4, "text-anchor": "end", class: "tick"});
    label.textContent = fmtNum(t, 3);
    chart.append(label);
  }
  for (const t of xTicks) {
    const label = svg("text", {x: sx(t), y: H - bottom + 16, "text-anchor": "middle", class: "tick"});
    label.textContent = String(t);
    chart.append(label);
  }
  chart.append(svg("line", {x1: left, x2: W - right, y1: H - bottom, y2: H - bottom, class: "axis"}));
  chart.append(svg("line", {x1: left, x2: left, y1: top, y2: H - bottom, class: "axis"}));
  const xl = svg("text", {x: (left + W - right) / 2, y: H - 6, "text-anchor": "middle", class: "axis-label"});
  xl.textContent = xLabel;
  const yl = svg("text", {x: 14, y: (top + H - bottom) / 2, "text-anchor": "middle", class: "axis-label",
    transform: `rotate(-90 14 ${(top + H - bottom) / 2})`});
  yl.textContent = yLabel;
  chart.append(xl, yl);
  let legendX = left;
  series.forEach((s, i) => {
    const color = s.color || COLORS[i % COLORS.length];
    if (s.points.length) {
      chart.append(svg("polyline", {points: s.points.map(([x, y]) => `${sx(x).toFixed(1)},${sy(y).toFixed(1)}`).join(" "),
        fill: "none", stroke: color, "stroke-width": 2, "stroke-dasharray": s.dashed ? "6 4" : "none",
        class: "series", "data-series": s.label, "data-n": s.points.length}));
      if (s.points.length === 1) chart.append(svg("circle", {cx: sx(s.points[0][0]), cy: sy(s.points[0][1]), r: 3, fill: color}));
    }
    if (s.legend === false || !s.points.length) return;
    chart.append(svg("rect", {x: legendX, y: 8, width: 12, height: 4, fill: color}));
    const name = svg("text", {x: legendX + 16, y: 14, class: "legend"});
    name.textContent = s.label;
    chart.append(name);
    legendX += 28 + 7.5 * s.label.length;
  });
}

const curve = (points, key) => points.filter((p) => typeof p[key] === "number").map((p) => [p.step, p[key]]);

// ---- Runs: the table, and the open run's live view -------------------------------------------------------
const runs = {list: [], open: null, log: "", logOffset: 0, timer: null, tableTimer: null};
const ACTIVE = new Set(["queued", "running"]);

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

function openRun(name) {
  runs.open = name;
  runs.logOffset = 0;
  runs.log = "";
  $("#run-view").hidden = false;
  $("#run-name").textContent = name;
  $("#run-log").textContent = "";
  $("#run-card").replaceChildren();
  $("#run-images").replaceChildren();
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
    refreshRuns().catch((e) => toast(e.message));
  }
}

// The log as a terminal would leave it: progress bars redraw their line (\r) and move the cursor (ESC[A).
function terminalText(text) {
  return text.replace(/\x1b\[[0-9;]*[A-Za-z]/g, "").split("\n")
    .map((line) => line.split("\r").filter((part) => part.trim()).pop() || "")
    .filter((line, i, lines) => line || (i > 0 && lines[i - 1])).join("\n");
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

// A model card needs headings, paragraphs, lists, code, tables and its run's images (`![alt](file)`, shown
// from fileUrl(file)); anything else shows as its text.
function renderMarkdown(text, fileUrl) {
  const root = el("div", {class: "markdown"});
  const inline = (s) => {
    const span = el("span");
    s.split(/(`[^`]+`|\*\*[^*]+\*\*)/).forEach((part) => {
      if (part.startsWith("`") && part.endsWith("`") && part.length > 1) span.append(el("code", {text: part.slice(1, -1)}));
      else if (part.startsWith("**") && part.endsWith("**") && part.length > 3) span.append(el("strong", {text: part.slice(2, -2)}));
      else span.append(part);
    });
    return span;
  };
  const lines = text.replace(/^---\n[\s\S]*?\n---\n/, "").split("\n");  // the card's YAML metadata
  for (let i = 0; i < lines.length; i++) {
    const line = lines[i];
    if (line.startsWith("```")) {
      const code = [];
      while (++i < lines.length && !lines[i].startsWith("```")) code.push(lines[i]);
      root.append(el("pre", {text: code.join("\n")}));
    } else if (/^!\[[^\]]*\]\([^)\s]+\)$/.test(line.trim())) {
      const [, alt, file] = line.trim().match(/^!\[([^\]]*)\]\(([^)\s]+)\)$/);
      if (!/^[a-z]+:/i.test(file)) root.append(el("img", {src: fileUrl(file), alt}));
    } else if (/^#{1,6} /.test(line)) {
      const level = Math.min(6, line.indexOf(" ") + 1);
      root.append(el(`h${level}`, {}, inline(line.replace(/^#+ /, ""))));
    } else if (line.startsWith("|")) {
      const table = el("table", {class: "grid"});
      for (; i < lines.length && lines[i].startsWith("|"); i++) {
        if (/^\|[\s:|-]+\|$/.test(lines[i])) continue;
        const cells = lines[i].slice(1, -1).split("|").map((c) => el("td", {}, inline(c.trim())));
        table.append(el("tr", {}, ...cells));
      }
      i--;
      root.append(table);
    } else if (/^\s*[-*] /.test(line)) {
      const list = el("ul");
      for (; i < lines.length && /^\s*[-*] /.test(lines[i]); i++) list.append(el("li", {}, inline(lines[i].replace(/^\s*[-*] /, ""))));
      i--;
      root.append(list);
    } else if (line.trim()) {
      root.append(el("p", {}, inline(line)));
    }
  }
  return root;
}

// ---- Compare: overlaid curves, a results table that fills while the runs train, the config diff --------------
const comparing = {names: [], timer: null};

async function compareSelected() {
  const names = [...document.querySelectorAll("#runs-table tbody input:checked")].map((c) => c.value);
  if (names.length < 2) throw new Error("Tick two or more runs to compare");
  await compareRuns(names);
}

async function compareRuns(names) {
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

// A sweep from the page: one queued run per value of one key (the rest as composed), compared as they train.
async function launchSweep() {
  const key = $("#sweep-key").value.trim();
  const values = $("#sweep-values").value.split(",").map((v) => v.trim()).filter(Boolean);
  if (!key || values.length < 2) throw new Error("A sweep needs a key and two or more values, e.g. 1e-3, 3e-3");
  const sets = values.map((value) => ({...compose.overrides, [key]: value}));
  for (const overrides of sets) {  // all checked before any starts: no half-launched sweep
    const check = await api("/api/check", {recipe: compose.recipe, overrides});
    if (!check.ok) throw new Error(Object.values(check.errors || {})[0] || check.error);
  }
  const names = [];
  for (const overrides of sets) {
    const result = await api("/api/launch", {recipe: compose.recipe, overrides});
    names.push(result.id || result.run_dir.split("/").filter(Boolean).pop());
  }
  await compareRuns(names);
}

// ---- Chat: streamed replies from the adapter and, beside them, the base model ---------------------------
const chat = {history: {adapter: [], base: []}, busy: false};

async function refreshChatRuns() {
  const {runs: list} = await api("/api/runs");
  const select = $("#chat-run");
  const keep = select.value;
  select.replaceChildren(...list.filter((r) => r.status === "finished")
    .map((r) => el("option", {value: r.name, "data-task": r.task || "", text: `${r.name} (${r.task || "?"})`})));
  if (keep && [...select.options].some((o) => o.value === keep)) select.value = keep;
  chatRunChanged();
}

function chatRunChanged() {
  const option = $("#chat-run").selectedOptions[0];
  const image = option && option.dataset.task === "text_to_image";
  for (const node of document.querySelectorAll(".text-only")) node.hidden = image;
  $("#chat-image").hidden = !image;
  resetChat();
}

function resetChat() {
  chat.history = {adapter: [], base: []};
  $("#chat-adapter-log").replaceChildren();
  $("#chat-base-log").replaceChildren();
}

async function streamReply(side, run) {
  const log = $(`#chat-${side}-log`);
  const bubble = el("div", {class: "message assistant streaming"});
  log.append(bubble);
  const response = await api("/api/chat", {run, messages: chat.history[side], adapter: side === "adapter",
    max_new_tokens: Number($("#chat-max").value) || 64}, {raw: true});
  const reader = response.body.getReader();
  const decoder = new TextDecoder();
  let reply = "";
  for (;;) {
    const {done, value} = await reader.read();
    if (done) break;
    reply += decoder.decode(value, {stream: true});
    bubble.textContent = reply;
    log.scrollTop = log.scrollHeight;
  }
  reply += decoder.decode();
  bubble.textContent = reply;
  bubble.classList.remove("streaming");
  chat.history[side].push({role: "assistant", content: reply});
}

async function sendChat() {
  const run = $("#chat-run").value;
  const text = $("#chat-input").value.trim();
  if (!run) throw new Error("No finished run to chat with yet");
  if (!text || chat.busy) return;
  chat.busy = true;
  $("#chat-send").disabled = true;
  $("#chat-input").value = "";
  const sides = $("#chat-base").checked ? ["adapter", "base"] : ["adapter"];
  try {
    for (const side of sides) {
      chat.history[side].push({role: "user", content: text});
      $(`#chat-${side}-log`).append(el("div", {class: "message user", text}));
    }
    for (const side of sides) await streamReply(side, run);  // one after the other: the CPU is shared
  } finally {
    chat.busy = false;
    $("#chat-send").disabled = false;
  }
}

async function generateImage() {
  const run = $("#chat-run").value;
  const prompt = $("#image-prompt").value.trim();
  if (!run || !prompt) return;
  $("#image-send").disabled = true;
  try {
    const result = await api("/api/generate-image", {run, prompt});
    $("#image-out").prepend(el("figure", {class: "thumb"}, el("img", {src: result.image, alt: prompt}), el("figcaption", {text: prompt})));
  } finally {
    $("#image-send").disabled = false;
  }
}

// ---- wiring ----------------------------------------------------------------------------------------------
function copyText(id, button) {
  const text = $(`#${id}`).textContent;
  const done = () => { button.textContent = "Copied"; setTimeout(() => { button.textContent = "Copy"; }, 1200); };
  if (navigator.clipboard && window.isSecureContext) navigator.clipboard.writeText(text).then(done, () => toast("Copy failed"));
  else {  // plain http on another host: no clipboard API
    const area = el("textarea", {style: "position:fixed;opacity:0"});
    area.value = text;
    document.body.append(area);
    area.select();
    document.execCommand("copy");
    area.remove();
    done();
  }
}

document.addEventListener("DOMContentLoaded", () => {
  for (const b of document.querySelectorAll("#tabs button")) b.addEventListener("click", () => showTab(b.dataset.tab));
  $("#task").addEventListener("change", () => {
    const picked = compose.recipes.find((r) => r.name === compose.requested);
    if (picked && picked.task === $("#task").value) return;
    fillRecipes();
    if ($("#recipe").value) guarded(loadForm)($("#recipe").value);
  });
  $("#recipe").addEventListener("change", () => {
    if ($("#recipe").value !== compose.requested) guarded(loadForm)($("#recipe").value);
  });
  $("#recipe-file-load").addEventListener("click", () => {
    const path = $("#recipe-file").value.trim();
    if (path) guarded(loadForm)(path);
  });
  $("#field-filter").addEventListener("input", filterFields);
  for (const b of document.querySelectorAll("button.copy")) b.addEventListener("click", () => copyText(b.dataset.copy, b));
  $("#save").addEventListener("click", guarded(saveRecipe));
  $("#launch").addEventListener("click", guarded(launch));
  $("#preview-btn").addEventListener("click", guarded(preview));
  $("#runs-refresh").addEventListener("click", guarded(refreshRuns));
  $("#compare-btn").addEventListener("click", guarded(compareSelected));
  $("#sweep").addEventListener("click", guarded(launchSweep));
  $("#run-stop").addEventListener("click", guarded(() => stopOrResume("stop")));
  $("#run-resume").addEventListener("click", guarded(() => stopOrResume("resume")));
  $("#chat-run").addEventListener("change", chatRunChanged);
  $("#chat-reset").addEventListener("click", resetChat);
  $("#chat-send").addEventListener("click", guarded(sendChat));
  $("#chat-input").addEventListener("keydown", (e) => { if (e.key === "Enter") guarded(sendChat)(); });
  $("#chat-base").addEventListener("change", () => { $("#chat-base-col").hidden = !$("#chat-base").checked; });
  $("#image-send").addEventListener("click", guarded(generateImage));
  guarded(loadTasks)();
});
