# Quick start: `make demo` and `make test` each create/refresh the project virtual environment
# (.venv) from the project's own files, then run.
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: venv test lint demo bench peers clean

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

bench: $(STAMP)
	$(BIN)/python -m pytest benchmarks -q --benchmark-columns=min,median,max,rounds

# gpucops beside bioimage-cpp (GAEC, Kernighan–Lin, Semantic Mutex Watershed): the `bench` extra
peers: $(STAMP)
	$(BIN)/python -m pip install --quiet -e '.[bench]'
	$(BIN)/python benchmarks/peers.py

clean:
	rm -rf $(VENV) build *.egg-info
