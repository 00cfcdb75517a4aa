"""The declared ranges are the ranges tested, and the install page states them.

``make test-min`` (CI's third step) installs ``constraints-min.txt`` in a venv of its own and
runs a subset of the suite there. These checks keep that file equal to ``setup.cfg``'s lower
bounds (every base requirement, and the dev tools the subset needs), the subset's test files
present, and the table of ranges on ``docs/install.md`` equal to the one written from
``setup.cfg`` and both constraints files.
"""

from __future__ import annotations

import re
import sys

from packaging.utils import canonicalize_name

from tests.support import REPO_ROOT

sys.path.insert(0, str(REPO_ROOT / "tools"))
import lower_bounds

# the dev extra's tools the subset runs with (pytest's plugins named in setup.cfg, the COG
# validator, hypothesis for the grid's property tests)
SUBSET_TOOLS = {"pytest", "pytest-xdist", "pytest-timeout", "hypothesis", "rio-cogeo"}


def test_every_base_requirement_is_pinned_at_its_lower_bound():
    pins = lower_bounds.pins()
    base = lower_bounds.declared()["base"]
    assert base, "no install_requires read from setup.cfg"
    for requirement in base:
        name = canonicalize_name(requirement.name)
        bound = lower_bounds.lower_bound(requirement)
        assert bound is not None, f"{requirement}: no lower bound, nothing for make test-min"
        assert name in pins, f"{name} is not in constraints-min.txt"
        assert pins[name] == bound, (
            f"{name}: setup.cfg declares >= {bound}, constraints-min.txt tests {pins[name]}")


def test_the_subsets_tools_are_pinned_at_the_dev_extras_lower_bounds():
    pins = lower_bounds.pins()
    dev = {canonicalize_name(r.name): r for r in lower_bounds.declared()["dev"]}
    base = {canonicalize_name(r.name) for r in lower_bounds.declared()["base"]}
    assert set(pins) - base == SUBSET_TOOLS, "constraints-min.txt pins what it does not test"
    for name in SUBSET_TOOLS:
        assert pins[name] == lower_bounds.lower_bound(dev[name]), name


def test_installed_versions_are_compared_on_their_release():
    seen, wrong = lower_bounds.installed_mismatches(
        {"pytest": lower_bounds.Version("0.1"), "no-such-package-here": lower_bounds.Version("1")})
    assert seen and seen[0].startswith("pytest ")
    assert [w.split(" ", 1)[0] for w in wrong] == ["pytest", "no-such-package-here"]


def test_make_test_min_runs_test_files_that_exist_and_ci_calls_it():
    makefile = (REPO_ROOT / "Makefile").read_text()
    block = re.search(r"^MIN_TESTS := (.*?)(?<!\\)\n", makefile, re.M | re.S).group(1)
    files = block.replace("\\\n", " ").split()
    assert len(files) >= 8 and all((REPO_ROOT / f).is_file() for f in files), files
    assert "make test-min" in (REPO_ROOT / ".ci" / "run").read_text()
    ignored = (REPO_ROOT / ".gitignore").read_text().splitlines()
    assert ".venv-min" in ignored or ".venv-min/" in ignored


def test_the_install_page_states_the_ranges_tested():
    page = (REPO_ROOT / "docs" / "install.md").read_text()
    assert lower_bounds.ranges_table() in page, (
        "docs/install.md: paste the output of python tools/lower_bounds.py --table")
