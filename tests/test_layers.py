"""The layers import only downward, no module takes part in an import cycle, core stands alone.

Every import is read as Python runs it (tests/support/import_graph.py: lazy imports,
``importlib.import_module`` with a literal name, and the package ``__init__`` modules an
import runs) and checked against the ranks of docs/architecture.md:

    core 0 < contract 1 < gee_export.ee | gee_export.local | gee_export.imported 2 < engine 3 <
    training.losses 4 < training.models 5 < training 6 < inference.cog 7 <
    inference.predict | inference.predict.change | inference.predict.keep 8 <
    inference.publish | inference.assess 9 < inference.mapping 10 <
    inference 11 < cli 12 < experiments | benchmarks | testing 13

A module may import its own rank or lower; the backends ``gee_export.ee``, ``gee_export.local``
and ``gee_export.imported`` are siblings that never import each other, and so are
``inference.publish`` and ``inference.assess``, and the change and keep rooms of
``inference.predict``; the library never imports ``cli`` (it stands
above it) and a command module never imports another. The last tests plant small trees to show
that the checker fails where it must.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from tests.support import REPO_ROOT
from tests.support.import_graph import (
    cycles,
    import_graph,
    imports_of,
    layer,
    read_tree,
    upward_imports,
)

PACKAGES = ("core", "contract", "gee_export", "engine", "training", "inference", "cli",
            "experiments", "benchmarks", "testing")
RANKS = (  # longest prefix wins
    ("core", 0),
    ("contract", 1),
    ("gee_export", 2),
    ("gee_export.ee", 2),
    ("gee_export.local", 2),
    ("gee_export.imported", 2),
    ("engine", 3),
    ("training.losses", 4),
    ("training.models", 5),
    ("training", 6),
    ("inference.cog", 7),
    ("inference.predict", 8),
    ("inference.predict.change", 8),
    ("inference.predict.keep", 8),
    ("inference.publish", 9),
    ("inference.assess", 9),
    ("inference.mapping", 10),
    ("inference", 11),
    ("cli", 12),
    ("experiments", 13),
    ("benchmarks", 13),
    ("testing", 13),
)
BACKENDS = ("gee_export.ee", "gee_export.local", "gee_export.imported")
ROOMS = ("inference.predict.change", "inference.predict.keep")
SIBLINGS = frozenset({*((a, b) for a in BACKENDS for b in BACKENDS if a != b),
                      *((a, b) for a in ROOMS for b in ROOMS if a != b),
                      ("inference.assess", "inference.publish"),
                      ("inference.publish", "inference.assess")})
LIBRARY = ("core", "contract", "gee_export", "engine", "training", "inference", "cli")

MODULES = read_tree(REPO_ROOT, PACKAGES)


def test_no_import_runs_upward_or_sideways():
    problems = upward_imports(MODULES, RANKS, SIBLINGS)
    assert not problems, "\n".join(problems)


def test_a_command_module_never_imports_another():
    """``cli`` holds one module per console script; what two commands share lives below."""
    crossing = [f"{name}:{line} imports {target}"
                for name in MODULES if name.startswith("cli.")
                for target, line in imports_of(name, MODULES)
                if target.startswith("cli.") and target != name]
    assert not crossing, "\n".join(crossing)


def test_no_import_cycles_counting_package_inits():
    found = cycles(import_graph(MODULES))
    assert not found, "import cycles: " + "; ".join(" <-> ".join(c) for c in found)


def test_core_imports_nothing_else_of_the_project():
    outside = [f"{name}:{line} imports {target}"
               for name in MODULES if layer(name, RANKS)[0] == "core"
               for target, line in imports_of(name, MODULES)
               if target.split(".")[0] != "core"]
    assert not outside, "\n".join(outside)


def test_the_library_never_imports_experiments_benchmarks_fakes_or_tests():
    bad = []
    for name, module in MODULES.items():
        if not name.startswith(LIBRARY):
            continue
        for node in ast.walk(ast.parse(module.source)):
            names = ([a.name for a in node.names] if isinstance(node, ast.Import)
                     else [node.module or ""] if isinstance(node, ast.ImportFrom) else [])
            bad += [f"{name} imports {n}" for n in names
                    if n.split(".")[0] in ("experiments", "benchmarks", "testing", "tests",
                                              "conftest")]
    assert not bad, "\n".join(bad)


@pytest.mark.parametrize("path", sorted((REPO_ROOT / "benchmarks").glob("*.py")),
                         ids=lambda p: p.name)
def test_benchmarks_import_only_the_project(path):
    tree = ast.parse(path.read_text(encoding="utf-8"))
    bad = []
    for node in ast.walk(tree):
        names = ([a.name for a in node.names] if isinstance(node, ast.Import)
                 else [node.module or ""] if isinstance(node, ast.ImportFrom) else [])
        bad += [n for n in names if n.split(".")[0] in ("tests", "conftest")]
        if isinstance(node, ast.Attribute) and node.attr == "path" and \
                isinstance(node.value, ast.Name) and node.value.id == "sys":
            bad.append("sys.path")
    assert not bad, f"{path.name} reaches outside the project: {bad}"


def test_every_package_says_what_it_may_import():
    silent = [name for name, module in MODULES.items()
              if module.is_package and name.split(".")[0] in (*LIBRARY, "experiments")
              and "may import" not in (ast.get_docstring(ast.parse(module.source)) or "").lower()
              and name != "gee_export"]
    assert not silent, f"package docstrings without 'May import': {silent}"


def test_the_checker_sees_lazy_imports_and_package_inits():
    """A lazy import inside a function counts, and so does the ``__init__`` it runs."""
    cli = {target for target, _ in imports_of("cli.export", MODULES)}
    assert {"gee_export.local.extent", "gee_export.ee.export"} <= cli
    assert {"gee_export.local", "gee_export.ee"} <= cli  # the packages those imports run
    assert "inference.demo.training" in {target for target, _ in
                                         imports_of("inference.demo.steps", MODULES)}
    assert layer("cli.map", RANKS) == ("cli", 12)
    own = {target for target, _ in imports_of("inference.predict.raster", MODULES)}
    assert "inference.predict" not in own and "inference" not in own  # already running
    assert layer("contract.grid", RANKS) == ("contract", 1)


def test_change_and_keep_are_rooms_of_predict_that_never_import_each_other():
    """Every module of change between dates and of the keep rule lies in its one room."""
    assert layer("inference.predict.change.stretches", RANKS) == ("inference.predict.change", 8)
    assert layer("inference.predict.keep.shares", RANKS) == ("inference.predict.keep", 8)
    assert ("inference.predict.change", "inference.predict.keep") in SIBLINGS
    assert ("inference.predict.keep", "inference.predict.change") in SIBLINGS
    scattered = [name for name in MODULES if name.startswith("inference.")
                 and layer(name, RANKS)[0] not in ROOMS
                 and name.rsplit(".", 1)[1] in ("change", "change_inputs", "encoder_change",
                                                "spectral_stacks", "consistency", "stretches",
                                                "keep", "keep_inputs", "shares")]
    assert not scattered, f"change or keep outside its room: {scattered}"


def _plant(root: Path, files: dict[str, str]) -> dict:
    for rel, text in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return read_tree(root, sorted({rel.split("/")[0] for rel in files}))


def test_a_cycle_through_a_package_init_fails_the_check(tmp_path):
    """``low.b`` imports only a submodule of ``pkg``, but that runs the ``__init__`` of ``pkg``,
    which imports ``pkg.a``, which imports ``low.b``: Python's partial-import cycle."""
    tree = {"pkg/__init__.py": "from pkg import a\n",
            "pkg/a.py": "def f():\n    import low.b\n",
            "pkg/c.py": "X = 1\n",
            "low/__init__.py": "",
            "low/b.py": "from pkg.c import X\n"}
    found = cycles(import_graph(_plant(tmp_path / "cyclic", tree)))
    assert found == [["low.b", "pkg", "pkg.a"]]
    tree["pkg/__init__.py"] = '"""Nothing imported here."""\n'
    assert cycles(import_graph(_plant(tmp_path / "acyclic", tree))) == []


def test_an_upward_or_dynamic_import_fails_the_check(tmp_path):
    modules = _plant(tmp_path, {
        "lib/__init__.py": "", "lib/low.py": "import importlib\n"
        "def f():\n    return importlib.import_module('lib.high')\n",
        "lib/high.py": "X = 1\n", "lib/side.py": "from lib import other\n",
        "lib/other.py": "",
    })
    ranks = (("lib", 0), ("lib.low", 0), ("lib.high", 1), ("lib.side", 0), ("lib.other", 0))
    problems = upward_imports(modules, ranks, frozenset({("lib.side", "lib.other")}))
    assert len(problems) == 2
    assert "lib.low (line 3) imports lib.high (rank 1 above lib.low's 0)" in problems[0]
    assert "siblings" in problems[1]
