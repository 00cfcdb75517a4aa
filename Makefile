# Two commands on a fresh machine: `make demo` and `make test`. Both create .venv and install
# everything first (torch==2.13.0 before the package, so nothing pulls a CUDA build), and are
# no-ops for the set-up when .venv is already current. The editable install is in compat mode
# (the checkout on sys.path) so packages added later import without reinstalling.
SHELL := /bin/bash
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.isamap-installed
PYTEST_WORKERS ?= 2
DEMO_OUT ?= demo_output

.PHONY: setup test lint demo bench bench-quick notebooks clean

$(STAMP): setup.cfg pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q torch==2.13.0
	$(PY) -m pip install -q -e '.[ee,dev,beam]' --config-settings editable_mode=compat
	touch $(STAMP)

setup: $(STAMP)

lint: $(STAMP)
	$(VENV)/bin/ruff check .

test: lint
	$(PY) -m pytest -n $(PYTEST_WORKERS) -q

demo: $(STAMP)
	$(VENV)/bin/isamap-demo --out $(DEMO_OUT)

bench: $(STAMP)
	@set -e; for f in benchmarks/bench_*.py; do echo "== $$f"; $(PY) $$f; done

# smoke run of the speed benchmarks (auto vs fixed configurations, pipeline vs model-only,
# the helpers' CPU per km²)
bench-quick: $(STAMP)
	$(PY) benchmarks/bench_models.py --quick
	$(PY) benchmarks/bench_inference.py --size 2048
	$(PY) benchmarks/bench_helpers.py --size 2048

notebooks: $(STAMP)
	$(PY) -m pip install -q -e '.[ee,dev,beam,notebooks]' --config-settings editable_mode=compat

clean:
	rm -rf $(VENV) $(DEMO_OUT) .pytest_cache .ruff_cache
