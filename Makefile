# Two commands do everything on a fresh machine with Python 3.11 and make:
#   make lab   set up, then open the course in JupyterLab
#   make test  set up, then run every test
SHELL  := /bin/bash
PYTHON ?= python3.11
VENV   := .venv
PY     := $(VENV)/bin/python
# The stamp is keyed on the lock and the package metadata: set-up reruns only when they change.
HASH   := $(shell cat requirements.lock pyproject.toml | sha256sum | cut -c1-16)
STAMP  := $(VENV)/.setup-$(HASH)
LAB_PORT ?= 8888

.PHONY: setup lab test lint format slides lock clean

setup: $(STAMP)

$(STAMP): requirements.lock pyproject.toml
	@command -v $(PYTHON) >/dev/null || { echo "make: $(PYTHON) not found; install Python 3.11 or run 'make PYTHON=/path/to/python3.11'"; exit 1; }
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --disable-pip-version-check -q -r requirements.lock
	$(PY) -m pip install --disable-pip-version-check -q --no-deps --no-build-isolation -e .
	@rm -f $(VENV)/.setup-*
	@touch $@
	@echo "setup done: $(VENV) matches requirements.lock"

lab: setup
	$(VENV)/bin/jupyter lab --ip=127.0.0.1 --port=$(LAB_PORT) --ServerApp.root_dir=. \
		--LabApp.default_url=/lab/tree/README.md

test: setup
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/bnlib assign --check
	$(VENV)/bin/pytest

lint: setup
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

format: setup
	$(VENV)/bin/ruff format .
	$(VENV)/bin/ruff check --fix .

slides: setup
	$(PY) -m bnlib.slides

# After changing a pin in pyproject.toml: rebuild the lock from a clean resolve.
lock:
	rm -rf /tmp/bnlib-lock && $(PYTHON) -m venv /tmp/bnlib-lock
	/tmp/bnlib-lock/bin/pip install -q -e '.[test]'
	/tmp/bnlib-lock/bin/pip freeze --exclude-editable | sed 's/+cpu$$//' \
		| cat <(sed -n '1,3p' requirements.lock) - > requirements.lock.new
	mv requirements.lock.new requirements.lock

clean:
	rm -rf $(VENV) build *.egg-info slides
