# Two commands on a fresh machine:  `make run` (the whole system on embedded defaults) and
# `make test` (the test suite). Each creates its own virtual environment and installs what it needs.

PYTHON ?= python3
VENV   := .venv
TOOLS  := .venv-tools
PY     := $(VENV)/bin/python
PYTEST_ARGS ?=

SOAK_MINUTES ?= 30
FAULTS_ARGS ?=

.PHONY: run runtime test test-fast bench faults soak lint format clean venv tools wheelhouse \
	base-image images image-names up screenshot

# Images (README, Deployment): `make images` builds trading/<name>:$(IMAGE_TAG) for the five
# services and ibsim (and trading/redis, the Redis of `make up` and the pod-spec test) on one
# shared base, trading/base:$(IMAGE_TAG). BASE_IMAGE is the Python image under it: the official
# one by default; with no registry, `make images BASE_IMAGE=$(LOCAL_BASE)` builds it first
# with debootstrap (`make base-image`, root and a Debian mirror).
DOCKER      ?= docker
BASE_IMAGE  ?= python:3.11.13-slim-bookworm
LOCAL_BASE  := trading/python:3.11-bookworm
IMAGE_TAG   ?= dev
IMAGES      := data-ingestion strategy risk-management visualization monitoring ibsim
WHEELHOUSE  := wheelhouse
# Wheels for the images' CPython 3.11 on glibc (Debian bookworm: 2.36), whatever the host runs.
WHEEL_PYTHON := 3.11
WHEEL_ARCH  := $(shell uname -m)
WHEEL_PLATFORMS := manylinux1 manylinux2010 manylinux2014 \
	$(foreach v,5 12 17 24 27 28 31 34 35 36,manylinux_2_$(v))

# The runtime environment (`make run`): requirements.txt and the package. The test tools on top
# of it (`make test`): requirements-dev.txt.
$(VENV)/.runtime: requirements.txt pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements.txt
	$(PY) -m pip install --quiet --no-deps -e .
	touch $@

$(VENV)/.installed: $(VENV)/.runtime requirements-dev.txt
	$(PY) -m pip install --quiet -r requirements-dev.txt
	touch $@

$(TOOLS)/.installed: requirements-deploy-lint.txt
	$(PYTHON) -m venv $(TOOLS)
	$(TOOLS)/bin/pip install --quiet -r requirements-deploy-lint.txt
	touch $@

runtime: $(VENV)/.runtime
venv: $(VENV)/.installed
tools: $(TOOLS)/.installed

## run: the whole system on the simulated gateway with an embedded Redis; Ctrl-C stops it all
## (the runtime dependencies only; ib_insync too, the library the user named)
run: runtime
	$(PY) -m trading run

## screenshot: the README's picture (docs/dashboard-demo.png): the demo's first round trip on
## the dashboard, in headless Chromium (the browser test that checks it writes it)
screenshot: venv
	DASHBOARD_DEMO_SCREENSHOT=1 $(PY) -m pytest -p no:cacheprovider \
	  tests/visualization/test_demo_screenshot.py

## test: ruff and mypy, then the whole suite (real Redis, real ib_async/ib_insync against ibsim),
## then the containers tests on their own (seven containers would load both cores under the
## timing-sensitive tests); pytest's 5 means PYTEST_ARGS selected no containers test. A worker
## that dies is not replaced: the run stops and says so (xdist's loadfile scheduler can deadlock
## on a replaced worker, pytest-dev/pytest-xdist#1378)
test: venv tools
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy
	$(PY) -m pytest -n 2 --dist loadfile --max-worker-restart 0 -m "not containers" $(PYTEST_ARGS)
	$(PY) -m pytest -m containers $(PYTEST_ARGS) || [ $$? -eq 5 ]

## test-fast: the suite without the slow whole-stack tests
test-fast: venv
	$(PY) -m pytest -n 2 --dist loadfile --max-worker-restart 0 -m "not slow" $(PYTEST_ARGS)

## bench: every benchmark under bench/, printing its figures against the targets
bench: venv
	@for b in bench/bench_*.py; do echo "== $$b"; $(PY) $$b || exit 1; done

## faults: the whole stack on ibsim, each fault once (kills at the seams, Redis, IB link and
## socket, lost orders, late acks, bad ticks), every invariant checked against the broker's truth
faults: venv
	$(PY) -m tests.faults $(FAULTS_ARGS)

## soak: the stack at 600x with a random fault every two minutes for SOAK_MINUTES (default 30)
soak: venv
	$(PY) -m tests.faults --soak $(SOAK_MINUTES)

## lint: ruff (lint and format) and mypy (configured in pyproject.toml: strict on the domain and
## the engines, clean everywhere in trading/)
lint: venv
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy

format: venv
	$(VENV)/bin/ruff format .

clean:
	rm -rf $(VENV) $(TOOLS) .pytest_cache .ruff_cache .mypy_cache .hypothesis var reports \
	  $(WHEELHOUSE)

## wheelhouse: every wheel the images install (requirements.txt, docker/wheelhouse-extra.txt)
$(WHEELHOUSE)/.complete: requirements.txt docker/wheelhouse-extra.txt
	rm -rf $(WHEELHOUSE)
	$(PYTHON) -m pip download --quiet --disable-pip-version-check --dest $(WHEELHOUSE) \
	  --only-binary=:all: --python-version $(WHEEL_PYTHON) --implementation cp --abi cp311 \
	  $(foreach p,$(WHEEL_PLATFORMS),--platform $(p)_$(WHEEL_ARCH)) \
	  -r requirements.txt -r docker/wheelhouse-extra.txt
	touch $@
wheelhouse: $(WHEELHOUSE)/.complete

## base-image: a Debian bookworm Python 3.11 image from debootstrap, tagged $(LOCAL_BASE)
base-image:
	bash docker/base-image.sh $(LOCAL_BASE)

## images: the shared base and the six images (plus trading/redis), air-gapped from the wheelhouse
images: $(WHEELHOUSE)/.complete
	@if [ "$(BASE_IMAGE)" = "$(LOCAL_BASE)" ] && ! $(DOCKER) image inspect $(LOCAL_BASE) >/dev/null 2>&1; \
	  then $(MAKE) --no-print-directory base-image; fi
	@set -e; source=$$($(PYTHON) -m trading.containers source-digest); \
	build() { echo "images: trading/$$1:$(IMAGE_TAG) <- $$2"; \
	  out=$$($(DOCKER) build --force-rm --label trading.source-digest=$$source \
	    --build-arg TRADING_BASE=trading/base:$(IMAGE_TAG) --build-arg BASE_IMAGE=$(BASE_IMAGE) \
	    -f $$2 -t trading/$$1:$(IMAGE_TAG) . 2>&1) || { echo "$$out"; return 1; }; }; \
	build base docker/base.Dockerfile; \
	for name in $(IMAGES) redis; do \
	  if [ -f $$name/Dockerfile ]; then build $$name $$name/Dockerfile; \
	  else build $$name docker/$$name.Dockerfile; fi; done

## image-names: the six images CI pushes (trading/<name>:$(IMAGE_TAG) -> <registry>/trading-<name>)
image-names:
	@echo $(IMAGES)

## up: the whole system as `make run` starts it, each process in its own container
up: venv images
	$(PY) -m trading run --containers
