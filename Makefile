# abm-ml: `make demo` runs the whole main job on synthetic data; `make test` runs the tests.
# Both bootstrap everything on a fresh machine that has Python 3.11 (uv comes from PyPI).

SHELL := /bin/bash
PYTHON ?= python3
UV := $(shell command -v uv 2>/dev/null || echo .uv/bin/uv)
VENV := .venv
BIN := $(VENV)/bin
ACCOUNTS ?= 5000
SEED ?= 7

.PHONY: setup demo test test-fast bench bench-quick lint clean help

help:
	@echo "make demo   - set up, synthesize a world, train, register, promote, rank, report"
	@echo "make test   - set up and run the whole test suite"
	@echo "make bench  - quality and speed benchmarks (docs/benchmarks.md)"

.uv/bin/uv:
	$(PYTHON) -m venv .uv
	.uv/bin/pip install --quiet uv

$(BIN)/abm-ml: pyproject.toml uv.lock | $(UV)
	$(UV) sync --frozen --all-groups --quiet
	@touch $@

setup: $(BIN)/abm-ml

demo: setup
	$(BIN)/abm-ml demo --accounts $(ACCOUNTS) --seed $(SEED)

test: setup
	$(BIN)/pytest

test-fast: setup
	$(BIN)/pytest -m "not slow"

bench: setup
	$(BIN)/python bench/run_all.py

bench-quick: setup
	$(BIN)/python bench/run_all.py --quick

lint: setup
	$(BIN)/ruff check src tests bench serving training
	$(BIN)/ruff format --check src tests bench serving training

clean:
	rm -rf data reports bench/results models/mlflow.db models/artifacts bentoml_home
