"""The dataset's parameters have one definition: DatasetSpec, never rebuilt field by field."""

from __future__ import annotations

import ast

from tests.support.sources import project_sources


def test_dataset_spec_is_never_rebuilt_positionally():
    """Twelve fields by position break silently when one is added; grid and bands may lead."""
    positional = []
    for rel, text in project_sources():
        if "DatasetSpec(" not in text:
            continue
        for node in ast.walk(ast.parse(text)):
            if (isinstance(node, ast.Call) and getattr(node.func, "id", None) == "DatasetSpec"
                    and len(node.args) > 2):
                positional.append(f"{rel}:{node.lineno}")
    assert positional == []
