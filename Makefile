# The README's two commands: `make train` and `make test`. Both create the virtualenv and install
# first. Installs are pinned by .ci/constraints.txt, which takes the CPU torch wheel on a CPU machine.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
CONSTRAINTS := .ci/constraints.txt
STAMP := $(VENV)/.ft-installed
EXPORT_STAMP := $(VENV)/.ft-export-installed

.PHONY: install install-export install-browser train test test-fast lint format docs bench clean

install: $(STAMP)

$(STAMP): pyproject.toml $(CONSTRAINTS)
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q torch==2.13.0 -c $(CONSTRAINTS)
	$(PY) -m pip install -q -e '.[dev]' -c $(CONSTRAINTS)
	touch $@

# `ft export format=gguf`: llama-cpp-python, compiled from source by pip the first time (about 12 minutes
# on 2 cores, then pip's cached wheel), and llama.cpp's converters from the same release.
install-export: $(EXPORT_STAMP)

$(EXPORT_STAMP): $(STAMP)
	$(PY) -m pip install -q -e '.[export]' -c $(CONSTRAINTS)
	$(PY) -m ft.finish.export.install
	touch $@

# The studio's browser test drives Debian's chromium through the playwright package (a dev extra), never a
# browser downloaded by `playwright install`: apt installs chromium once, as root or through sudo.
install-browser:
	test -x /usr/bin/chromium || { if [ "$$(id -u)" = 0 ]; then SUDO=; else SUDO=sudo; fi; \
		$$SUDO apt-get update -q && $$SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium; }

train: install  ## train the default (offline tiny LoRA) recipe; ARGS="key=value ..." to override
	$(PY) -m ft train $(ARGS)

# The suite runs in TEST_WORKERS pytest-xdist processes (0: in pytest's own), each taking whole test files so that a
# module's fixtures are built once; tests/conftest.py gives each worker one OpenMP thread. On 2 cores, 2 workers
# take about 0.7 of the time of one.
TEST_WORKERS ?= 2
PYTEST := HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 WANDB_MODE=offline $(PY) -m pytest -n $(TEST_WORKERS) --dist loadfile

test: install install-export install-browser  ## the whole suite, offline
	$(PYTEST) $(PYTEST_ARGS)

test-fast: install install-export install-browser  ## skip the slow end-to-end runs
	$(PYTEST) -m "not slow" $(PYTEST_ARGS)

lint: install  ## ruff: the checks and the formatting (CI runs it)
	$(VENV)/bin/ruff check src tests bench docs
	$(VENV)/bin/ruff format --check src tests bench docs

format: install  ## apply ruff's fixes and formatting
	$(VENV)/bin/ruff check --fix src tests bench docs
	$(VENV)/bin/ruff format src tests bench docs

docs: install  ## the manual: docs/ plus its generated reference pages, built by mkdocs (strict) into build/docs
	$(PY) docs/generate.py
	$(PY) -m mkdocs build --strict

bench: install  ## the CPU benchmarks, then bench/gpu.py's code path with tiny shapes (gpu.py itself is for a GPU machine)
	cd bench && ../$(PY) startup.py && ../$(PY) overhead.py && ../$(PY) packing.py && ../$(PY) cache.py
	cd bench && ../$(PY) moe_memory.py && ../$(PY) fsdp_memory.py && ../$(PY) image_step_time.py
	cd bench && ../$(PY) gpu.py --tiny

clean:
	rm -rf $(VENV) runs build docs/reference *.egg-info src/*.egg-info
