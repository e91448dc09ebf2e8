# Two commands do everything on a fresh machine with Python 3.11 and make:
#   make lab   set up, then open the course in JupyterLab (make lab EDITION=zh-TW: 繁體中文版)
#   make test  set up, then run every test
SHELL  := /bin/bash
PYTHON ?= python3.11
VENV   := .venv
PY     := $(VENV)/bin/python
# The stamp is keyed on the lock and the package metadata: set-up reruns only when they change.
HASH   := $(shell cat requirements.lock pyproject.toml | sha256sum | cut -c1-16)
STAMP  := $(VENV)/.setup-$(HASH)
LAB_PORT ?= 8888
# The edition the start page is opened in: empty for English, zh-TW for Traditional Chinese.
EDITION ?=
START := notebooks/$(if $(EDITION),$(EDITION)/)00_start_here.ipynb
# Jupyter refuses to run as root without a flag (containers, CI); a laptop user never sees it.
ROOT_FLAG := $(if $(filter 0,$(shell id -u)),--allow-root)

.PHONY: setup lab test test-portable lint format notebooks zh-TW slides lock clean

# The course's JupyterLab settings (lab-settings/bnlib.json: widgets save their state in the
# notebook, so a reopened lesson shows its last figures), where this JupyterLab reads overrides.
LAB_SETTINGS := $(VENV)/share/jupyter/lab/settings/overrides.d/bnlib.json

setup: $(STAMP) $(LAB_SETTINGS)

$(LAB_SETTINGS): lab-settings/bnlib.json $(STAMP)
	@mkdir -p $(@D)
	cp $< $@

$(STAMP): requirements.lock pyproject.toml
	@command -v $(PYTHON) >/dev/null || { echo "make: $(PYTHON) not found; install Python 3.11 or run 'make PYTHON=/path/to/python3.11'"; exit 1; }
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --disable-pip-version-check -q -r requirements.lock
	$(PY) -m pip install --disable-pip-version-check -q --no-deps --no-build-isolation -e .
	@rm -f $(VENV)/.setup-*
	@touch $@
	@echo "setup done: $(VENV) matches requirements.lock"

lab: setup
	@test -f $(START) || { echo "make: $(START) not found (EDITION is empty or zh-TW)"; exit 1; }
	$(VENV)/bin/jupyter lab --ip=127.0.0.1 --port=$(LAB_PORT) --ServerApp.root_dir=. $(ROOT_FLAG) \
		--LabApp.default_url=/lab/tree/$(START) \
		--LabApp.extension_manager=readonly

test: setup
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/bnlib assign --check
	$(VENV)/bin/bnlib assign --check --solutions solutions/zh-TW --exercises exercises/zh-TW
	$(VENV)/bin/pytest

# "Another computer": replay the notebooks and the claims suites with torch's CPU kernels at other
# capability levels and other thread counts, as learners' CPUs run them (about 20 minutes).
# Stored outputs must still match where they are exact, and every claim hold where they are not.
# The zh-TW edition runs the same code (tests/test_zh_tw.py), so its replay is left out here.
PORTABLE := default:1 avx2:2 native:1
test-portable: setup
	@set -e; for cfg in $(PORTABLE); do \
	  cap=$${cfg%%:*}; threads=$${cfg##*:}; \
	  echo "== ATEN_CPU_CAPABILITY=$$cap, $$threads torch thread(s)"; \
	  if [ $$cap = native ]; then unset ATEN_CPU_CAPABILITY; else export ATEN_CPU_CAPABILITY=$$cap; fi; \
	  OMP_NUM_THREADS=$$threads $(VENV)/bin/pytest -q -p no:cacheprovider \
	    --ignore=notebooks/zh-TW --ignore=solutions/zh-TW notebooks solutions tests/test_claims_*.py; \
	done

lint: setup
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

format: setup
	$(VENV)/bin/ruff format .
	$(VENV)/bin/ruff check --fix .

# After editing a lesson or a solution: store fresh outputs (lessons are committed executed; nbval
# compares against them), then regenerate exercises/ from solutions/, then the zh-TW edition.
EXECUTE := $(VENV)/bin/jupyter nbconvert --to notebook --execute --inplace \
	--ExecutePreprocessor.record_timing=False --ExecutePreprocessor.timeout=300 \
	--ExecutePreprocessor.kernel_name=python3
notebooks: setup
	$(EXECUTE) notebooks/*.ipynb solutions/*.ipynb
	$(VENV)/bin/bnlib assign
	$(MAKE) --no-print-directory zh-TW

# The Traditional Chinese edition (bnlib/translate.py), after editing an English notebook or a
# translation: update the PO files (translations/zh-TW/, bnlib/locale/zh-TW.po; translations are
# kept, changed cells marked fuzzy), write notebooks/zh-TW/ and solutions/zh-TW/, store their
# outputs, then regenerate exercises/zh-TW/ from solutions/zh-TW/.
zh-TW: setup
	$(PY) -m bnlib.translate extract
	$(PY) -m bnlib.translate build
	$(EXECUTE) notebooks/zh-TW/*.ipynb solutions/zh-TW/*.ipynb
	$(VENV)/bin/bnlib assign --solutions solutions/zh-TW --exercises exercises/zh-TW

# One reveal.js deck per lesson in slides/, presentable offline: open slides/NN_*.slides.html
# (the zh-TW edition: slides/NN_*.zh-TW.slides.html).
# Building needs npm (pinned reveal.js and MathJax from slides-src/); see bnlib/slides.py.
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
