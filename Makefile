# The two commands of the README. Each creates or reuses .venv/ with pip, installs, then runs.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
# The install stamp depends on setup.cfg, so a changed dependency list reinstalls.
STAMP_RUN := $(VENV)/.installed-run
STAMP_TEST := $(VENV)/.installed-test

.PHONY: demo test test-fast lint bench bench-quick bench-all clean vendor chromium
# OpenSeadragon for the web viewer, fetched from the npm registry (never committed).
OSD := histotile/workflows/serve/static/vendor/openseadragon/openseadragon.min.js

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade "pip>=23.2"

# torch's CUDA build alone takes about 6 GB in the venv: a failed install says how much
# room the disk had (pip's own "No space left on device" names no size).
NEEDS := "make: the install failed; the venv takes about 6 GB (7 GB with the test extras); free on this disk:"

$(STAMP_RUN): setup.cfg pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet -e . || { echo $(NEEDS); df -h $(VENV); exit 1; }
	touch $@

$(STAMP_TEST): setup.cfg pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet -e ".[all,mxnet,dev]" || { echo $(NEEDS); df -h $(VENV); exit 1; }
	touch $@ $(STAMP_RUN)

## make demo: install, then run the whole pipeline on the bundled real sample slide.
demo: $(STAMP_RUN)
	$(BIN)/histotile demo --out histotile-demo --overwrite

$(OSD): scripts/vendor_openseadragon.sh
	sh scripts/vendor_openseadragon.sh

## make vendor: OpenSeadragon (npm pack) into the package, for histotile serve.
vendor: $(OSD)

## make chromium: Debian's chromium for the web-page tests (apt-get when root).
chromium:
	@test -x /usr/bin/chromium || { if [ "$$(id -u)" = 0 ]; then \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium; \
	  else echo "chromium missing: the browser tests will skip (sudo apt-get install chromium)"; fi; }

# The suite in 2 processes (pytest-xdist), each test file whole in one of them (some files'
# tests build on each other's outputs): 4.5-5 instead of 7.5-8.5 minutes on 2 cores.
# `make test PARALLEL=` runs it in one process.
PARALLEL ?= -n 2 --dist loadfile

## make test: install (with the mxnet extra and test tools), lint, then run the test suite.
test: $(STAMP_TEST) $(OSD) chromium
	$(BIN)/ruff check .
	$(BIN)/python -m pytest -q $(PARALLEL)

## make test-fast: the quick tier, every test not marked slow (no lint, no browser setup).
test-fast: $(STAMP_TEST)
	$(BIN)/python -m pytest -q -m "not slow" $(PARALLEL)

lint: $(STAMP_TEST)
	$(BIN)/ruff check .

## make bench: every stage on a synthetic 5-GP slide against its baseline (a table).
bench: $(STAMP_RUN)
	$(BIN)/python benchmarks/run.py

bench-quick: $(STAMP_RUN)
	$(BIN)/python benchmarks/run.py --quick

## make bench-all: the per-stage benchmarks with their detailed tables.
bench-all: $(STAMP_RUN)
	$(BIN)/python benchmarks/run_all.py

clean:
	rm -rf $(VENV) histotile-demo .pytest_cache .ruff_cache
