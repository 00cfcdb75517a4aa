"""Every option an error or warning names exists on the command that shows it.

A message that tells the user to pass ``--scene-date`` is worse than none when the command
refuses ``--scene-date``. The messages are the string literals of ``raise`` statements and of
``log.warning``/``log.error`` calls (f-string parts included); each ``--option`` in them must be
an option of the commands whose code raises it (:data:`OWNERS`). A message that names another
command (``isamap-export --fine-scale``) is checked against that command's options instead.
"""

from __future__ import annotations

import argparse
import ast
import importlib
import re
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
FLAG = re.compile(r"(?<![\w-])--[a-z][a-z0-9-]*[a-z0-9]")
NAMED = re.compile(r"(?<![\w-])(isamap-[a-z]+|rio|gdal[\w.]*|ogr2ogr|gcloud|gsutil|torchrun|"
                   r"python -m [\w.]+)(?![\w-])")
PLACEHOLDERS = {"--key"}  # "Beam options like --key=value"

#: console script -> its entry point
COMMANDS = {
    "isamap-export": "cli.export:main",
    "isamap-demo": "cli.demo:main",
    "isamap-train": "cli.train:train_main",
    "isamap-evaluate": "cli.evaluate:evaluate_main",
    "isamap-prune": "cli.prune:prune_main",
    "isamap-predict": "cli.predict:predict_main",
    "isamap-publish": "cli.publish:publish_main",
    "isamap-map": "cli.map:main",
    "isamap-assess": "cli.assess:main",
    "isamap-import-patches": "cli.import_patches:main",
    "isamap-fit": "cli.fit:main",
}

#: the commands that read local scene files (``--backend local``)
SCENE_READERS = ("isamap-export", "isamap-map", "isamap-fit")

#: ``path::function`` prefix -> the commands whose runs reach its messages, and whether each
#: of them must have the option ("all": code every one of them runs) or one ("any": code of
#: which each command runs its own part). The first match wins.
OWNERS: tuple[tuple[str, tuple[str, ...], str], ...] = (
    ("core/commands.py::run_command", tuple(COMMANDS), "any"),
    # reading local scenes: the export, the map and the fit read them with the same options
    ("gee_export/local/scenes.py", SCENE_READERS, "all"),
    ("gee_export/local/sentinel", SCENE_READERS, "all"),
    ("gee_export/local/compositing.py", ("isamap-export", "isamap-map"), "all"),
    ("gee_export/local/plausibility.py::check_s", SCENE_READERS, "all"),
    ("core/pipeline_options.py", ("isamap-export", "isamap-map"), "any"),
    ("cli/import_patches.py", ("isamap-import-patches",), "all"),
    ("cli/fit.py", ("isamap-fit",), "all"),
    ("inference/fit/", ("isamap-fit",), "all"),
    ("training/points/", ("isamap-fit",), "all"),
    ("gee_export/imported/", ("isamap-import-patches",), "all"),
    ("contract/s2_level.py::check_import_level", ("isamap-import-patches",), "all"),
    ("contract/sigma0.py::check_s1_unit", ("isamap-import-patches",), "all"),
    ("gee_export/", ("isamap-export",), "all"),
    ("cli/map.py", ("isamap-map",), "all"),
    ("inference/mapping/", ("isamap-map",), "all"),
    ("inference/predict/change/encoder.py", ("isamap-map",), "all"),
    ("inference/assess", ("isamap-assess",), "all"),
    ("inference/publish/", ("isamap-publish", "isamap-map"), "any"),
    ("inference/cli.py::_publish", ("isamap-publish",), "all"),
    ("inference/cli.py::publish", ("isamap-publish",), "all"),
    ("inference/demo/", ("isamap-demo",), "all"),
    ("inference/", ("isamap-predict",), "all"),
    ("training/", ("isamap-train", "isamap-evaluate", "isamap-prune"), "any"),
)


class _Captured(Exception):
    pass


def options(entry: str | Callable) -> set[str]:
    """Every option string of the parser ``entry`` builds (subcommands included)."""
    if isinstance(entry, str):
        module, _, name = entry.partition(":")
        entry = getattr(importlib.import_module(module), name)
    seen: list[argparse.ArgumentParser] = []
    original = argparse.ArgumentParser.parse_args

    def capture(self, *args, **kwargs):
        seen.append(self)
        raise _Captured

    argparse.ArgumentParser.parse_args = capture  # type: ignore[method-assign]
    try:
        entry([])
    except _Captured:
        pass
    finally:
        argparse.ArgumentParser.parse_args = original  # type: ignore[method-assign]
    assert seen, f"{entry} built no parser"
    found: set[str] = set()
    todo = [seen[0]]
    while todo:
        parser = todo.pop()
        for action in parser._actions:
            found.update(action.option_strings)
            if isinstance(action, argparse._SubParsersAction):
                todo.extend(action.choices.values())
    return found


def _strings(node: ast.AST) -> Iterator[str]:
    for sub in ast.walk(node):
        if isinstance(sub, ast.Constant) and isinstance(sub.value, str):
            yield sub.value


def messages(path: Path) -> Iterator[tuple[int, str, str]]:
    """``(line, function, text)`` of each raised or logged message of a source file."""

    def visit(node: ast.AST, function: str) -> Iterator[tuple[int, str, str]]:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef)):
                yield from visit(child, child.name)
                continue
            if isinstance(child, ast.Raise) and child.exc is not None:
                yield child.lineno, function, " ".join(_strings(child.exc))
            elif (isinstance(child, ast.Call) and isinstance(child.func, ast.Attribute)
                  and child.func.attr in ("warning", "error", "warn") and child.args):
                yield child.lineno, function, " ".join(_strings(child.args[0]))
            yield from visit(child, function)

    yield from visit(ast.parse(path.read_text(), str(path)), "")


def _named_before(text: str, at: int) -> list[str]:
    """The command or tool a message names in the clause of position ``at`` (``;``, ``)``, ``,`` end
    a clause): ``isamap-export with --fine-scale``, ``rio edit-info --tag``."""
    found = list(NAMED.finditer(text[:at]))
    if not found or any(c in text[found[-1].end():at] for c in ";),"):
        return []
    return [found[-1].group(1)]


def named_options(rel: str) -> Iterator[tuple[int, str, tuple[str, ...], str]]:
    """``(line, --option, commands, all|any)`` of every option a message names."""
    seen = set()
    for line, function, text in messages(ROOT / rel):
        where = f"{rel}::{function}"
        owners, mode = next(((cmds, mode) for prefix, cmds, mode in OWNERS
                             if where.startswith(prefix)), ((), "all"))
        for match in FLAG.finditer(text):
            flag = match.group()
            before = _named_before(text, match.start())
            if flag in PLACEHOLDERS or (before and not before[-1].startswith("isamap-")):
                continue  # another tool's option (rio edit-info --tag ...)
            commands, how = ((before[-1],), "all") if before else (owners, mode)
            if commands and (line, flag) not in seen:
                seen.add((line, flag))
                yield line, flag, commands, how


def sources() -> list[str]:
    return sorted(str(p.relative_to(ROOT)) for pkg in ("core", "contract", "gee_export",
                                                                 "inference", "training")
                  for p in (ROOT / pkg).rglob("*.py"))


def test_every_option_a_message_names_exists_on_its_command():
    known = {name: options(entry) for name, entry in COMMANDS.items()}
    missing = [f"{rel}:{line}: {flag} (not an option of {f' {how} of '.join(commands)})"
               for rel in sources() for line, flag, commands, how in named_options(rel)
               if not (all if how == "all" else any)(flag in known[c] for c in commands)]
    assert not missing, "\n".join(missing)


@pytest.mark.parametrize("script", sorted(p.stem for p in (ROOT / "experiments").glob("*.py")
                                          if "def main(" in p.read_text()))
def test_every_option_an_experiments_message_names_exists_on_it(script):
    module = importlib.import_module(f"experiments.{script}")
    known = options(module.main)
    missing = [f"experiments/{script}.py:{line}: {match.group()}"
               for line, _, text in messages(ROOT / "experiments" / f"{script}.py")
               for match in FLAG.finditer(text)
               if not _named_before(text, match.start()) and match.group() not in known]
    assert not missing, "\n".join(missing)
