# Two commands on a fresh machine: `make demo` and `make test`. Both create .venv and install
# everything first, at the tested versions of constraints.txt (torch first, so nothing pulls a
# CUDA build), and are no-ops for the set-up when .venv is already current. The package states
# ranges (setup.cfg); the pins live only in constraints.txt. The editable install is in compat
# mode (the checkout on sys.path) so packages added later import without reinstalling.
SHELL := /bin/bash
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.isamap-installed
PYTEST_WORKERS ?= 2
DEMO_OUT ?= demo_output

.PHONY: setup test lint docs demo accuracy-figures bench bench-quick notebooks clean

CONSTRAINTS := constraints.txt

$(STAMP): setup.cfg pyproject.toml $(CONSTRAINTS)
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -c $(CONSTRAINTS) torch
	$(PY) -m pip install -q -c $(CONSTRAINTS) -e '.[ee,dev,beam,docs,int8]' --config-settings editable_mode=compat
	touch $(STAMP)

setup: $(STAMP)

lint: $(STAMP)
	$(VENV)/bin/ruff check .

test: lint docs
	$(PY) -m pytest -n $(PYTEST_WORKERS) -q

# the docs site, offline and strict (a broken link, a missing page or reference fails); site/.
# Not --quiet: it hides the warnings that strict mode counts.
docs: $(STAMP)
	NO_MKDOCS_2_WARNING=1 $(VENV)/bin/mkdocs build --strict --site-dir site

demo: $(STAMP)
	$(VENV)/bin/isamap-demo --out $(DEMO_OUT)

# the demo's assessment figures that docs/accuracy.md quotes: the JSON, and the page's tables
accuracy-figures: demo
	mkdir -p docs/figures && cp $(DEMO_OUT)/assess/figures.json docs/figures/accuracy_demo.json
	$(PY) -c 'from inference.assess.figures import update_page; \
	    update_page("docs/figures/accuracy_demo.json", "docs/accuracy.md")'

bench: $(STAMP)
	@set -e; for f in benchmarks/bench_*.py; do echo "== $$f"; $(PY) $$f; done

# smoke run of the speed benchmarks (auto vs fixed configurations, pipeline vs model-only,
# the helpers' CPU per km²)
bench-quick: $(STAMP)
	$(PY) benchmarks/bench_models.py --quick
	$(PY) benchmarks/bench_inference.py --size 2048
	$(PY) benchmarks/bench_helpers.py --size 2048

notebooks: $(STAMP)
	$(PY) -m pip install -q -c $(CONSTRAINTS) -e '.[ee,dev,beam,docs,int8,notebooks]' --config-settings editable_mode=compat

clean:
	rm -rf $(VENV) $(DEMO_OUT) site .pytest_cache .ruff_cache
