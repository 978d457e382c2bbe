# The two commands: `make run` (install + the main job on the sample data), `make test`.
# Both create .venv from requirements.lock (the whole resolved dependency set) on first use.

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
export PREFECT_SERVER_ANALYTICS_ENABLED := false
export PYTHONUNBUFFERED := 1
# pytest runs the tests on this many pytest-xdist worker processes (`make test TEST_WORKERS=1`: one)
TEST_WORKERS ?= 2
PYTEST := $(BIN)/pytest -n $(TEST_WORKERS) --dist worksteal

.PHONY: install run test lint typecheck unit integration bench bench-quick bench-speed lock clean

$(STAMP): requirements.lock pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --disable-pip-version-check -r requirements.lock
	$(BIN)/pip install --quiet --disable-pip-version-check --no-deps --no-build-isolation -e .
	touch $(STAMP)

install: $(STAMP)

## the main job: train on data/sample/train.csv, register, score data/sample/batch.csv by alias
run: install
	$(BIN)/vae-anomaly train data/sample/train.csv
	$(BIN)/vae-anomaly score data/sample/batch.csv

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: install
	$(BIN)/mypy

unit: install
	$(PYTEST) tests/unit

integration: install
	$(PYTEST) tests/integration

## the report render test needs a headless browser: Debian's chromium (installed when missing)
test: lint typecheck
	bash .ci/install_chromium.sh
	$(PYTEST)

## quality benchmark against PyOD and AVF on ADBench and the categorical tables (not part of the
## tests; writes quality.md too): see benchmarks/README.md
bench: install
	$(BIN)/pip install --quiet --disable-pip-version-check pyod tqdm
	$(BIN)/python -m benchmarks.adbench --data ../shared/datasets/adbench \
		--categorical ../shared/datasets/categorical --model-seeds 42 43 44

bench-quick: install
	$(BIN)/pip install --quiet --disable-pip-version-check pyod tqdm
	$(BIN)/python -m benchmarks.adbench --data ../shared/datasets/adbench \
		--categorical ../shared/datasets/categorical --quick --out /tmp/adbench-quick

## speed and memory benchmark against the I/O limit and PyOD (run on quiet cores: ~30 min)
bench-speed: install
	$(BIN)/pip install --quiet --disable-pip-version-check pyod tqdm
	$(BIN)/python -m benchmarks.speed --data ../shared/datasets/adbench

## re-resolve and pin the dependency set (deliberate upgrades only)
lock:
	rm -rf /tmp/vae-anomaly-lock && $(PYTHON) -m venv /tmp/vae-anomaly-lock
	/tmp/vae-anomaly-lock/bin/pip install --quiet "torch==2.13.0" -e ".[dev]"
	/tmp/vae-anomaly-lock/bin/pip freeze --exclude-editable > requirements.lock

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
