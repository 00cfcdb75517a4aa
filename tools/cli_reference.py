"""The guide's command reference: every console script's ``--help``, from its own parser.

The commands are the ``console_scripts`` of ``setup.cfg``; each one's ``main`` is called with no
arguments while ``argparse.ArgumentParser.parse_known_args`` (which every way of parsing goes
through) hands back the parser instead of parsing, so the page shows exactly what ``--help``
prints, sub-commands included (``isamap-assess design``), and cannot fall behind the code.
The MkDocs hook (``tools/mkdocs_hooks.py``) adds it to the site as ``cli.md``.
"""

from __future__ import annotations

import argparse
import configparser
import importlib
import os
from collections.abc import Iterator
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
WIDTH = "86"  # argparse wraps at $COLUMNS - 2: lines that fit the page's column


class _Parser(Exception):
    def __init__(self, parser: argparse.ArgumentParser) -> None:
        super().__init__(parser.prog)
        self.parser = parser


def console_scripts(setup_cfg: Path = REPO / "setup.cfg") -> dict[str, str]:
    """``{command: "module:function"}`` of the package's console scripts, in setup.cfg order."""
    config = configparser.ConfigParser(interpolation=None)
    config.read(setup_cfg, encoding="utf-8")
    lines = config.get("options.entry_points", "console_scripts", fallback="").splitlines()
    return {name.strip(): target.strip() for name, _, target in
            (line.partition("=") for line in lines if "=" in line)}


def parser_of(target: str) -> argparse.ArgumentParser:
    """The argument parser that the console script ``module:function`` builds."""
    module, _, function = target.partition(":")
    main = getattr(importlib.import_module(module), function)
    original = argparse.ArgumentParser.parse_known_args

    def hand_back(self, *args, **kwargs):
        raise _Parser(self)

    argparse.ArgumentParser.parse_known_args = hand_back
    try:
        main([])
    except _Parser as captured:
        return captured.parser
    finally:
        argparse.ArgumentParser.parse_known_args = original
    raise RuntimeError(f"{target} returned without parsing its arguments")


def _helps(parser: argparse.ArgumentParser) -> Iterator[tuple[str, str]]:
    yield parser.prog, parser.format_help()
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for sub in dict.fromkeys(action.choices.values()):  # aliases share a parser
                yield from _helps(sub)


def markdown() -> str:
    """The command reference page."""
    previous = os.environ.get("COLUMNS")
    os.environ["COLUMNS"] = WIDTH
    try:
        sections = []
        for command, target in console_scripts().items():
            for prog, text in _helps(parser_of(target)):
                level = "##" if prog == command else "###"
                sections.append(f"{level} `{prog}`\n\n```text\n{text.rstrip()}\n```\n")
    finally:
        if previous is None:
            os.environ.pop("COLUMNS", None)
        else:
            os.environ["COLUMNS"] = previous
    return ("# Command reference\n\n"
            "Every option of every command, as its `--help` prints it. The task pages show the "
            "commands at work; this page is generated from the commands themselves.\n\n"
            + "\n".join(sections))
