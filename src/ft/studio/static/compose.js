// Compose and Data: the form generated from the schema, checked on every change (the error beside its field),
// the live command line and recipe file, save, launch, a sweep over one key, and the data preview.
import {compareRuns, openRun} from "./runs.js";
import {$, api, el, fmtNum, formatValue, guarded, showTab, toast} from "./util.js";

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

export function init() {
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
  $("#sweep").addEventListener("click", guarded(launchSweep));
  $("#preview-btn").addEventListener("click", guarded(preview));
  guarded(loadTasks)();
}
