# The two commands of the README:
#   make lab    set up (first time) and open the course in JupyterLab
#   make test   set up (first time) and run the whole test suite, notebooks included
VENV ?= .venv
PY := $(VENV)/bin/python
PORT ?= 8888
PYTEST_ARGS ?=
# As root (containers, cloud notebooks, CI) JupyterLab refuses to start without --allow-root: pass it
# there. `make lab ALLOW_ROOT=` leaves it out.
ALLOW_ROOT ?= $(if $(filter 0,$(shell id -u 2>/dev/null)),--allow-root)
# Only the notebook folders that exist: pytest-xdist collects nothing at all when one is missing.
NB_DIRS := $(wildcard notebooks solutions exercises)

.PHONY: lab setup setup-dev test test-unit test-notebooks test-browser exercises site doctor clean

lab: setup
	$(PY) -m llmlab doctor --no-compile || true
	@$(if $(ALLOW_ROOT),echo "make lab: running as root: JupyterLab gets --allow-root (make lab ALLOW_ROOT= leaves it out)")
	$(PY) -m jupyter lab --notebook-dir=. --port=$(PORT) $(if $(DISPLAY)$(filter Darwin,$(shell uname)),,--no-browser) \
	  --LabApp.default_url=/lab/tree/notebooks/00_welcome.ipynb --LabApp.news_url=None $(ALLOW_ROOT) $(LAB_ARGS)

setup:
	@scripts/bootstrap.sh

setup-dev:
	@scripts/bootstrap.sh dev

test: setup-dev
	$(PY) -m ruff check llmlab tests benchmarks docs scripts
	$(PY) -m llmlab course build --check
	LLMLAB_FAST=1 $(PY) -m pytest -n 2 --dist loadfile --nbval --nbval-current-env \
	  --nbval-sanitize-with tests/nbval_sanitize.cfg -p no:cacheprovider \
	  tests $(NB_DIRS) $(PYTEST_ARGS)

lint: setup-dev
	$(PY) -m ruff check llmlab tests benchmarks docs scripts

test-unit: setup-dev
	$(PY) -m pytest tests -m "not browser" $(PYTEST_ARGS)

test-browser: setup-dev
	LLMLAB_FAST=1 $(PY) -m pytest tests -m browser -p no:cacheprovider $(PYTEST_ARGS)

# The course website (Jupyter Book 1, offline, warnings are errors) -> docs/_build/html/index.html
site: setup-dev
	$(PY) docs/build_site.py

exercises: setup
	$(PY) -m llmlab course build

doctor: setup
	$(PY) -m llmlab doctor

clean:
	rm -rf $(VENV) docs/_build .pytest_cache
