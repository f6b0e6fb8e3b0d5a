"""ft studio in a real browser: Debian's chromium, headless, driven by Playwright, against the real server
(`python -m ft studio`) launching real `python -m ft train` processes. One flow through the issue's acceptance
list, taking a screenshot of each main view (FT_UPDATE_SCREENSHOTS=1 copies them into docs/images)."""

import json
import os
import shutil
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from conftest import environment, free_port

CHROMIUM = Path("/usr/bin/chromium")
# No GPU, no network, no first-run work: the flags that keep a headless chromium quiet on a CI box.
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",  # a container's small /dev/shm would crash the renderer
]
DOCS_IMAGES = Path(__file__).resolve().parents[1] / "docs" / "images"
UPDATE_SCREENSHOTS = os.environ.get("FT_UPDATE_SCREENSHOTS") == "1"
# A run of the default recipe that finishes in seconds and logs its loss at every step (for the docs'
# pictures a longer one, whose curves and answers show more).
STEPS = 40 if UPDATE_SCREENSHOTS else 4
QUICK_FIELDS = {
    "training.max_steps": str(STEPS),
    "training.logging_steps": "1",
    "training.eval_steps": str(STEPS // 2),
    "training.per_device_train_batch_size": "8",
    "training.save_strategy": "no",
    "training.eval_before_training": False,
    "training.report_exact_match": False,
    "data.synthetic.num_examples": "200",
    "logging.report_to": "[]",
}
TIMEOUT_MS = 600_000 if UPDATE_SCREENSHOTS else 120_000  # for any one thing the page waits on


def browser_missing() -> str | None:
    if not CHROMIUM.exists():
        return f"{CHROMIUM} is missing: `make install-browser` installs Debian's chromium"
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        return "the playwright package is missing: `make install` installs the dev extra"
    return None


def get_json(url: str) -> dict:
    with urllib.request.urlopen(url, timeout=10) as response:
        return json.loads(response.read())


def cli_arguments() -> list[str]:
    """QUICK_FIELDS as the command line's arguments."""
    return [f"{key}={str(value).lower() if isinstance(value, bool) else value}" for key, value in QUICK_FIELDS.items()]


@pytest.fixture
def studio(tmp_path):
    """`python -m ft studio` on a free port with its runs in tmp_path/runs; yields the page's address."""
    if reason := browser_missing():
        pytest.skip(reason)
    port, runs_dir, log = free_port(), tmp_path / "runs", tmp_path / "studio.log"
    with log.open("w") as output:
        server = subprocess.Popen(
            [sys.executable, "-m", "ft", "studio", "--port", str(port), f"runs_dir={runs_dir}"],
            stdout=output,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env=environment(),
        )
    url = f"http://127.0.0.1:{port}/"
    try:
        deadline = time.monotonic() + 60
        while True:
            assert server.poll() is None, log.read_text()[-3000:]
            try:
                get_json(url + "api/tasks")
                break
            except OSError:
                assert time.monotonic() < deadline, log.read_text()[-3000:]
                time.sleep(0.2)
        yield url
    finally:
        try:  # runs outlive the server by design: stop what a failed test left running
            for run in get_json(url + "api/runs")["runs"]:
                if run["status"] in ("queued", "running"):
                    request = urllib.request.Request(f"{url}api/runs/{run['name']}/stop", data=b"{}", method="POST")
                    urllib.request.urlopen(request, timeout=10).close()
        except OSError:
            pass
        server.terminate()
        server.wait(timeout=30)
        print(log.read_text()[-3000:])


@pytest.fixture
def cli_run(studio, tmp_path):
    """The command line training into the studio's runs directory (with another learning rate) while the page
    composes; yields (the process, its log)."""
    log = tmp_path / "cli.log"
    with log.open("w") as output:
        process = subprocess.Popen(
            [sys.executable, "-m", "ft", "train", *cli_arguments(), "training.learning_rate=0.001"]
            + [f"training.output_dir={tmp_path / 'runs'}", "training.run_name=cli"],
            stdout=output,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env=environment(),
        )
    yield process, log
    if process.poll() is None:
        process.kill()
        process.wait()


def polyline_points(page, selector: str) -> list[int]:
    """How many points each curve of an SVG chart has."""
    return page.eval_on_selector_all(f"{selector} polyline", "lines => lines.map(l => Number(l.dataset.n))")


PROMPT = "Sort these digits: 7 2 9 4"  # a task the default recipe's run learned (tests/test_train.py)


def trained_answer(run_dir: Path, max_new_tokens: int) -> str:
    """What `ft chat` answers PROMPT with, from the run (greedy, its chat template and stop tokens)."""
    from ft.finish import generate

    session = generate.Session(run_dir)
    options = generate.ChatOptions(run_dir=str(run_dir), max_new_tokens=max_new_tokens)
    return session.generate(session.conversation([], PROMPT), options, stream=False)


@pytest.mark.slow
def test_studio_in_a_browser(default_run, studio, cli_run, tmp_path):
    """Compose the default recipe (an invalid value shows its one-line error beside the field), preview the data
    with its trained tokens, launch a run, watch its chart fill, chat with a trained run (`make train`'s, copied
    into the runs directory) and get ft chat's answer, see the launched run finish in the runs table beside a run
    the command line trained meanwhile with another learning rate, and compare the two (two curves, the key in
    the diff)."""
    from playwright.sync_api import expect, sync_playwright

    cli, cli_log = cli_run
    trained = tmp_path / "runs" / "make-train"
    shutil.copytree(default_run[0], trained, ignore=shutil.ignore_patterns("checkpoint-*"))
    expected = trained_answer(trained, max_new_tokens=24)
    assert expected.strip(), expected
    shots = tmp_path / "screenshots"
    shots.mkdir()

    def screenshot(page, view: str) -> None:
        page.screenshot(path=shots / f"studio-{view}.png")

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1280, "height": 800})
        page.set_default_timeout(TIMEOUT_MS)
        expect.set_options(timeout=TIMEOUT_MS)
        errors = []
        page.on("pageerror", lambda error: errors.append(str(error)))
        page.goto(studio)

        # Compose: the default recipe's form, checked on every change.
        page.select_option("#task", "sft")
        page.select_option("#recipe", "default")
        expect(page.locator("#form")).to_have_attribute("data-recipe", "default")
        max_steps = page.locator('input[data-key="training.max_steps"]')
        expect(max_steps).to_have_value("200")
        expect(page.locator("#command")).to_contain_text("recipe=default")
        for key, value in QUICK_FIELDS.items():  # the filter box finds a key, opening its folded section
            page.fill("#field-filter", key)
            if isinstance(value, bool):
                page.set_checked(f'input[data-key="{key}"]', value)
            elif page.locator(f'select[data-key="{key}"]').count():
                page.select_option(f'select[data-key="{key}"]', value)
            else:
                page.fill(f'input[data-key="{key}"]', value)
        page.fill("#field-filter", "")
        expect(page.locator("#command")).to_contain_text(f"training.max_steps={STEPS}")
        expect(page.locator("#yaml")).to_contain_text(f"max_steps: {STEPS}")
        error = page.locator('.field[data-key="training.max_steps"] .field-error')
        max_steps.fill("-5")
        expect(error).to_contain_text("training.max_steps")
        expect(page.locator("#launch")).to_be_disabled()
        max_steps.evaluate("input => input.scrollIntoView({block: 'center'})")
        screenshot(page, "compose")
        max_steps.fill(str(STEPS))
        expect(error).to_be_empty()
        expect(page.locator("#launch")).to_be_enabled()

        # Data: the examples as training sees them, trained tokens highlighted.
        page.click('#tabs button[data-tab="data"]')
        page.click("#preview-btn")
        expect(page.locator("#preview .example").first).to_be_visible()
        assert page.locator("#preview .example .trained").count() > 0
        expect(page.locator("#preview .percent").first).to_contain_text("% trained")
        screenshot(page, "data")

        # Launch: the run view fills its chart while the run trains.
        page.click('#tabs button[data-tab="compose"]')
        page.click("#launch")
        expect(page.locator("#runs")).to_be_visible()
        run = page.locator("#run-name").inner_text()
        page.wait_for_function("Number(document.querySelector('#run-chart').dataset.points || 0) >= 2")
        expect(page.locator("#run-log")).not_to_be_empty()
        expect(page.locator("#run-view")).to_have_attribute("data-status", "finished")
        assert sum(polyline_points(page, "#run-chart")) >= 2
        expect(page.locator("#run-progress")).to_contain_text(f"step {STEPS}/{STEPS}")
        expect(page.locator("#run-card")).not_to_be_empty()
        page.locator("#run-view").evaluate("view => view.scrollIntoView()")
        screenshot(page, "run")

        # Export: the finished run's controls run `ft export` (merged: the quickest) and list the job to its end.
        expect(page.locator("#run-finish")).to_be_visible()
        page.select_option("#export-format", "merged")
        page.click("#export-btn")
        job = page.locator('#jobs-list li[data-status="finished"]')
        expect(job).to_contain_text("ft export format=merged")
        merged = Path(job.locator(".job-output").inner_text().removeprefix("→ ").strip())
        assert (merged / "config.json").is_file() and list(merged.glob("*.safetensors")), merged

        # Chat: a trained run's streamed answer (ft chat's) beside the base model's.
        page.click('#tabs button[data-tab="chat"]')
        page.select_option("#chat-run", "make-train")
        page.fill("#chat-max", "24")
        page.fill("#chat-input", PROMPT)
        page.click("#chat-send")
        replies = {}
        for side in ("adapter", "base"):
            reply = page.locator(f"#chat-{side}-log .message.assistant:not(.streaming)")
            expect(reply).to_have_count(1)
            replies[side] = reply.inner_text().strip()
        assert replies["adapter"] == expected.strip(), (replies, expected)
        assert replies["base"] != replies["adapter"], replies
        screenshot(page, "chat")

        # Runs: the page's run and the command line's, both finished.
        assert cli.wait(timeout=TIMEOUT_MS / 1000) == 0, cli_log.read_text()[-3000:]
        page.click('#tabs button[data-tab="runs"]')
        page.click("#runs-refresh")
        for name in (run, "cli"):
            expect(page.locator(f'#runs-table tr[data-run="{name}"]')).to_have_attribute("data-status", "finished")
        page.evaluate("window.scrollTo(0, 0)")
        screenshot(page, "runs")

        # Compare: one curve per run, and the key that differs in the diff.
        for name in (run, "cli"):
            page.check(f'#runs-table tr[data-run="{name}"] input[type=checkbox]')
        page.click("#compare-btn")
        expect(page.locator("#compare")).to_be_visible()
        expect(page.locator('#diff-table tr[data-key="training.learning_rate"]')).to_be_visible()
        curves = page.eval_on_selector_all("#compare-chart polyline", "ls => ls.map(l => l.dataset.series)")
        assert run in curves and "cli" in curves, curves
        screenshot(page, "compare")

        assert not errors, errors
        browser.close()

    if UPDATE_SCREENSHOTS:
        DOCS_IMAGES.mkdir(exist_ok=True)
        for shot in shots.iterdir():
            shutil.copy(shot, DOCS_IMAGES / shot.name)
