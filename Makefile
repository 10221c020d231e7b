# Quick start: `make demo` and `make test` each create/refresh the project virtual environment
# (.venv) from the project's own files, then run.
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: venv test lint demo bench bench-save bench-compare peers clean

venv: $(STAMP)

# torch first, pinned: on a machine without a GPU `torch==2.13.0` is the CPU build, and installing it
# before the package keeps pip from resolving the package's torch range to a multi-GB CUDA build.
$(STAMP): pyproject.toml Makefile
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet torch==2.13.0
	$(BIN)/python -m pip install --quiet triton==3.7.1
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check --diff .

test: lint
	$(BIN)/python -m pytest -q

demo: $(STAMP)
	$(BIN)/gpucops demo

# pytest-benchmark suites (README, "Benchmarks"): every hot path, timed, with its quality floor.
# Baselines live per machine kind in benchmarks/baselines/<machine id>/ (benchmarks/machine_id.py,
# which also picks the timer: CPU seconds without a GPU, wall-clock with one). bench-compare
# fails when a benchmark's fastest round is BENCH_FAIL slower than in the newest baseline there
# (100 %: above the worst rise between two unchanged runs on a loaded 2-core VM, RESULTS.md), or
# when any quality falls below its floor.
BENCH_FAIL ?= min:100%
BENCH = id=$$($(BIN)/python benchmarks/machine_id.py) && \
	$(BIN)/python -m pytest benchmarks -q -p no:cacheprovider --benchmark-sort=name \
	--benchmark-columns=min,median,max,rounds \
	--benchmark-timer=$$($(BIN)/python benchmarks/machine_id.py --timer) \
	--benchmark-storage=file://benchmarks/baselines/$$id

bench: $(STAMP)
	$(BENCH)

bench-save: $(STAMP)
	$(BENCH) --benchmark-save=baseline

bench-compare: $(STAMP)
	id=$$($(BIN)/python benchmarks/machine_id.py) && test -d benchmarks/baselines/$$id || \
		{ echo "no baseline for machine $$id: run make bench-save first"; exit 1; }
	$(BENCH) --benchmark-compare --benchmark-compare-fail=$(BENCH_FAIL)

# gpucops beside bioimage-cpp (GAEC, Kernighan–Lin, Semantic Mutex Watershed): the `bench` extra
peers: $(STAMP)
	$(BIN)/python -m pip install --quiet -e '.[bench]'
	$(BIN)/python benchmarks/peers.py

clean:
	rm -rf $(VENV) build *.egg-info
