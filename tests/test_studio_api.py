"""ft studio's JSON API (src/ft/studio): the form is `ft train --help`'s keys, checks are ft train's, runs launched
from it are the CLI's (same config.yaml, same run dir), stop checkpoints and resume ends where an uninterrupted CLI
run ends, runs outlive the server, and its security rules. The page itself is tests/test_studio_browser.py's."""

import dataclasses
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from conftest import assert_refused, environment, free_port, run_ft
from ft import config

pytest.importorskip("fastapi")

# The tiny run of tests/test_resume.py, shortened: a loss logged every step, no scheduled checkpoint (the only one
# is the one SIGTERM asks for, and the final one). Its tracker project holds shell metacharacters: they must
# reach the config verbatim, and run nothing.
STEPS = 8
OVERRIDES = {
    "training.max_steps": str(STEPS),
    "training.save_steps": "1000",
    "training.logging_steps": "1",
    "logging": "none",
    "data.synthetic.num_examples": "200",
    "data.eval_size": "0",
    "training.per_device_train_batch_size": "4",
    "training.max_length": "64",
    "training.report_exact_match": "false",
    "logging.project": "x; touch pwned",
}
NOT_COMPARED = ("training.run_name", "training.output_dir")


@pytest.fixture(scope="module")
def project(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("project")


def client_for(project: Path, token: str | None = None):
    from fastapi.testclient import TestClient

    from ft.studio.app import create_app

    return TestClient(create_app(project / "runs", project, token), base_url="http://127.0.0.1")


@pytest.fixture(scope="module")
def client(project):
    return client_for(project)


def help_keys() -> list[str]:
    """The config keys `python -m ft train --help` lists (its "config keys" section, a key=default per entry)."""
    text = run_ft("train", "--help").stdout
    section = text.split("config keys (set with key=value", 1)[1].split("\nexamples:", 1)[0]
    return re.findall(r"^  ([\w.]+)=", section, re.MULTILINE)


def test_the_form_lists_every_key_of_ft_train_help(client):
    form = client.get("/api/form", params={"recipe": "default"}).json()
    fields = {f["key"]: f for group in form["groups"] for f in group["fields"]}
    keys = help_keys()
    assert len(keys) > 150 and "training.max_steps" in keys and "dpo.beta" in keys
    assert sorted(fields) == sorted(keys)
    steps = fields["training.max_steps"]
    assert (steps["type"], steps["value"], steps["default"], steps["min"]) == ("int", 200, -1, -1)
    assert steps["help"].startswith("steps to train")
    method = fields["peft.method"]
    assert method["type"] == "choice" and "lora" in method["choices"]
    assert fields["peft.modules_to_save"]["value"] == ["lm_head"] and fields["peft.modules_to_save"]["nullable"]
    assert {g["name"]: g["task"] for g in form["groups"]}["dpo"] == "dpo"
    listed = client.get("/api/tasks").json()
    assert {"sft", "dpo", "text_to_image"} <= {t["name"] for t in listed["tasks"]}
    recipes = {r["name"]: r["task"] for r in listed["recipes"]}
    assert recipes["default"] == "sft" and recipes["tiny_dpo"] == "dpo" and recipes["tiny_sd_lora"] == "text_to_image"


def test_check_shows_ft_trains_error_under_its_key_and_saves_a_recipe_that_composes_the_same(client, project):
    bad = client.post("/api/check", json={"recipe": "default", "overrides": {"training.max_steps": "-5"}}).json()
    assert not bad["ok"] and bad["error"] is None
    assert bad["errors"] == {"training.max_steps": "training.max_steps must be >= -1, got -5"}
    typo = client.post("/api/check", json={"recipe": "default", "overrides": {"training.lr": "1"}}).json()
    assert list(typo["errors"]) == ["training.lr"] and "unknown key 'training.lr'" in typo["errors"]["training.lr"]

    overrides = {"training.max_steps": 3, "peft.r": "8", "logging.project": "x; touch pwned"}
    good = client.post("/api/check", json={"recipe": "default", "overrides": overrides}).json()
    assert good["ok"] and good["errors"] == {}
    arguments = ["recipe=default", "training.max_steps=3", "peft.r=8", "logging.project='x; touch pwned'"]
    assert good["command"] == ["python", "-m", "ft", "train", *arguments, "training.output_dir=runs"]
    assert good["command_line"].startswith("python -m ft train recipe=default training.max_steps=3 peft.r=8 ")
    assert "defaults:\n  - default  # the recipe this one extends" in good["yaml"]

    saved = client.post("/api/recipe/save", json={"recipe": "default", "overrides": overrides, "path": "mine.yaml"})
    assert saved.status_code == 200, saved.text
    path = Path(saved.json()["path"])
    assert path == project / "mine.yaml" and path.read_text() == good["yaml"].replace("recipe.yaml", "mine.yaml")
    from_file = config.compose([str(path)])
    assert from_file.logging.project == "x; touch pwned" and from_file.peft.r == 8
    assert dataclasses.replace(from_file, recipe="default") == config.compose(arguments)
    again = client.post("/api/recipe/save", json={"recipe": "default", "overrides": {}, "path": "mine.yaml"})
    assert again.status_code == 400 and "already exists" in again.json()["error"]
    assert path.read_text() == good["yaml"].replace("recipe.yaml", "mine.yaml")


def test_paths_outside_the_project_and_runs_are_refused(client, project, tmp_path):
    outside = tmp_path / "outside.yaml"
    outside.write_text("training:\n  max_steps: 1\n")
    (project / "link.yaml").symlink_to(outside)
    for recipe in (str(outside), "../outside.yaml", "link.yaml"):
        answer = client.get("/api/form", params={"recipe": recipe})
        assert answer.status_code == 403 and "outside the project" in answer.json()["error"], recipe
    for path in (str(tmp_path / "x.yaml"), "../x.yaml", "link.yaml"):
        answer = client.post("/api/recipe/save", json={"recipe": "default", "overrides": {}, "path": path})
        assert answer.status_code == 403, path
    assert not (tmp_path / "x.yaml").exists() and outside.read_text() == "training:\n  max_steps: 1\n"
    (project / "runs" / "r").mkdir(parents=True)
    for url in ("/api/runs/r/file/../../link.yaml", "/api/runs/r/file/%2E%2E/%2E%2E/mine.yaml", "/api/runs/..%2Fr"):
        assert client.get(url).status_code in (403, 404), url
    shutil.rmtree(project / "runs" / "r")
    (project / "link.yaml").unlink()


def test_a_token_guards_every_api_call_and_a_public_bind_needs_one(project):
    locked = client_for(project, token="s3cret")
    assert locked.get("/api/tasks").status_code == 403
    assert locked.get("/api/tasks", headers={"X-FT-Token": "wrong"}).status_code == 403
    assert locked.post("/api/check", json={"recipe": "default", "overrides": {}}).status_code == 403
    assert locked.get("/api/tasks", headers={"X-FT-Token": "s3cret"}).status_code == 200
    assert locked.get("/api/runs", params={"token": "s3cret"}).status_code == 200
    assert locked.get("/").status_code == 200  # the page itself, which reads the token from its URL
    open_ = client_for(project)
    assert open_.get("/api/tasks", headers={"Host": "attacker.example:7860"}).status_code == 403  # DNS rebinding
    assert open_.get("/api/tasks", headers={"Host": "localhost:7860"}).status_code == 200
    not_json = open_.post("/api/check", content="{}", headers={"Content-Type": "text/plain"})
    assert not_json.status_code == 400 and "JSON" in not_json.json()["error"]
    result = run_ft("studio", "--host", "0.0.0.0", env_drop=("FT_STUDIO_TOKEN",))
    assert_refused(result.returncode, result.stderr, "--host 0.0.0.0", "--token")


# --- runs launched from the page -----------------------------------------------------------------------------


class Server:
    """`python -m ft studio` in the project directory, a process of its own (killed and restarted by the test)."""

    def __init__(self, project: Path):
        import httpx

        self.port, self.log = free_port(), project / f"server-{time.monotonic_ns()}.log"
        with self.log.open("w") as output:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "ft", "studio", "--port", str(self.port)],
                cwd=project,
                stdout=output,
                stderr=subprocess.STDOUT,
                env=environment() | {"PYTHONPATH": absolute(os.environ.get("PYTHONPATH", ""))},
            )
        self.http = httpx.Client(base_url=f"http://127.0.0.1:{self.port}", timeout=120)
        deadline = time.monotonic() + 60
        while True:
            assert self.process.poll() is None, self.log.read_text()
            assert time.monotonic() < deadline, "the studio did not start"
            try:
                if self.http.get("/api/health").status_code == 200:
                    return
            except httpx.TransportError:
                time.sleep(0.1)

    def get(self, url: str, **params):
        answer = self.http.get(url, params=params)
        assert answer.status_code == 200, answer.text
        return answer.json()

    def post(self, url: str, body: dict | None = None):
        answer = self.http.post(url, json=body or {})
        assert answer.status_code == 200, answer.text
        return answer.json()

    def run(self, name: str) -> dict:
        return self.get(f"/api/runs/{name}")

    def wait(self, name: str, condition, timeout: float = 300) -> dict:
        deadline = time.monotonic() + timeout
        while not condition(run := self.run(name)):
            assert time.monotonic() < deadline, (run, self.get(f"/api/runs/{name}/log")["text"][-3000:])
            time.sleep(0.05)
        return run

    def kill(self) -> None:
        self.process.send_signal(signal.SIGKILL)
        self.process.wait()
        self.http.close()


def absolute(search_path: str) -> str:
    """PYTHONPATH=src, run from another directory, still finds this checkout's ft."""
    return os.pathsep.join(str(Path(p).resolve()) for p in search_path.split(os.pathsep) if p)


def step_losses(run_dir: Path) -> dict[int, float]:
    history = json.loads((run_dir / "trainer_state.json").read_text())["log_history"]
    return {row["step"]: row["loss"] for row in history if "loss" in row}


def layout(run_dir: Path) -> list[str]:
    return sorted(str(p.relative_to(run_dir)) for p in run_dir.rglob("*"))


def compared(run_dir: Path) -> dict:
    saved = yaml.safe_load((run_dir / "config.yaml").read_text())
    for key in NOT_COMPARED:
        section, name = key.split(".")
        saved[section].pop(name)
    return saved


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


@pytest.fixture(scope="module")
def studio_runs(project):
    """Run A launched, the server killed and restarted, A watched, stopped (SIGTERM) and resumed; run B launched
    while A runs, queued, started when A stopped (it fails in seconds: its hub dataset cannot be had offline);
    then the CLI run of A's command line. Returns what the test checks."""
    seen = {}
    server = Server(project)
    a = server.post("/api/launch", {"recipe": "default", "overrides": OVERRIDES})
    failing = {**OVERRIDES, "data.source": "nobody/no-such-dataset", "training.run_name": "b"}
    b = server.post("/api/launch", {"recipe": "default", "overrides": failing})
    seen["launched"] = (a["status"], b["status"])
    name = a["id"]
    pid = json.loads((project / "runs" / ".studio" / f"{name}.json").read_text())["pid"]
    server.kill()  # while A starts up: it trains on, and the next server finds it
    seen["alive_after_kill"] = alive(pid)
    server = Server(project)
    seen["after_restart"] = {run["name"]: run["status"] for run in server.get("/api/runs")["runs"]}
    seen["live"] = server.wait(name, lambda run: len(server.get(f"/api/runs/{name}/metrics")["points"]) >= 2)
    seen["stop"] = server.post(f"/api/runs/{name}/stop")["status"]
    seen["live_points"] = server.get(f"/api/runs/{name}/metrics")["points"]  # the rows logged before the stop
    seen["stopped"] = server.wait(name, lambda run: run["status"] != "running")
    seen["stopped_log"] = server.get(f"/api/runs/{name}/log", offset=0)["text"]
    seen["checkpoints"] = sorted(p.name for p in (project / "runs" / name).glob("checkpoint-*"))
    seen["b_after_stop"] = server.wait("b", lambda run: run["status"] != "queued", timeout=30)["status"]
    seen["resume"] = (server.post(f"/api/runs/{name}/resume")["status"], server.run("b")["status"])
    seen["b"] = server.wait("b", lambda run: run["status"] in ("finished", "failed"))
    seen["a"] = server.wait(name, lambda run: run["status"] in ("finished", "failed"))
    seen["a_details"] = server.run(name)
    seen["b_log"] = server.get("/api/runs/b/log", offset=0)["text"]
    command = server_command(project / "runs" / ".studio" / f"{name}.json")
    cli = run_ft(*command[:-1], "training.run_name=cli", cwd=project, warm=True)
    assert cli.returncode == 0, cli.stderr[-3000:]
    seen["compare"] = server.get("/api/compare", runs=f"{name},cli")
    server.kill()
    return project / "runs", name, seen


def server_command(state: Path) -> list[str]:
    """The arguments after `python -m ft` the studio ran."""
    command = json.loads(state.read_text())["command"]
    assert command[:3] == ["python", "-m", "ft"]
    return command[3:]


@pytest.mark.slow
def test_a_launched_run_is_the_clis_outlives_the_server_stops_at_a_checkpoint_and_resumes(studio_runs, project):
    runs, name, seen = studio_runs
    assert seen["launched"] == ("running", "queued")  # one at a time: B waits in the queue
    assert seen["live"]["status"] == "running"  # the chart has points while the run trains:
    points = [p for p in seen["live_points"] if "loss" in p]
    assert len(points) >= 2 and [p["step"] for p in points] == list(range(1, len(points) + 1))
    logged = (runs / name / "log_history.jsonl").read_text()  # the resumed process appended its rows
    assert [json.loads(row)["step"] for row in logged.splitlines() if '"loss"' in row] == list(range(1, STEPS + 1))
    assert seen["alive_after_kill"], "killing the server killed the run"
    assert seen["after_restart"] == {name: "running", "b": "queued"}, "the restarted server lost the runs"
    assert seen["stop"] == "stopping" and seen["stopped"]["status"] == "stopped"
    log = seen["stopped_log"]
    assert "SIGTERM received" in log and "ft: to resume: python -m ft train" in log
    (checkpoint,) = seen["checkpoints"]
    step = int(checkpoint.split("-")[1])
    assert 2 <= step < STEPS and f"stopped by SIGTERM at step {step}" in log
    assert seen["b_after_stop"] in ("running", "failed")  # the queue moved on when A exited
    assert seen["resume"] in (("queued", "running"), ("running", "failed"))  # behind B, while B runs
    assert seen["b"]["status"] == "failed" and seen["a"]["status"] == "finished"
    assert seen["b_log"].rstrip().splitlines()[-1].startswith("ft: error: cannot load the hub dataset")
    details = seen["a_details"]
    assert details["step"] == details["max_steps"] == STEPS and details["end_loss"] < details["start_loss"]
    assert details["command"][-1] == f"training.run_name={name}" and "README.md" in details["files"]
    assert f"resuming from runs/{name}/{checkpoint}" in (runs / ".studio" / f"{name}.log").read_text()

    # the same as the CLI's: config.yaml (where the run is aside) and the run directory's files (but the
    # checkpoint SIGTERM asked for)
    assert compared(runs / name) == compared(runs / "cli")
    assert [f for f in layout(runs / name) if not f.startswith(checkpoint)] == layout(runs / "cli")
    assert compared(runs / name)["logging"]["project"] == "x; touch pwned"
    assert not list(project.rglob("pwned")), "a shell ran the launch arguments"
    # stopped and resumed from the page = trained straight through by the CLI
    expected, actual = step_losses(runs / "cli"), step_losses(runs / name)
    assert sorted(actual) == list(range(1, STEPS + 1))
    assert max(abs(actual[s] - expected[s]) for s in expected) <= 1e-5, (actual, expected)
    from safetensors.torch import load_file

    resumed = load_file(runs / name / "adapter_model.safetensors")
    straight = load_file(runs / "cli" / "adapter_model.safetensors")
    assert max((resumed[k] - straight[k]).abs().max().item() for k in straight) <= 1e-4

    compare = seen["compare"]
    assert [len([p for p in run["points"] if "loss" in p]) for run in compare["runs"]] == [STEPS, STEPS]
    assert compare["config_diff"] == []  # the same recipe and overrides: only the run's name differs


def finished_jobs(client, run: str, count: int) -> list[dict]:
    deadline = time.monotonic() + 300
    while True:
        jobs = client.get(f"/api/runs/{run}/jobs").json()["jobs"]
        if len(jobs) == count and all(j["status"] != "running" for j in jobs):
            return jobs
        assert time.monotonic() < deadline, jobs
        time.sleep(0.1)


@pytest.mark.slow
def test_export_and_push_run_the_cli_on_a_finished_run(studio_runs, client, project, tmp_path):
    runs, _, _ = studio_runs
    run = runs / "cli"  # the finished run the CLI trained
    assert client.get("/api/runs/cli").json()["exports"] == ["gguf", "gguf-adapter", "merged"]  # no kohya: sft
    refused = client.post("/api/runs/cli/export", json={"format": "zip"})
    assert refused.status_code == 400 and refused.json()["error"].startswith("format=zip is not one of gguf, ")
    unfinished = client.post("/api/runs/b/export", json={"format": "merged"})
    assert unfinished.status_code == 400 and "b is failed: export and push take a finished run" in unfinished.text
    assert client.post("/api/runs/cli/push", json={}).status_code == 400  # no repo id

    started = client.post("/api/runs/cli/export", json={"format": "merged"}).json()
    assert started["status"] == "running" and started["command"][:4] == ["python", "-m", "ft", "export"]
    # kohya is offered for text_to_image runs only, and the CLI refuses it here: the job fails with its one line
    client.post("/api/runs/cli/export", json={"format": "kohya"})
    merged, kohya = finished_jobs(client, "cli", 2)
    assert (merged["status"], merged["returncode"], merged["output"]) == ("finished", 0, str(run / "export-merged"))
    assert (kohya["status"], kohya["returncode"]) == ("failed", 2)
    assert kohya["tail"][-1] == "ft: error: format=kohya is for task=text_to_image runs; this run is task=sft: " + (
        "export format=gguf or merged"
    )
    cli = run_ft("export", f"run_dir={run}", "format=merged", f"out={tmp_path / 'merged'}")
    assert cli.returncode == 0, cli.stderr[-2000:]
    assert sorted(p.name for p in (run / "export-merged").iterdir()) == sorted(
        p.name for p in (tmp_path / "merged").iterdir()
    )

    card = (run / "README.md").read_text()
    client.post("/api/runs/cli/push", json={"repo_id": "me/tiny", "dry_run": True})
    client.post("/api/runs/cli/push", json={"repo_id": "x; touch pwned"})  # dry run by default
    *_, pushed, odd = finished_jobs(client, "cli", 4)
    listing = run_ft("push", "--dry-run", f"run_dir={run}", "repo_id=me/tiny")
    assert pushed["status"] == "finished" and pushed["tail"] == listing.stdout.splitlines()
    assert pushed["tail"][0].startswith("ft: would upload 8 files from ") and pushed["tail"][0].endswith(" me/tiny:")
    assert any(line.startswith("  adapter_model.safetensors  (") for line in pushed["tail"])
    assert "export-merged/" in pushed["tail"][-1]  # ft: left out: ... (the export is no file of the run)
    assert (run / "README.md").read_text() == card  # nothing pushed: the card still points at the run dir
    assert odd["command"][-1] == "repo_id=x; touch pwned" and "--dry-run" in odd["command"]
    assert odd["status"] == "failed" and odd["tail"][-1].startswith("ft: error: repo_id='x; touch pwned' is not a")
    assert not list(project.rglob("pwned")), "a shell ran the push arguments"


def test_compare_lists_the_config_keys_that_differ(client, project, tmp_path):
    for name, rank in (("r8", 8), ("r16", 16)):
        run_dir = project / "runs" / name
        run_dir.mkdir(parents=True)
        (run_dir / "config.yaml").write_text(f"task: sft\npeft:\n  r: {rank}\ntraining:\n  run_name: {name}\n")
        (run_dir / "log_history.jsonl").write_text(
            "".join(json.dumps({"step": s, "loss": 1.0 / s}) + "\n" for s in (1, 2, 3)) + '{"step": 4, "lo'
        )
    answer = client.get("/api/compare", params={"runs": "r8,r16"}).json()
    assert answer["config_diff"] == [{"key": "peft.r", "values": [8, 16]}]
    assert [p["step"] for p in answer["runs"][0]["points"]] == [1, 2, 3]  # a line being written is skipped
    assert client.get("/api/compare", params={"runs": "r8,nope"}).status_code == 404
    for name in ("r8", "r16"):
        shutil.rmtree(project / "runs" / name)
    assert os.path.isdir(project)


def test_progress_and_eta_come_from_the_trainers_bar():
    from ft.studio import runs

    log = (
        "ft: converting: 100%|##| 200/200 [00:00<00:00, 7599.96 examples/s]\n"
        "Loading weights: 100%|##| 39/39 [00:00<00:00, 9286.28it/s]\n"
        "  8%|#         | 1/12 [00:01<00:20,  1.80s/it]\r 42%|####      | 5/12 [00:02<01:03,  2.1it/s]"
    )
    assert runs._progress(log, 12) == (5, 12, 63)
    assert runs._progress(log, -1) == (5, 12, 63)  # trained by epochs: the unlabelled bar, not the loading ones
    assert runs._progress("ft: step 3/30 loss 1.0\n", 30) == (3, 30, None)  # the text-to-image loop
