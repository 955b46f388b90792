# abm-ml: `make demo` runs the whole main job on synthetic data; `make test` runs the tests.
# Both bootstrap everything on a fresh machine that has Python 3.11 (uv comes from PyPI).

SHELL := /bin/bash
PYTHON ?= python3
UV := $(shell command -v uv 2>/dev/null || echo .uv/bin/uv)
VENV := .venv
BIN := $(VENV)/bin
ACCOUNTS ?= 5000
SEED ?= 7

.PHONY: setup demo test test-fast bench bench-quick lint audit clean help

help:
	@echo "make demo   - set up, synthesize a world, train, register, promote, rank, report"
	@echo "make test   - set up and run the whole test suite"
	@echo "make bench  - quality and speed benchmarks (docs/benchmarks.md)"
	@echo "make audit  - pip-audit of the locked dependencies (needs the network; see docs/security.md)"

.uv/bin/uv:
	$(PYTHON) -m venv .uv
	.uv/bin/pip install --quiet uv

# --compile-bytecode: every command imports MLflow, LightGBM, scikit-learn...; without .pyc files
# (uv does not write them, and PYTHONDONTWRITEBYTECODE keeps Python from caching them) each
# run recompiles thousands of modules: about 5 s of every `abm-ml train`.
$(BIN)/abm-ml: pyproject.toml uv.lock | $(UV)
	$(UV) sync --frozen --all-groups --compile-bytecode --quiet
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
	$(BIN)/ruff check src tests bench serving training tools
	$(BIN)/ruff format --check src tests bench serving training tools

# Not part of CI: it needs PyPI's or OSV's advisory API. pip-audit says "No known
# vulnerabilities found" even when it could check nothing, so the verdict is read from its
# JSON (tools/audit_report.py): exit 3 when any dependency went unchecked.
AUDIT_DIR := reports/audit
audit: setup
	@mkdir -p $(AUDIT_DIR)
	@rm -f $(AUDIT_DIR)/pip-audit.json
	$(UV) export --frozen --all-groups --no-emit-project --format requirements-txt --quiet -o $(AUDIT_DIR)/requirements.txt
	-$(UV) tool run --from 'pip-audit>=2.7,<3' pip-audit -r $(AUDIT_DIR)/requirements.txt \
		--require-hashes --disable-pip --progress-spinner off --format json -o $(AUDIT_DIR)/pip-audit.json
	$(BIN)/python tools/audit_report.py $(AUDIT_DIR)/pip-audit.json

clean:
	rm -rf data reports bench/results models/mlflow.db models/artifacts bentoml_home
