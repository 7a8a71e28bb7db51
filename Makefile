# Two commands on a fresh machine: `make demo` and `make test`. Both bootstrap .venv with uv.
SHELL := /bin/bash
VENV := .venv
PY := $(VENV)/bin/python
UV := $(VENV)/bin/uv
STAMP := $(VENV)/.raymap-installed
export RAY_AUTH_MODE ?= disabled
export RAY_USAGE_STATS_ENABLED ?= 0

# Python 3.12 first (zarr 3 and the cellmapper peer need it), then 3.13, then 3.11; pyenv shims hide non-global versions.
PYTHON_BOOTSTRAP := $(shell for v in 3.12 3.13 3.11; do \
	  p=$$(PYENV_VERSION=$$(pyenv versions --bare 2>/dev/null | grep -E "^$$v(\.|$$)" | sort -V | tail -1) pyenv which python$$v 2>/dev/null) \
	  || p=$$(command -v python$$v 2>/dev/null); \
	  if [ -n "$$p" ] && "$$p" -c 'import sys; assert sys.version_info >= (3, 11)' 2>/dev/null; then echo $$p; exit; fi; \
	done; command -v python3)

.PHONY: venv demo test lint browser bench bench-quick clean

venv: $(STAMP)

$(STAMP): pyproject.toml
	@echo "raymap: creating $(VENV) with $(PYTHON_BOOTSTRAP) ($$($(PYTHON_BOOTSTRAP) --version))"
	@test -x $(PY) || $(PYTHON_BOOTSTRAP) -m venv $(VENV)
	@test -x $(UV) || $(PY) -m pip install -q uv
	$(UV) pip install --python $(PY) -q -e '.[test,bench,embed]'
	@touch $(STAMP)

demo: $(STAMP)
	$(PY) -m raymap.cli demo --out demo_out

lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy raymap

# Headless Chromium from Debian for the browser test (Playwright drives it; nothing is downloaded at run time).
browser:
	@command -v chromium >/dev/null || { command -v apt-get >/dev/null && [ "$$(id -u)" = 0 ] && \
	  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null) ; } || \
	  echo "raymap: no chromium; the browser test will skip"

test: lint browser
	$(PY) -m pytest -q

bench: $(STAMP)
	$(PY) -m bench.run_all

bench-quick: $(STAMP)
	$(PY) -m bench.run_all --quick

clean:
	rm -rf demo_out .pytest_cache
