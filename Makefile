# The two commands of the README. Each creates or reuses .venv/ with pip, installs, then runs.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
# The install stamp depends on setup.cfg, so a changed dependency list reinstalls.
STAMP_RUN := $(VENV)/.installed-run
STAMP_TEST := $(VENV)/.installed-test

.PHONY: demo test test-fast lint bench bench-quick bench-all clean vendor chromium image image-clean test-container \
	compose-up compose-batch compose-down docs docs-serve docs-images
# OpenSeadragon for the web viewer, fetched from the npm registry (never committed).
OSD := histotile/workflows/serve/static/vendor/openseadragon/openseadragon.min.js

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade "pip>=23.2"

# torch's CUDA build alone takes about 6 GB in the venv: a failed install says how much
# room the disk had (pip's own "No space left on device" names no size).
NEEDS := "make: the install failed; the venv takes about 6 GB (7 GB with the test extras); free on this disk:"

# pip byte-compiles what it installs on one core (torch alone has thousands of files);
# compileall does it on every core, so the install takes 2 min 13 s here instead of
# 2 min 41 s. Compiled now, not at first import: this machine sets
# PYTHONDONTWRITEBYTECODE, so a module compiled at import is compiled again by every
# process (an install without it made the suite 2 min slower). Like pip, a file that does
# not compile (a package's template, say) is skipped.
COMPILE := $(BIN)/python -m compileall -q -j 0 $(VENV)/lib >/dev/null || true

$(STAMP_RUN): setup.cfg pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet --no-compile -e . || { echo $(NEEDS); df -h $(VENV); exit 1; }
	$(COMPILE)
	touch $@

$(STAMP_TEST): setup.cfg pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet --no-compile -e ".[all,mxnet,dev,docs]" || { echo $(NEEDS); df -h $(VENV); exit 1; }
	$(COMPILE)
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
# tests build on each other's outputs), which takes about 60 % of one process's time on
# 2 cores. `make test PARALLEL=` runs it in one process.
PARALLEL ?= -n 2 --dist loadfile

## make test: install (with the mxnet extra and test tools), lint, type-check, then run the test suite.
# mypy runs beside the suite (its output printed after it): the suite leaves the cores
# idle while its tests wait on browsers, Dask workers and subprocesses.
test: $(STAMP_TEST) $(OSD) chromium
	$(BIN)/ruff check .
	@$(BIN)/mypy > $(VENV)/mypy.log 2>&1 & types=$$!; \
	echo "$(BIN)/python -m pytest -q $(PARALLEL)  (with $(BIN)/mypy beside it)"; \
	$(BIN)/python -m pytest -q $(PARALLEL); tests=$$?; \
	wait $$types; typed=$$?; echo "$(BIN)/mypy:"; cat $(VENV)/mypy.log; \
	test $$tests -eq 0 && test $$typed -eq 0

## make test-fast: the quick tier, every test not marked slow (no lint, no browser setup).
test-fast: $(STAMP_TEST)
	$(BIN)/python -m pytest -q -m "not slow" $(PARALLEL)

## make docs: the documentation site into site/ (MkDocs, strict: any warning fails the build).
# NO_MKDOCS_2_WARNING: Material's banner about its successor is not a build warning.
DOCS_ENV := NO_MKDOCS_2_WARNING=1
docs: $(STAMP_TEST)
	$(DOCS_ENV) $(BIN)/python -m mkdocs build --strict

## make docs-serve: preview the documentation on http://127.0.0.1:8000 (rebuilds on save).
docs-serve: $(STAMP_TEST)
	$(DOCS_ENV) $(BIN)/python -m mkdocs serve --dev-addr 127.0.0.1:8000

## make docs-images: the documentation's pictures (docs/images/) and the demo's figures
## (docs/generated/demo-summary.json), made from the bundled slide: runs the demo first.
docs-images: $(STAMP_TEST) $(OSD) chromium
	$(BIN)/python scripts/docs_images.py

lint: $(STAMP_TEST)
	$(BIN)/ruff check .
	$(BIN)/mypy

## make bench: every stage on a synthetic 5-GP slide against its baseline (a table).
bench: $(STAMP_RUN)
	$(BIN)/python benchmarks/run.py

bench-quick: $(STAMP_RUN)
	$(BIN)/python benchmarks/run.py --quick

## make bench-all: the per-stage benchmarks with their detailed tables.
bench-all: $(STAMP_RUN)
	$(BIN)/python benchmarks/run_all.py

# The OCI image (Containerfile). BASE: pulled when a registry is reachable, else a Debian
# base built once with debootstrap (scripts/container_base.sh, needs root). RUNTIME: runc where
# podman's default crun fails on cgroups in hybrid mode; deploy/containers.conf lifts podman's
# default open-files limit. The host's CA bundle and local PyPI mirrors (when it has them) are
# mounted into the wheel stage only; nothing is downloaded but packages from the registries.
IMAGE ?= histotile
VERSION := $(shell sed -n 's/^__version__ = "\(.*\)"/\1/p' histotile/__init__.py)
BASE ?= python:3.11-slim-bookworm
RUNTIME ?= $(if $(shell command -v runc 2>/dev/null),runc,)
PODMAN := CONTAINERS_CONF=$${CONTAINERS_CONF:-$(CURDIR)/deploy/containers.conf} podman $(if $(RUNTIME),--runtime $(RUNTIME),)
HOST_CA ?= $(wildcard /etc/ssl/certs/ca-certificates.crt)
LOCAL_INDEXES ?= $(wildcard /opt/pypi/simple /opt/pypi-more/simple)
# More flags for podman build, e.g. PODMAN_BUILD_FLAGS="--cpu-shares 256" on a shared machine.
PODMAN_BUILD_FLAGS ?=
IMAGE_MOUNTS := $(if $(HOST_CA),--volume $(HOST_CA):/etc/ssl/host-ca.crt:ro --build-arg PIP_CERT=/etc/ssl/host-ca.crt,) \
	$(foreach d,$(LOCAL_INDEXES),--volume $(patsubst %/simple,%,$(d)):$(patsubst %/simple,%,$(d)):ro) \
	$(if $(LOCAL_INDEXES),--build-arg "PIP_EXTRA_INDEX_URL=$(foreach d,$(LOCAL_INDEXES),file://$(d))",)

# The wheel stage is kept, tagged $(IMAGE)-wheels:VERSION (a second, cached build of that
# stage gives it the tag), so that the prune of replaced images spares it and its layer of
# dependency wheels, torch among them: a rebuild after a change to histotile's code then
# takes minutes. make image-clean removes it and the build cache.
BUILD := $(PODMAN) build --file Containerfile --build-arg VERSION=$(VERSION) $(IMAGE_MOUNTS) \
	$(PODMAN_BUILD_FLAGS)

## make image: the OCI image histotile:VERSION (podman; the serve, onnx and watch extras).
image: $(OSD)
	base=$$(CONTAINERS_CONF=$${CONTAINERS_CONF:-$(CURDIR)/deploy/containers.conf} BASE=$(BASE) sh scripts/container_base.sh) && \
	$(BUILD) --build-arg BASE=$$base --tag $(IMAGE):$(VERSION) . && \
	$(BUILD) --build-arg BASE=$$base --target wheels --tag $(IMAGE)-wheels:$(VERSION) . >/dev/null
	$(PODMAN) image prune --force >/dev/null
	$(PODMAN) image ls $(IMAGE):$(VERSION)

## make image-clean: the image, its kept wheel stage and podman's dangling layers.
image-clean:
	-$(PODMAN) rmi $(IMAGE):$(VERSION) $(IMAGE)-wheels:$(VERSION)
	$(PODMAN) image prune --force >/dev/null

# Compose (deploy/compose.yaml): COMPOSE is any compose provider (docker compose, podman
# compose with a provider installed); by default podman-compose from PyPI, installed on first
# use into its own venv (COMPOSE_VENV), apart from histotile's. The compose file's variables
# (HISTOTILE_SLIDES, HISTOTILE_MODELS, HISTOTILE_RESULTS, HISTOTILE_TOKEN, HISTOTILE_PORT)
# come from the environment.
COMPOSE_VENV ?= .venv-compose
COMPOSE ?= $(COMPOSE_VENV)/bin/podman-compose $(if $(RUNTIME),--podman-args="--runtime $(RUNTIME)",)
COMPOSE_RUN := CONTAINERS_CONF=$${CONTAINERS_CONF:-$(CURDIR)/deploy/containers.conf} $(COMPOSE) -f deploy/compose.yaml
COMPOSE_NEEDS := $(if $(findstring $(COMPOSE_VENV)/bin/podman-compose,$(COMPOSE)),$(COMPOSE_VENV)/bin/podman-compose,)

$(COMPOSE_VENV)/bin/podman-compose:
	$(PYTHON) -m venv $(COMPOSE_VENV)
	$(COMPOSE_VENV)/bin/pip install --quiet "podman-compose==1.6.0"

## make compose-up: a Dask scheduler, two workers and the web service (after make image).
compose-up: $(COMPOSE_NEEDS)
	$(COMPOSE_RUN) up -d

## make compose-batch: histotile run over every slide, on the compose file's workers.
compose-batch: $(COMPOSE_NEEDS)
	$(COMPOSE_RUN) --profile batch run --rm batch

compose-down: $(COMPOSE_NEEDS)
	$(COMPOSE_RUN) --profile batch down

## make test-container: build the image, then test it (podman; about 20 min the first time).
test-container: $(STAMP_TEST)
	HISTOTILE_CONTAINER_TESTS=1 $(BIN)/python -m pytest -q -p no:xdist tests/test_container_image.py

clean:
	rm -rf $(VENV) $(COMPOSE_VENV) histotile-demo .pytest_cache .ruff_cache .mypy_cache site
