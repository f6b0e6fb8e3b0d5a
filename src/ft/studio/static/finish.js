// Export and push a finished run: the server runs `python -m ft export ...` / `python -m ft push ...` (the CLI
// itself) and this lists those jobs, polling while one runs.
import {$, api, el, guarded, toast} from "./util.js";

const finish = {run: null, timer: null};
const runUrl = (name) => `/api/runs/${encodeURIComponent(name)}`;

// Called by the run view with the run's details: the controls show for a finished run only.
export function showFinish(r) {
  const done = r.status === "finished" && (r.exports || []).length > 0;
  $("#run-finish").hidden = !done;
  if (!done) return;
  if (finish.run !== r.name) {
    finish.run = r.name;
    $("#export-format").replaceChildren(...r.exports.map((f) => el("option", {value: f, text: f})));
  }
  refreshJobs(r.name).catch((e) => toast(e.message));
}

async function refreshJobs(name) {
  clearTimeout(finish.timer);
  const {jobs} = await api(`${runUrl(name)}/jobs`);
  if (finish.run !== name) return;
  $("#jobs-list").replaceChildren(...jobs.slice().reverse().map((j) =>
    el("li", {"data-job": j.id, "data-status": j.status},
      el("span", {class: `status status-${j.status}`, text: j.status}),
      el("code", {text: ` ft ${j.command.slice(3).filter((a) => !a.startsWith("run_dir=")).join(" ")} `}),
      j.returncode != null ? el("span", {text: `exit ${j.returncode} `}) : null,
      j.output ? el("span", {class: "job-output", text: `→ ${j.output}`}) : null,
      el("pre", {class: "log job-tail", text: j.tail.join("\n")}))));
  for (const pre of document.querySelectorAll("#jobs-list .job-tail")) pre.scrollTop = pre.scrollHeight;  // the end
  if (jobs.some((j) => j.status === "running")) finish.timer = setTimeout(guarded(() => refreshJobs(name)), 1000);
}

async function start(action, body) {
  const name = finish.run;
  await api(`${runUrl(name)}/${action}`, body);
  await refreshJobs(name);
}

export function init() {
  $("#export-btn").addEventListener("click", guarded(() => start("export", {format: $("#export-format").value})));
  $("#push-btn").addEventListener("click", guarded(() => start("push", {
    repo_id: $("#push-repo").value.trim(),
    private: $("#push-private").checked || undefined,  // unticked: the repo's own default (PushOptions')
    dry_run: $("#push-dry-run").checked,
  })));
}
