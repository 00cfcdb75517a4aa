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
        "contract/dataset.py",
        "benchmarks/plain_train_loop.py",  # the peer: a user's own loop reads the files itself
    }


def test_the_clean_up_removes_what_a_write_killed_inside_the_atomic_writer_left(tmp_path):
    """A kill between the temporary and the rename leaves the writer's own temporary name."""
    from contract.dataset import remove_temporaries
    from core.storage import LocalStore, temporary_name

    store = LocalStore(str(tmp_path))
    for rel in ("index.jsonl", "manifest.json", "state/2019-06/invalid.json"):
        target = tmp_path / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text("{}")
        temporary_name(target).write_text("{\"half")
    other = temporary_name(tmp_path / "index.csv")  # not the dataset's: left alone
    other.write_text("x")
    assert remove_temporaries(store, "2019-06") == 3
    assert sorted(p.name for p in tmp_path.rglob("*") if p.is_file()) == sorted(
        ["index.jsonl", "manifest.json", "invalid.json", other.name])
