# Two commands on a fresh machine:  `make run` (the whole system on embedded defaults) and
# `make test` (the test suite). Each creates its own virtual environment and installs what it needs.

PYTHON ?= python3
VENV   := .venv
TOOLS  := .venv-tools
PY     := $(VENV)/bin/python
PYTEST_ARGS ?=

SOAK_MINUTES ?= 30
FAULTS_ARGS ?=

.PHONY: run test test-fast bench faults soak lint format clean venv tools

$(VENV)/.installed: requirements.txt requirements-dev.txt pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements-dev.txt
	$(PY) -m pip install --quiet --no-deps -e .
	touch $@

$(TOOLS)/.installed: requirements-deploy-lint.txt
	$(PYTHON) -m venv $(TOOLS)
	$(TOOLS)/bin/pip install --quiet -r requirements-deploy-lint.txt
	touch $@

venv: $(VENV)/.installed
tools: $(TOOLS)/.installed

## run: the whole system on the simulated gateway with an embedded Redis; Ctrl-C stops it all
run: venv
	$(PY) -m trading run

## test: lint, then the whole suite (real Redis, real ib_async/ib_insync against ibsim)
test: venv tools
	$(VENV)/bin/ruff check .
	$(PY) -m pytest -n 2 --dist loadfile $(PYTEST_ARGS)

## test-fast: the suite without the slow whole-stack tests
test-fast: venv
	$(PY) -m pytest -n 2 --dist loadfile -m "not slow" $(PYTEST_ARGS)

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

lint: venv
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

format: venv
	$(VENV)/bin/ruff format .

clean:
	rm -rf $(VENV) $(TOOLS) .pytest_cache .ruff_cache .hypothesis var reports
