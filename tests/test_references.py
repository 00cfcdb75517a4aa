"""Every project module, attribute and ``.py`` path the prose names exists.

Docstrings, comments, ``docs/*.md`` and ``README.md`` name modules (``inference.cog.maps``),
their attributes (``inference.cog.maps.PROB_SCALE``) and files (``gee_export/ee/export.py``).
When code moves, such a name keeps pointing at the old place and misleads the next reader;
this test fails on any that does not resolve:

* a dotted name resolves when a prefix is a project module or package (a ``.py`` file or a
  folder with ``__init__.py``) and every further part is a name defined in it: a top-level
  definition, assignment or import, then a class's members or ``self.`` attributes (read with
  ``ast``, nothing imported, so the test stays fast);
* a path ending in ``.py`` resolves when the file exists relative to the repository root, or,
  for a partial path (``predict/cog.py``, ``cog.py``), when some project file ends with it.
"""

from __future__ import annotations

import ast
import functools
import re
from collections.abc import Iterator
from pathlib import Path

from tests.support import REPO_ROOT

ROOTS = ("core", "contract", "gee_export", "engine", "training", "inference", "experiments")
PY_FOLDERS = (*ROOTS, "benchmarks", "tests")
DOTTED = re.compile(r"(?<![\w./-])(?:" + "|".join(ROOTS) + r")(?:\.[A-Za-z_]\w*)+")
PATH = re.compile(r"(?<![\w./*<{-])(?:\.\./)*((?:[\w.-]+/)*[\w-]+\.py)\b(?![\w*])")
FILE_SUFFIXES = {"md", "py", "json", "jsonl", "ipynb", "toml", "cfg", "txt", "tif", "png",
                 "csv", "pt", "js", "yaml", "yml", "html", "log"}


def _py_files() -> list[Path]:
    files = [p for folder in PY_FOLDERS for p in sorted((REPO_ROOT / folder).rglob("*.py"))]
    return files + sorted(REPO_ROOT.glob("*.py"))


@functools.cache
def _project_paths() -> tuple[str, ...]:
    return tuple(p.relative_to(REPO_ROOT).as_posix() for p in _py_files())


def _statements(body: list[ast.stmt]) -> Iterator[ast.stmt]:
    """Every statement, nested ones included (expressions are not walked: that is slow)."""
    for node in body:
        yield node
        for field in ("body", "orelse", "finalbody", "handlers", "cases"):
            yield from _statements(getattr(node, field, []))


def prose_of_python(text: str) -> list[tuple[int, str]]:
    """``(line, text)`` of a module's comments and docstrings (string statements).

    A comment is a line starting with ``#`` or the text after ``  # `` (ruff keeps inline
    comments two spaces from the code), which is quicker than tokenizing every module.
    """
    found = []
    for number, line in enumerate(text.splitlines(), 1):
        stripped = line.lstrip()
        if stripped.startswith("#"):
            found.append((number, stripped))
        elif "  # " in line:
            found.append((number, line.split("  # ", 1)[1]))
    for node in _statements(ast.parse(text).body):
        if (isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant)
                and isinstance(node.value.value, str)):
            found += [(node.lineno + i, line)
                      for i, line in enumerate(node.value.value.splitlines())]
    return found


def _module_file(name: str) -> Path | None:
    base = REPO_ROOT.joinpath(*name.split("."))
    for candidate in (base.with_suffix(".py"), base / "__init__.py"):
        if candidate.is_file():
            return candidate
    return None


def _members(body: list[ast.stmt]) -> dict[str, ast.AST]:
    """Names a module or class body defines (definitions, assignments, imports)."""
    names: dict[str, ast.AST] = {}
    for node in body:
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            names[node.name] = node
        elif isinstance(node, ast.Assign | ast.AnnAssign | ast.AugAssign):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            for target in targets:
                for leaf in ast.walk(target):
                    if isinstance(leaf, ast.Name):
                        names[leaf.id] = node
        elif isinstance(node, ast.Import | ast.ImportFrom):
            for alias in node.names:
                names[(alias.asname or alias.name).split(".")[0]] = node
        elif isinstance(node, ast.If | ast.Try | ast.With):
            for part in ("body", "orelse", "finalbody", "handlers"):
                for child in getattr(node, part, []):
                    names.update(_members(getattr(child, "body", [child])
                                          if isinstance(child, ast.ExceptHandler) else [child]))
    return names


def _class_members(node: ast.ClassDef) -> set[str]:
    names = set(_members(node.body))
    for child in ast.walk(node):  # attributes set on self in methods
        if (isinstance(child, ast.Attribute) and isinstance(child.value, ast.Name)
                and child.value.id == "self" and isinstance(child.ctx, ast.Store)):
            names.add(child.attr)
    return names


@functools.cache
def _tree(path: Path) -> ast.Module:
    return ast.parse(path.read_text(encoding="utf-8"))


def resolves(dotted: str) -> bool:
    """Whether a dotted project name names a module, package or something defined in one."""
    parts = dotted.split(".")
    for cut in range(len(parts), 0, -1):
        module = _module_file(".".join(parts[:cut]))
        if module is None:
            continue
        rest = parts[cut:]
        if not rest:
            return True
        scope: ast.AST | None = None
        members = _members(_tree(module).body)
        for i, name in enumerate(rest):
            if name not in members:
                return False
            scope = members[name]
            if not isinstance(scope, ast.ClassDef) or i == len(rest) - 1:
                return True  # a function's or value's own attributes are not followed
            members = {n: scope for n in _class_members(scope)} | _members(scope.body)
        return True
    return False


def path_resolves(path: str) -> bool:
    """Whether a ``.py`` path names a project file (a partial path by its end)."""
    path = path.lstrip("./") if path.startswith("../") else path
    if (REPO_ROOT / path).is_file():
        return True
    return any(p == path or p.endswith("/" + path) for p in _project_paths())


def stale_in(text: str) -> list[str]:
    """The names and paths in ``text`` that do not resolve."""
    stale = []
    for match in DOTTED.finditer(text):
        name = match.group(0)
        if name.rsplit(".", 1)[-1] in FILE_SUFFIXES:
            continue  # a file name such as inference.md, not a module
        if not resolves(name):
            stale.append(name)
    stale += [m.group(1) for m in PATH.finditer(text) if not path_resolves(m.group(1))]
    return stale


def _sources() -> list[tuple[str, list[tuple[int, str]]]]:
    sources = []
    for path in _py_files():
        rel = path.relative_to(REPO_ROOT).as_posix()
        if rel == "tests/test_references.py":
            continue  # its examples are made up
        sources.append((rel, prose_of_python(path.read_text(encoding="utf-8"))))
    for path in [*sorted((REPO_ROOT / "docs").glob("*.md")), REPO_ROOT / "README.md"]:
        lines = path.read_text(encoding="utf-8").splitlines()
        sources.append((path.relative_to(REPO_ROOT).as_posix(), list(enumerate(lines, 1))))
    return sources


def test_every_named_module_attribute_and_path_exists():
    stale = [f"{rel}:{line}: {name}" for rel, prose in _sources() for line, text in prose
             for name in stale_in(text)]
    assert stale == [], "names of moved or deleted code:\n" + "\n".join(stale)


def test_the_checker_tells_what_exists_from_what_does_not():
    assert resolves("inference.cog.maps.PROB_SCALE") and resolves("core")
    assert resolves("gee_export.ee.export.ExportJob.check_fine_label")
    assert resolves("inference.publish.image.EarthEngineAssets.share")
    assert not resolves("inference.cogs") and not resolves("training.autotune")
    assert not resolves("inference.cog.maps.NO_SUCH_NAME")
    assert path_resolves("gee_export/ee/export.py") and path_resolves("cog/maps.py")
    assert not path_resolves("inference/cog.py") and not path_resolves("gee_export/beam.py")
    assert stale_in("see `inference.lccompare` and docs/inference.md or inference.md") == [
        "inference.lccompare"]
