# Two commands on a fresh machine: `make run` (the whole local stack) and `make test` (every test).
# Both set up what they need: .venv with the pinned requirements, and node_modules (Azurite) from package-lock.json.

PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
PIP_STAMP := $(VENV)/.installed
NPM_STAMP := node_modules/.installed
INFRA_VENV := .venv-infra
INFRA_STAMP := $(INFRA_VENV)/.installed

.PHONY: run test setup lint typecheck bench clean

setup: $(PIP_STAMP) $(NPM_STAMP)

# checkov and pycep-parser for the offline infra checks, apart from the bridge's own packages.
$(INFRA_STAMP): requirements-infra.txt
	test -x $(INFRA_VENV)/bin/python || $(PYTHON) -m venv $(INFRA_VENV)
	$(INFRA_VENV)/bin/python -m pip install --quiet --disable-pip-version-check -r requirements-infra.txt
	touch $@

$(PIP_STAMP): requirements.txt requirements-dev.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check -r requirements-dev.txt
	touch $@

$(NPM_STAMP): package.json package-lock.json
	npm ci --no-audit --no-fund --loglevel=error
	touch $@

# ARGS passes options through, e.g. `make run ARGS=--verbose` or `make run ARGS="--no-demo --host-port 7081"`.
run: setup
	$(PY) -m local $(ARGS)

# The console's browser test drives Debian's chromium through Playwright (which never downloads a browser here).
CHROMIUM := /usr/bin/chromium
$(CHROMIUM):
	(apt-get update -qq && apt-get install -y -qq chromium) || (sudo apt-get update -qq && sudo apt-get install -y -qq chromium)

# Two workers (pytest-xdist), each taking a whole test file at a time so that a module's stack is started once: the
# suite mostly waits on the processes it starts, so two files side by side take about half the time on two cores.
test: setup $(INFRA_STAMP) $(CHROMIUM)
	$(PY) -m pytest -n 2 --dist loadfile

lint: setup
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .

typecheck: setup
	$(PY) -m mypy

bench: setup
	@for b in bench/*.py; do echo "== $$b"; $(PY) $$b || exit 1; done

clean:
	rm -rf $(VENV) $(INFRA_VENV) node_modules .pytest_cache .mypy_cache .ruff_cache
