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
# Test runs write Python's bytecode caches (__pycache__, ignored by git) even where the shell
# sets PYTHONDONTWRITEBYTECODE: the suite starts ~150 Python processes (commands, notebooks,
# torchrun ranks, Beam workers) and each would compile the same modules again.
WRITE_BYTECODE := env -u PYTHONDONTWRITEBYTECODE
DEMO_OUT ?= demo_output

.PHONY: setup browser test test-slow test-all test-checks test-bytecode test-noshared test-min lint typecheck docs docs-serve docs-images demo accuracy-figures evidence bench bench-quick notebooks wheel clean

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

# Tiers (setup.cfg): `make test` runs the default tier, every mechanism once, and prints its
# slowest 25; `make test-slow` the `slow` tier alone (whole chains, the variants and twins, the
# notebooks, the browser, the wheel, the lab, torchrun); `make test-all` both. .ci/run runs all.
test: $(STAMP)
	@$(MAKE) --no-print-directory -j3 --output-sync=target test-checks
	$(WRITE_BYTECODE) $(PY) -m pytest -n $(PYTEST_WORKERS) --dist loadgroup -q -m 'not slow' --durations=25

test-slow: $(STAMP)
	$(WRITE_BYTECODE) $(PY) -m pytest -n $(PYTEST_WORKERS) --dist loadgroup -q -m slow --durations=25

test-all: test test-slow

# what runs before the suite, side by side (mypy and mkdocs use one core each): the checks, and
# the tests collected once so their bytecode and pytest's rewritten asserts are on disk before
# the workers start (in a fresh clone each worker compiled the ~400 test modules itself)
test-checks: lint typecheck docs test-bytecode

test-bytecode: $(STAMP)
	@if $(WRITE_BYTECODE) $(PY) -m pytest -q --collect-only -p no:cacheprovider >/dev/null 2>&1; \
	then echo "tests collected once: their bytecode is written"; \
	else echo "collecting the tests failed: the suite's run says why"; fi

# the tests that read ../shared, run in a fresh clone of HEAD with no ../shared beside it and
# without CI set: what a user's clone runs. Each must pass or skip with its reason, never fail
# (under CI, with the data, `make test` runs them for real). .ci/run calls both.
SHARED_TESTS = grep -rlE 'shared_data|sample_folder|"shared"|shared/(data|weights)' tests --include='*.py'
test-noshared: $(STAMP)
	@tmp=$$(mktemp -d) && trap 'rm -rf "$$tmp"' EXIT && git clone -q . "$$tmp/isamap" && \
	  cd "$$tmp/isamap" && echo "tests that read ../shared, in a clone without it ($$tmp/isamap):" && \
	  $(WRITE_BYTECODE) -u CI -u ISAMAP_SHARED_DATA PYTHONPATH="$$tmp/isamap" $(abspath $(PY)) -m pytest \
	    -n $(PYTEST_WORKERS) --dist loadgroup -q -p no:cacheprovider $$($(SHARED_TESTS) | grep '/test_')

# The declared lower bounds tested: a second venv ($(VENV_MIN), made anew when
# constraints-min.txt changes, which tests/test_lower_bounds.py keeps equal to setup.cfg's bounds) with every base requirement at its lower
# bound (constraints-min.txt: numpy 2.0.0, torch 2.4.0, rasterio 1.4.0...) and the test tools
# the subset needs, then a subset of the suite: grid, bands, regions, patches, the model file,
# training, prediction to COGs (each checked by rio-cogeo's validator), the streamed COG
# encoder, post-processing and the demo's chain. torch 2.4 exists on PyPI only as a CUDA
# build: the first `make test-min` downloads about 2.8 GB (torch and NVIDIA's libraries) and
# the venv takes 5.5 GB; it runs on the CPU. .ci/run calls it after the other two.
VENV_MIN ?= .venv-min
MIN_STAMP := $(VENV_MIN)/.isamap-installed
MIN_TESTS := tests/contract/test_grid.py tests/contract/test_bands.py \
  tests/contract/test_regions.py tests/contract/test_patches.py tests/training/test_modelfile.py \
  tests/training/run/test_trainer.py tests/inference/cog/test_maps.py tests/inference/cog/test_stream.py \
  tests/inference/predict/test_raster.py tests/inference/predict/test_postprocess.py \
  tests/inference/demo/test_steps.py
# the demo's two-date series builds Earth Engine graphs: the ee extra, not in this environment
MIN_DESELECT := not two_date_series

# The venv takes 5.5 GB and pip unpacks the 2.8 GB download in the temporary folder (not
# kept: --no-cache-dir), so each disk is checked first for what lands on it: a full disk would
# stop pip half way with an OSError.
MIN_VENV_GB ?= 5.5
MIN_DOWNLOAD_GB ?= 2.8
define MIN_DISK_CHECK
import os, shutil, sys, tempfile
venv = os.path.dirname(os.path.abspath("$(VENV_MIN)"))
while not os.path.isdir(venv):
    venv = os.path.dirname(venv)
disks = {}
for place, gb, remedy in ((venv, $(MIN_VENV_GB), "VENV_MIN=<a folder on another disk>"),
                          (tempfile.gettempdir(), $(MIN_DOWNLOAD_GB), "TMPDIR=<a folder on another disk>")):
    need, places, remedies = disks.get(os.stat(place).st_dev, (0.0, [], []))
    disks[os.stat(place).st_dev] = (need + gb, places + [place], remedies + [remedy])
for need, places, remedies in disks.values():
    free = shutil.disk_usage(places[0]).free / 1e9
    if free < need:
        sys.exit(f"make test-min needs about {need:.1f} GB free on the disk of "
                 f"{' and '.join(dict.fromkeys(places))} for $(VENV_MIN) and its download; it has {free:.1f} GB: "
                 f"free some space, or give {' or '.join(remedies)}")
endef
export MIN_DISK_CHECK

$(MIN_STAMP): pyproject.toml constraints-min.txt
	@$(PYTHON) -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null || { \
	  echo "isamap needs Python 3.11 or newer; '$(PYTHON)' is not. Run: make PYTHON=/path/to/python3.11 test-min" >&2; exit 1; }
	rm -rf $(VENV_MIN)
	@$(PYTHON) -c "$$MIN_DISK_CHECK" || exit 1
	$(PYTHON) -m venv $(VENV_MIN)
	$(VENV_MIN)/bin/python -m pip install -q --upgrade pip
	$(VENV_MIN)/bin/python -m pip install -q --no-cache-dir --only-binary=:all: -c constraints-min.txt \
	  -r constraints-min.txt -e . --config-settings editable_mode=compat
	touch $(MIN_STAMP)

test-min: $(MIN_STAMP)
	$(VENV_MIN)/bin/python tools/lower_bounds.py --installed
	$(WRITE_BYTECODE) $(VENV_MIN)/bin/python -m pytest -n $(PYTEST_WORKERS) --dist loadgroup -q -p no:cacheprovider \
	  $(MIN_TESTS) -k '$(MIN_DESELECT)'

# the library's types (setup.cfg [mypy]: gee_export, engine, training, inference), cached in
# .mypy_cache
typecheck: $(STAMP)
	$(VENV)/bin/mypy

# the docs site, offline and strict (a broken link, a missing page or reference fails); site/.
# Not --quiet: it hides the warnings that strict mode counts.
docs: $(STAMP)
	NO_MKDOCS_2_WARNING=1 $(VENV)/bin/mkdocs build --strict --site-dir site
	@echo "The docs site is in site/: open $(CURDIR)/site/index.html in a browser (it works from disk, search too),"
	@echo "or serve it: $(PY) -m http.server -d site 8000, then http://localhost:8000/ (make docs-serve rebuilds on edits)"

docs-serve: $(STAMP)
	NO_MKDOCS_2_WARNING=1 $(VENV)/bin/mkdocs serve

# the guide's pictures (docs/img): a demo run at the demo's defaults, as `make demo` makes it
# (its folder named demo_output, as the pictures' titles show; a smaller --size leaves the
# model 3 training patches), copied by tools/docs_images.py
DOCS_DEMO := .docs-demo
docs-images: $(STAMP)
	rm -rf $(DOCS_DEMO) && mkdir -p $(DOCS_DEMO)
	cd $(DOCS_DEMO) && $(abspath $(VENV))/bin/isamap-demo --out demo_output -q
	$(PY) tools/docs_images.py $(DOCS_DEMO)/demo_output docs/img
	rm -rf $(DOCS_DEMO)

demo: $(STAMP)
	$(VENV)/bin/isamap-demo --out $(DEMO_OUT)

# the demo's assessment figures that docs/accuracy.md quotes: the JSON, and the page's tables
accuracy-figures: demo
	mkdir -p docs/figures && cp $(DEMO_OUT)/assess/figures.json docs/figures/accuracy_demo.json
	$(PY) -c 'from inference.demo.figures import update_page; \
	    update_page("docs/figures/accuracy_demo.json", "docs/accuracy.md")'

# The evidence pages' results (docs/evidence/, docs/real-data.md, docs/landcover.md): every
# experiment run again into $(EVIDENCE)/ (not committed; a run resumes from what its folder
# holds), its summary written to docs/figures/ (tools/evidence.py: what the pages and their
# tests read) and the pages' tables rewritten from it. Several hours on 2 cores; not part of
# `make test` or CI. EVIDENCE_RUNS picks runs by the --out names the pages use.
EVIDENCE ?= evidence_output
WEIGHTS ?= ../shared/weights
LOTO_RUNS := builtup_default
EVIDENCE_RUNS ?= $(LOTO_RUNS) change_pairs change_pairs_default terramesh landcover lc_patches lc_naip \
  lccompare_in lccompare_bn lccompare_bn_x3 bench_pruning presto_dates
LOTO_builtup_default :=
LC_lc_patches := --split patches --groups 0,4 1,5 2,6 3,7 --windows 16 32 128 256
LC_lc_naip := --settings naip
PRUNE_in :=
PRUNE_bn := --stem-norm batch
PRUNE_bn_x3 := --stem-norm batch --iterations 900 --prune-iterations 300
RUN := nice $(abspath $(PY))

evidence: $(STAMP)
	@mkdir -p $(EVIDENCE)
	@set -e; for run in $(EVIDENCE_RUNS); do $(MAKE) --no-print-directory evidence-$$run; done
	$(PY) tools/evidence.py --all
	$(PY) tools/evidence.py --check

evidence-builtup_%: $(STAMP)
	$(RUN) -m experiments.builtup --loto $(LOTO_builtup_$*) --out $(EVIDENCE)/builtup_$*
	$(PY) tools/evidence.py $(EVIDENCE)/builtup_$*/loto.json docs/figures/builtup_$*.json
	$(if $(filter three,$*),@echo "builtup_three: no page table (docs/evidence/builtup.md quotes it)",$(PY) -c 'from experiments.builtup_loto import update_page; update_page("docs/figures/builtup_$*.json", "$(if $(filter default,$*),docs/real-data.md,docs/evidence/builtup.md)")')

evidence-change_pairs: $(STAMP)
	$(RUN) -m experiments.change_pairs --seeds 3 \
	  --recipes unet-s2-window,bands,presto,galileo-nano,galileo-nano:head \
	  --encoder presto=$(WEIGHTS)/presto/default_model.pt \
	  --encoder galileo-nano=$(WEIGHTS)/galileo_nano/encoder.pt --out $(EVIDENCE)/change_pairs
	$(PY) tools/evidence.py $(EVIDENCE)/change_pairs/change_pairs.json docs/figures/change_pairs.json
	$(PY) -c 'from experiments.change_pairs import update_page; update_page()'

evidence-change_pairs_default: $(STAMP)
	$(RUN) -m experiments.change_pairs --seeds 3 --recipes unet-s2 \
	  --out $(EVIDENCE)/change_unet_s2
	$(PY) tools/evidence.py $(EVIDENCE)/change_unet_s2/change_pairs.json \
	  docs/figures/change_pairs_default.json
	$(PY) -c 'from experiments.change_pairs import update_page; update_page("docs/figures/change_pairs_default.json")'

evidence-terramesh: $(STAMP)
	$(RUN) -m experiments.terramesh --models unet-s2-window,unet-s1,unet,crofusenet --out $(EVIDENCE)/terramesh_output
	$(PY) tools/evidence.py $(EVIDENCE)/terramesh_output/metrics.json docs/figures/terramesh.json
	$(PY) -c 'from experiments.terramesh import update_page; update_page()'

evidence-presto_dates: $(STAMP)
	$(RUN) -m experiments.presto_dates --encoder presto=$(WEIGHTS)/presto/default_model.pt \
	  --out $(EVIDENCE)/presto_dates
	$(PY) tools/evidence.py $(EVIDENCE)/presto_dates/presto_dates.json docs/figures/presto_dates.json
	$(PY) -c 'from experiments.presto_dates_report import update_page; update_page()'

evidence-landcover: $(STAMP)
	$(RUN) -m experiments.landcover --out $(EVIDENCE)/landcover_output
	$(PY) -m experiments.landcover_figures $(EVIDENCE)/landcover_output/metrics.json

evidence-lc_%: $(STAMP)
	$(RUN) -m experiments.landcover $(LC_lc_$*) --out $(EVIDENCE)/lc_$*
	$(PY) -m experiments.landcover_figures $(EVIDENCE)/lc_$*/metrics.json --variant $*

evidence-lccompare_%: $(STAMP)
	$(RUN) -m experiments.landcover_pruning $(PRUNE_$*) --out $(EVIDENCE)/lccompare_output_$* --threads 1
	$(PY) -m experiments.landcover_figures $(EVIDENCE)/lccompare_output_$*/metrics.json --pruning $*

evidence-bench_pruning: $(STAMP)
	ISAMAP_AUTOTUNE_CACHE=off $(RUN) benchmarks/bench_pruning.py --json $(EVIDENCE)/bench_pruning.json
	$(PY) -m experiments.landcover_figures $(EVIDENCE)/bench_pruning.json --bench-pruning

bench: $(STAMP)
	@set -e; for f in benchmarks/bench_*.py; do echo "== $$f"; $(PY) $$f; done

# smoke run of the speed benchmarks (auto vs fixed configurations, pipeline vs model-only,
# the helpers' CPU per km²)
bench-quick: $(STAMP)
	$(PY) benchmarks/bench_models.py --quick
	$(PY) benchmarks/bench_inference.py --size 2048
	$(PY) benchmarks/bench_helpers.py --size 2048

# the notebooks' stored outputs (checked in): each executed offline on the demo-sized SYNTHETIC
# scene (ISAMAP_SMOKE=1) by tools/notebooks.py, pictures as small PNGs, the install cell of
# tools/notebook_install.py, and an "Open in Colab" badge that opens the notebook where the
# address is known (COLAB_REPO=owner/name or a GitHub origin remote; else the steps, no badge)
notebooks: $(STAMP)
	$(PY) tools/notebooks.py $(if $(COLAB_REPO),--repo $(COLAB_REPO))

# the wheel a notebook's install cell takes when uploaded beside it (Colab's Files panel): dist/
wheel: $(STAMP)
	$(PY) -m pip wheel --no-deps --no-build-isolation -q -w dist .
	@ls dist/isamap-*.whl

clean:
	rm -rf $(VENV) $(VENV_MIN) $(DEMO_OUT) site .pytest_cache .ruff_cache .mypy_cache
