"""The dataset's parameters have one definition: DatasetSpec, never rebuilt field by field."""

from __future__ import annotations

import ast

from tests.support.sources import project_sources, where


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


def test_index_and_manifest_are_named_and_read_only_by_the_contract():
    """Readers go through read_index/read_manifest (format check, record check, gs://)."""
    assert set(where(r"""["'](index\.jsonl|manifest\.json)["']""")) == {
        "gee_export/contract/dataset.py"}
