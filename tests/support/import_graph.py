"""The project's import graph as Python really loads it, for the layer test.

An import statement is read with ``ast`` wherever it stands (a lazy import inside a function
is still a dependency), and so is ``importlib.import_module("literal")``. Importing
``a.b.c`` also runs the ``__init__`` of packages ``a`` and ``a.b``: those package edges are added
too, except the ones Python has already run to load the importing module itself (its own
ancestors). Without them a cycle through a package ``__init__`` goes unseen: ``training.losses``
importing ``training.models.registry`` runs ``training/models/__init__.py``, which imports
every model module.

The functions take the module sources as data, so a test can plant a tree and check that the
checker finds what it must.
"""

from __future__ import annotations

import ast
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Module:
    """One module of the tree: its source and whether it is a package ``__init__``."""

    path: Path
    source: str
    is_package: bool


def module_name(path: Path, root: Path) -> str:
    parts = list(path.relative_to(root).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def read_tree(root: Path, packages: Sequence[str]) -> dict[str, Module]:
    """Every ``*.py`` under ``root/<package>`` for each top-level name in ``packages``."""
    found = {}
    for package in packages:
        for path in sorted((root / package).rglob("*.py")):
            found[module_name(path, root)] = Module(path, path.read_text(encoding="utf-8"),
                                                    path.name == "__init__.py")
    return found


def resolve(name: str, modules: Mapping[str, Module]) -> str | None:
    """The project module an imported name lives in (a module, else its package), or None."""
    while name:
        if name in modules:
            return name
        name = name.rpartition(".")[0]
    return None


def _literal_imports(node: ast.Call) -> list[str]:
    """``importlib.import_module("x")`` / ``__import__("x")`` with a literal name."""
    func = node.func
    called = (func.attr if isinstance(func, ast.Attribute) else
              func.id if isinstance(func, ast.Name) else "")
    if called not in ("import_module", "__import__") or not node.args:
        return []
    first = node.args[0]
    return [first.value] if isinstance(first, ast.Constant) and isinstance(first.value, str) \
        else []


def direct_imports(name: str, modules: Mapping[str, Module]) -> list[tuple[str, int]]:
    """``(imported project module, line)`` for every import written in module ``name``."""
    module = modules[name]
    tree = ast.parse(module.source, filename=str(module.path))
    package = name if module.is_package else name.rpartition(".")[0]
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
            targets = [f"{base}.{alias.name}" if f"{base}.{alias.name}" in modules else base
                       for alias in node.names]
        elif isinstance(node, ast.Call):
            targets = _literal_imports(node)
        else:
            continue
        for target in targets:
            resolved = resolve(target, modules)
            if resolved is not None and resolved != name:
                found.append((resolved, node.lineno))
    return found


def ancestors(name: str) -> list[str]:
    """``a.b.c`` -> ``["a", "a.b"]``: the packages Python runs before the module."""
    parts = name.split(".")
    return [".".join(parts[:i]) for i in range(1, len(parts))]


def imports_of(name: str, modules: Mapping[str, Module]) -> list[tuple[str, int]]:
    """Every project module that loading ``name`` runs directly, package ``__init__`` s too."""
    own = set(ancestors(name))
    found = []
    for target, line in direct_imports(name, modules):
        found.append((target, line))
        found += [(pkg, line) for pkg in ancestors(target)
                  if pkg in modules and pkg not in own and pkg != name]
    return found


def import_graph(modules: Mapping[str, Module]) -> dict[str, list[str]]:
    return {name: sorted({t for t, _ in imports_of(name, modules)}) for name in modules}


def cycles(graph: Mapping[str, Sequence[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan), sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    counter = [0]

    def connect(node: str) -> None:
        index[node] = low[node] = counter[0]
        counter[0] += 1
        stack.append(node)
        on_stack.add(node)
        for nxt in graph.get(node, ()):
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
                found.append(sorted(component))

    for name in sorted(graph):
        if name not in index:
            connect(name)
    return sorted(found)


def layer(name: str, ranks: Sequence[tuple[str, int]]) -> tuple[str, int]:
    """The layer (longest matching prefix) of module ``name`` and its rank."""
    best: tuple[str, int] | None = None
    for prefix, rank in ranks:
        if (name == prefix or name.startswith(prefix + ".")) and \
                (best is None or len(prefix) > len(best[0])):
            best = (prefix, rank)
    if best is None:
        raise AssertionError(f"{name} belongs to no layer; add it to the ranks and "
                             "docs/architecture.md")
    return best


def upward_imports(modules: Mapping[str, Module], ranks: Sequence[tuple[str, int]],
                   siblings: frozenset[tuple[str, str]] = frozenset()) -> list[str]:
    """One line per import that runs to a higher rank or between siblings."""
    problems = []
    for name in modules:
        own_layer, own_rank = layer(name, ranks)
        for target, line in imports_of(name, modules):
            their_layer, their_rank = layer(target, ranks)
            where = f"{name} (line {line}) imports {target}"
            if their_rank > own_rank:
                problems.append(f"{where} (rank {their_rank} above {own_layer}'s {own_rank})")
            elif (own_layer, their_layer) in siblings:
                problems.append(f"{where} (siblings never import each other)")
    return problems
