"""`python -m ft train -m a=1,2 b=x,y`: one run per combination of the listed values, in turn.

Every combination is composed and checked first, so a typo fails before anything trains. Then each
run trains in its own `python -m ft train` subprocess (so one that fails or leaks memory cannot harm
the next) in its own run dir under one sweep dir, with its output in `<run>.log` beside it. A failed
run is recorded and the sweep goes on. At the end a table of the runs (overrides, status, eval loss
before/after, train time, run dir) is printed and written to the sweep dir as sweep.md and sweep.csv.
"""

import csv
import itertools
import json
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from ft.errors import FtError

TABLE_MD, TABLE_CSV = "sweep.md", "sweep.csv"
COLUMNS = ("run", "overrides", "status", "eval loss before", "eval loss after", "train time (s)", "run dir")


@dataclass
class Outcome:
    name: str
    swept: list[str]  # this run's values of the swept keys, as key=value
    status: str  # ok, or failed (exit N)
    error: str = ""  # what a failed run's last error line said, and where its log is
    base_loss: float | None = None
    eval_loss: float | None = None
    train_seconds: float | None = None
    run_dir: Path | None = None

    def row(self) -> list[str]:
        def number(value, digits):
            return "" if value is None else f"{value:.{digits}f}"

        return [
            self.name,
            " ".join(self.swept),
            self.status,
            number(self.base_loss, 4),
            number(self.eval_loss, 4),
            number(self.train_seconds, 1),
            str(self.run_dir or ""),
        ]


def combinations(overrides: list[str]) -> list[tuple[list[str], list[str]]]:
    """[(all overrides of one run, its swept ones)], one per combination of the swept values."""
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra.errors import OverrideParseException

    try:
        parsed = OverridesParser.create().parse_overrides(overrides)
    except OverrideParseException as e:
        raise FtError(f"cannot parse override: {str(e).splitlines()[0]}") from None
    choices = []
    for override in parsed:
        key = override.get_key_element()
        values = override.sweep_string_iterator() if override.is_sweep_override() else None
        choices.append([f"{key}={v}" for v in values] if values else [override.input_line])
    swept = [i for i, override in enumerate(parsed) if override.is_sweep_override()]
    if not swept:
        raise FtError("-m sweeps over listed values, and none is listed: e.g. training.learning_rate=1e-4,3e-4")
    return [(list(combo), [combo[i] for i in swept]) for combo in itertools.product(*choices)]


def run(overrides: list[str], show_config: bool = False) -> int:
    """The whole sweep; returns the exit code: 0 when every run succeeded, else 1."""
    from ft import config
    from ft.config import recipe_file

    overrides = recipe_file.expand(overrides)
    runs = combinations(overrides)
    configs = [config.compose(combo) for combo, _ in runs]  # every typo fails now, before any training
    if show_config:
        for (_, swept), cfg in zip(runs, configs):
            print(f"# {' '.join(swept)}\n{config.to_yaml(cfg)}", end="")
        return 0
    first = configs[0]
    sweep_name = first.training.run_name or f"sweep-{Path(str(first.recipe)).stem}-{time.strftime('%Y%m%d-%H%M%S')}"
    sweep_dir = Path(first.training.output_dir).expanduser() / sweep_name
    if sweep_dir.exists():
        raise FtError(f"sweep directory {sweep_dir} already exists: set another training.run_name or remove it")
    sweep_dir.mkdir(parents=True)
    print(f"ft: sweep of {len(runs)} runs in {sweep_dir}", flush=True)
    outcomes = []
    for index, (combo, swept) in enumerate(runs):
        name = f"run-{index}"
        print(f"ft: [{index + 1}/{len(runs)}] {' '.join(swept)}", flush=True)
        outcome = _train(combo, swept, sweep_dir, name)
        print(f"ft: [{index + 1}/{len(runs)}] {outcome.status}{outcome.error}", flush=True)
        outcomes.append(outcome)
    table = write_tables(outcomes, sweep_dir)
    print(table, flush=True)
    failed = sum(o.status != "ok" for o in outcomes)
    print(f"ft: sweep done: {len(outcomes) - failed} of {len(outcomes)} runs succeeded; tables in {sweep_dir}")
    return 1 if failed else 0


def _train(combo: list[str], swept: list[str], sweep_dir: Path, name: str) -> Outcome:
    kept = [o for o in combo if not o.lstrip("+~").startswith(("training.output_dir=", "training.run_name="))]
    where = [f"training.output_dir={sweep_dir}", f"training.run_name={name}"]
    command = [sys.executable, "-m", "ft", "train", *kept, *where]
    log = sweep_dir / f"{name}.log"
    with log.open("w") as out:
        code = subprocess.run(command, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL).returncode
    run_dir = sweep_dir / name
    if code != 0:
        lines = [line for line in log.read_text(errors="replace").splitlines() if line.strip()]
        last = next((line for line in reversed(lines) if line.startswith("ft: error:")), lines[-1] if lines else "")
        error = f": {last.removeprefix('ft: error: ')[:300]} (log: {log})"
        return Outcome(name, swept, f"failed (exit {code})", error, run_dir=log)  # its log, in the run dir column
    results_file = run_dir / "all_results.json"
    results = json.loads(results_file.read_text()) if results_file.is_file() else {}
    return Outcome(
        name,
        swept,
        "ok",
        "",
        results.get("base_loss"),
        results.get("eval_loss"),
        results.get("train_runtime"),
        run_dir,
    )


def write_tables(outcomes: list[Outcome], sweep_dir: Path) -> str:
    """Write sweep.md and sweep.csv; returns the table as printed (aligned columns)."""
    rows = [list(COLUMNS)] + [o.row() for o in outcomes]
    with (sweep_dir / TABLE_CSV).open("w", newline="") as f:
        csv.writer(f).writerows(rows)
    markdown = ["| " + " | ".join(COLUMNS) + " |", "|" + " --- |" * len(COLUMNS)]
    markdown += ["| " + " | ".join(cell.replace("|", "\\|") for cell in row) + " |" for row in rows[1:]]
    (sweep_dir / TABLE_MD).write_text("\n".join(markdown) + "\n")
    widths = [max(len(row[i]) for row in rows) for i in range(len(COLUMNS))]
    return "\n".join("  ".join(cell.ljust(width) for cell, width in zip(row, widths)).rstrip() for row in rows)
