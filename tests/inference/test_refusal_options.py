"""Every option the input and post-processing checks name exists on the commands that run them.

``isamap-predict`` and ``isamap-map`` run the same input checks and post-processing rules
(``inference.predict``); a refusal that names an option the running command lacks leaves the
user with "unrecognized arguments" (``isamap-map --allow-l1c`` once advised
``--allow-implausible``, which only ``isamap-predict`` had). Each message of those modules
(docstrings aside) is read here: an option it names must be on both parsers, unless the
message names the command it belongs to (``isamap-export --allow-l1c``) or is only raised on
a path the other command never takes (:data:`ONE_COMMAND`).
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

from cli.map import build_parser
from cli.predict import predict_parser
from tests.support.refusals import named_options

REPO = Path(__file__).resolve().parents[2]
CHECKS = ("inference/predict/expected_inputs.py", "contract/input_facts.py",
          "contract/band_values.py", "inference/predict/keep/inputs.py",
          "inference/predict/keep/rule.py", "inference/predict/step_proof.py",
          "inference/predict/postprocess.py")
#: option -> why a message may name it though only isamap-predict has it
ONE_COMMAND = {
    "--bands": "raised only when the user gave --bands (band_order), which only isamap-predict "
               "takes; isamap-map's stacks always name their bands",
    "--input": "names the input of a stack file (a path), which only isamap-predict is given; "
               "isamap-map's inputs are sources it opened itself",
}
_COMMAND_OPTION = re.compile(r"isamap-[a-z]+(?:/isamap-[a-z]+)* (--[a-z][a-z0-9-]*)")


def _messages(path: Path) -> list[tuple[int, str]]:
    """The string constants of ``path`` that are not docstrings, with their lines."""
    tree = ast.parse(path.read_text())
    docstrings = {id(node.body[0].value) for node in ast.walk(tree)
                  if isinstance(node, (ast.Module, ast.FunctionDef, ast.ClassDef))
                  and node.body and isinstance(node.body[0], ast.Expr)
                  and isinstance(node.body[0].value, ast.Constant)}
    return [(node.lineno, node.value) for node in ast.walk(tree)
            if isinstance(node, ast.Constant) and isinstance(node.value, str)
            and id(node) not in docstrings]


@pytest.mark.parametrize("module", CHECKS)
def test_options_the_checks_name_exist_on_both_commands(module):
    parsers = {"isamap-predict": predict_parser(), "isamap-map": build_parser()}
    known = {name: {o for a in p._actions for o in a.option_strings}
             for name, p in parsers.items()}
    missing = []
    for line, text in _messages(REPO / module):
        own = set(_COMMAND_OPTION.findall(text))  # "isamap-export --allow-l1c": that command's
        for option in named_options(text) - own:
            for command, options in known.items():
                if option not in options and not (option in ONE_COMMAND
                                                  and command == "isamap-map"):
                    missing.append(f"{module}:{line}: {option} (not on {command})")
    assert missing == []
