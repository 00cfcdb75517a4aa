"""The layers import only downward, no module takes part in an import cycle, core stands alone.

Every module's imports are read with ``ast`` (function-level imports included, since a lazy
import is still a dependency), resolved to the project's modules, and checked against the ranks
of docs/architecture.md:

    gee_export.core 0 < gee_export.contract 1 < gee_export.ee | gee_export.local |
    gee_export.cli 2 < training 3 < inference 4

A module may import its own rank or lower; ``gee_export.ee`` and ``gee_export.local`` are
siblings that never import each other; nothing imports ``gee_export.cli``. Benchmarks import
only the package, never the tests.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from tests.support import REPO_ROOT

PACKAGES = ("gee_export", "training", "inference")
RANKS = (  # longest prefix wins
    ("gee_export.core", 0),
    ("gee_export.contract", 1),
    ("gee_export.ee", 2),
    ("gee_export.local", 2),
    ("gee_export.cli", 2),
    ("gee_export", 0),  # the package's own __init__ re-exports core only
    ("training", 3),
    ("inference", 4),
)
SIBLINGS = {("gee_export.ee", "gee_export.local"), ("gee_export.local", "gee_export.ee")}


def module_name(path: Path) -> str:
    parts = list(path.relative_to(REPO_ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def project_modules() -> dict[str, Path]:
    found = {}
    for package in PACKAGES:
        for path in sorted((REPO_ROOT / package).rglob("*.py")):
            found[module_name(path)] = path
    return found


MODULES = project_modules()


def is_package(name: str) -> bool:
    return MODULES[name].name == "__init__.py"


def resolve(name: str) -> str | None:
    """The project module an imported name lives in (a module, else its package), or None."""
    while name:
        if name in MODULES:
            return name
        name = name.rpartition(".")[0]
    return None


def imports_of(name: str) -> list[tuple[str, int]]:
    """``(imported project module, line)`` for every import statement of module ``name``."""
    path = MODULES[name]
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    package = name if is_package(name) else name.rpartition(".")[0]
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")
                anchor = anchor[: len(anchor) - (node.level - 1)]
                base = ".".join([*anchor, base] if base else anchor)
            # ``from pkg import sub`` imports the submodule when there is one
            targets = [f"{base}.{alias.name}" if f"{base}.{alias.name}" in MODULES else base
                       for alias in node.names]
        else:
            continue
        for target in targets:
            resolved = resolve(target)
            if resolved is not None and resolved != name:
                found.append((resolved, node.lineno))
    return found


def layer(name: str) -> tuple[str, int]:
    for prefix, rank in RANKS:
        if name == prefix or name.startswith(prefix + "."):
            return prefix, rank
    raise AssertionError(f"{name} belongs to no layer; add it to RANKS and docs/architecture.md")


def test_no_import_runs_upward_or_sideways():
    problems = []
    for name in MODULES:
        own_layer, own_rank = layer(name)
        for target, line in imports_of(name):
            their_layer, their_rank = layer(target)
            where = f"{MODULES[name].relative_to(REPO_ROOT)}:{line} imports {target}"
            if their_rank > own_rank:
                problems.append(f"{where} (rank {their_rank} above {own_layer}'s {own_rank})")
            elif (own_layer, their_layer) in SIBLINGS:
                problems.append(f"{where} (the backends never import each other)")
            elif their_layer == "gee_export.cli" and own_layer != "gee_export.cli":
                problems.append(f"{where} (the command drives the backends, not the reverse)")
    assert not problems, "\n".join(problems)


def packages_above(name: str) -> list[str]:
    """The project packages whose ``__init__`` Python runs before it imports module ``name``."""
    parts = name.split(".")
    return [p for p in (".".join(parts[:i]) for i in range(1, len(parts))) if p in MODULES]


def test_no_import_cycles():
    # Importing ``a.b.c`` runs ``a/__init__`` and ``a/b/__init__`` first, so those count as
    # imported too: a cycle through a package's __init__ is a cycle.
    graph = {name: sorted({p for t, _ in imports_of(name) for p in (*packages_above(t), t)})
             for name in MODULES}
    # A submodule's import of its own package __init__ is how Python loads packages, not a
    # dependency of the module on the package's contents; leave those edges out.
    for name, targets in graph.items():
        graph[name] = [t for t in targets if not (is_package(t) and name.startswith(t + "."))]
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    cycles: list[list[str]] = []
    counter = [0]

    def connect(node: str) -> None:  # Tarjan's strongly connected components
        index[node] = low[node] = counter[0]
        counter[0] += 1
        stack.append(node)
        on_stack.add(node)
        for nxt in graph[node]:
            if nxt not in index:
                connect(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                cycles.append(sorted(component))

    for name in sorted(graph):
        if name not in index:
            connect(name)
    assert not cycles, "import cycles: " + "; ".join(" <-> ".join(c) for c in cycles)


TRAINING_FLOORS = (  # longest prefix wins; docs/training.md and training/__init__.py
    ("training.engine", 0),
    ("training.losses", 1),
    ("training.models", 2),
    ("training", 3),
)


def training_floor(name: str) -> int:
    return next(rank for prefix, rank in TRAINING_FLOORS
                if name == prefix or name.startswith(prefix + "."))


def test_training_floors_import_only_downward():
    """The run engine, then the losses, then the models, then the rest of ``training``.

    The losses never reach the models that name them, so which losses exist does not depend
    on whether the models were imported.
    """
    upward = [f"{MODULES[name].relative_to(REPO_ROOT)}:{line} imports {target}"
              for name in MODULES if name.startswith("training")
              for target, line in imports_of(name)
              if target.startswith("training") and training_floor(target) > training_floor(name)]
    assert not upward, "\n".join(upward)


def test_core_imports_nothing_else_of_the_project():
    outside = [f"{MODULES[name].relative_to(REPO_ROOT)}:{line} imports {target}"
               for name in MODULES if layer(name)[0] == "gee_export.core"
               for target, line in imports_of(name)
               if not target.startswith("gee_export.core")]
    assert not outside, "\n".join(outside)


@pytest.mark.parametrize("path", sorted((REPO_ROOT / "benchmarks").glob("*.py")),
                         ids=lambda p: p.name)
def test_benchmarks_import_only_the_package(path):
    tree = ast.parse(path.read_text(encoding="utf-8"))
    bad = []
    for node in ast.walk(tree):
        names = ([a.name for a in node.names] if isinstance(node, ast.Import)
                 else [node.module or ""] if isinstance(node, ast.ImportFrom) else [])
        bad += [n for n in names if n.split(".")[0] in ("tests", "conftest")]
        if isinstance(node, ast.Attribute) and node.attr == "path" and \
                isinstance(node.value, ast.Name) and node.value.id == "sys":
            bad.append("sys.path")
    assert not bad, f"{path.name} reaches outside the package: {bad}"


def test_the_checker_sees_lazy_imports():
    """A lazy import inside a function counts: the rule has no loophole."""
    cli = {target for target, _ in imports_of("gee_export.cli")}
    assert {"gee_export.local.stack", "gee_export.ee.export"} <= cli  # both inside functions
    assert "training.demo" in {target for target, _ in imports_of("inference.demo")}
    assert layer("gee_export.contract.grid") == ("gee_export.contract", 1)
