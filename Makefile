# Two commands do all the set-up: `make demo` and `make test` (see README.md).
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV ?= .venv
BIN := $(VENV)/bin
# Compiled numba kernels (UMAP) are cached here between runs.
export NUMBA_CACHE_DIR ?= $(CURDIR)/.cache/numba

.PHONY: demo test test-fast lint bench clean

$(BIN)/tfanomaly: setup.cfg pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $@

demo: $(BIN)/tfanomaly
	$(BIN)/tfanomaly demo

test: $(BIN)/tfanomaly
	$(BIN)/python -m pytest

test-fast: $(BIN)/tfanomaly
	$(BIN)/python -m pytest -m "not slow"

lint: $(BIN)/tfanomaly
	$(BIN)/ruff check tfanomaly tests benchmarks
	$(BIN)/ruff format --check tfanomaly tests benchmarks

bench: $(BIN)/tfanomaly
	for script in benchmarks/bench_*.py; do $(BIN)/python $$script || exit 1; done

clean:
	rm -rf $(VENV) demo_run .cache .pytest_cache
