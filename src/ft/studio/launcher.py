"""The queue of training processes (filled in next)."""

from pathlib import Path


class Launcher:
    def __init__(self, runs_dir: Path, project_dir: Path):
        self.runs_dir, self.project_dir = runs_dir, project_dir
        self.output_dir = runs_dir
