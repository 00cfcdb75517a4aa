# Two commands on a fresh machine: `make demo` and `make test`. Both create .venv and install
# everything first, at the tested versions of constraints.txt (torch first, so nothing pulls a
# CUDA build), and are no-ops for the set-up when .venv is already current. The package states
# ranges (setup.cfg); the pins live only in constraints.txt. The editable install is in compat
# mode (the checkout on sys.path) so packages added later import without reinstalling.
SHELL := /bin/bash
PYTHON ?= $(shell command -v python3.11 || command -v python3 || echo python3)
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.isamap-installed
PYTEST_WORKERS ?= 2
DEMO_OUT ?= demo_output

.PHONY: setup browser test lint typecheck docs docs-serve docs-images demo accuracy-figures bench bench-quick notebooks wheel clean

CONSTRAINTS := constraints.txt

# The Python the venv is made with must be 3.11 or newer (python_requires): an older one would
# fail later inside pip with a resolution error that names torch, not Python. A failed install
# leaves no stamp, and a venv without one is made anew instead of being reused half installed.
$(STAMP): setup.cfg pyproject.toml $(CONSTRAINTS)
	@$(PYTHON) -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null || { \
	  echo "isamap needs Python 3.11 or newer; '$(PYTHON)' is $$(command -v $(PYTHON) >/dev/null && $(PYTHON) -V 2>&1 || echo "not found"). Install python3.11 or run: make PYTHON=/path/to/python3.11 ..." >&2; exit 1; }
	@if [ -d $(VENV) ] && [ ! -f $(STAMP) ]; then echo "removing $(VENV): an earlier install did not finish"; rm -rf $(VENV); fi
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -c $(CONSTRAINTS) torch
	$(PY) -m pip install -q -c $(CONSTRAINTS) -e '.[ee,dev,beam,docs,int8,experiments,vectors]' --config-settings editable_mode=compat
	@$(MAKE) --no-print-directory browser
	touch $(STAMP)

# Chromium for the docs site's browser test (tests/test_docs_site.py): Debian's package, as
# Playwright's own browser download needs a host outside the package registries. Only where
# it is missing and apt-get can install (root); elsewhere the test says what to install.
browser:
	@if command -v chromium >/dev/null || [ -x /usr/bin/chromium ]; then :; \
	elif command -v apt-get >/dev/null && [ "$$(id -u)" = 0 ]; then \
	  echo "installing chromium (apt-get) for the docs site test"; \
	  DEBIAN_FRONTEND=noninteractive apt-get update -qq && \
	  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends chromium >/dev/null; \
	else echo "no chromium and no apt-get as root: tests/test_docs_site.py will be skipped (apt-get install chromium)"; fi

setup: $(STAMP)

lint: $(STAMP)
	$(VENV)/bin/ruff check .

test: lint typecheck docs
	$(PY) -m pytest -n $(PYTEST_WORKERS) -q

# the library's types (setup.cfg [mypy]: gee_export, engine, training, inference), cached in
# .mypy_cache
typecheck: $(STAMP)
	$(VENV)/bin/mypy

# the docs site, offline and strict (a broken link, a missing page or reference fails); site/.
# Not --quiet: it hides the warnings that strict mode counts.
docs: $(STAMP)
	NO_MKDOCS_2_WARNING=1 $(VENV)/bin/mkdocs build --strict --site-dir site
	@echo "The docs site is in site/: open $(CURDIR)/site/index.html in a browser (it works from disk),"
	@echo "or serve it: $(PY) -m http.server -d site 8000, then http://localhost:8000/ (make docs-serve rebuilds on edits)"

docs-serve: $(STAMP)
	NO_MKDOCS_2_WARNING=1 $(VENV)/bin/mkdocs serve

# the guide's pictures (docs/img): a small demo run, as `make demo` would make it (its folder
# named demo_output, as the pictures' titles show), copied by tools/docs_images.py
DOCS_DEMO := .docs-demo
docs-images: $(STAMP)
	rm -rf $(DOCS_DEMO) && mkdir -p $(DOCS_DEMO)
	cd $(DOCS_DEMO) && $(abspath $(VENV))/bin/isamap-demo --out demo_output --size 384 -q
	$(PY) tools/docs_images.py $(DOCS_DEMO)/demo_output docs/img
	rm -rf $(DOCS_DEMO)

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

# the notebooks' stored outputs (checked in): each executed offline on the demo-sized SYNTHETIC
# scene (ISAMAP_SMOKE=1) by tools/notebooks.py, pictures as small PNGs, "Open in Colab" badges
# (direct links with COLAB_REPO=owner/name or a GitHub origin remote)
notebooks: $(STAMP)
	$(PY) tools/notebooks.py $(if $(COLAB_REPO),--repo $(COLAB_REPO))

# the wheel a notebook's install cell takes when uploaded beside it (Colab's Files panel): dist/
wheel: $(STAMP)
	$(PY) -m pip wheel --no-deps --no-build-isolation -q -w dist .
	@ls dist/isamap-*.whl

clean:
	rm -rf $(VENV) $(DEMO_OUT) site .pytest_cache .ruff_cache .mypy_cache
