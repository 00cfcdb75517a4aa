"""The experiments' product commands (``isamap-train``, ``-predict``, ``-export``, ``-fit``)
run in the test's process, by their entry functions with the same arguments, instead of a
fresh Python each (:func:`experiments.realscenes.run_product`, whose subprocess
tests/experiments/test_realscenes.py checks): the same code and files, without importing
torch again for every command.
"""

from __future__ import annotations

import importlib
import shlex
from collections.abc import Iterator, Sequence
from contextlib import contextmanager

import pytest

from core.errors import ConfigError
from experiments.realscenes import ENTRY_POINTS, CommandFailed

#: the modules that import run_product by name
CALLERS = ("experiments.builtup_commands", "experiments.points", "experiments.terramesh")


def run_in_process(prog: str, argv: Sequence[str]) -> None:
    """:func:`experiments.realscenes.run_product`, the command's entry function called here."""
    if prog not in ENTRY_POINTS:
        raise ConfigError(f"unknown product command {prog!r}")
    module, function = ENTRY_POINTS[prog].split(":")
    entry = getattr(importlib.import_module(module), function)
    try:
        status = entry(list(argv))
    except SystemExit as exc:  # argparse's refusals
        status = exc.code
    if status:
        raise CommandFailed(f"{prog} exited {status} (its message is above); the command was: "
                            f"{prog} {shlex.join(argv)}")


@contextmanager
def in_process() -> Iterator[None]:
    """Within: :func:`run_in_process` for every experiment's product command."""
    with pytest.MonkeyPatch.context() as patch:
        for caller in CALLERS:
            patch.setattr(importlib.import_module(caller), "run_product", run_in_process)
        yield
