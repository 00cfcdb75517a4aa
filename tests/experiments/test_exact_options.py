"""Every experiment takes its options by their exact names, as the product commands do."""

from __future__ import annotations

import importlib

import pytest

EXPERIMENTS = ("builtup", "builtup_encoders", "change_pairs", "headcompare", "landcover",
               "landcover_figures", "landcover_pruning", "naip_patches", "points", "srcompare",
               "temporal_consistency", "terramesh")


@pytest.mark.parametrize("name", EXPERIMENTS)
def test_an_experiment_refuses_an_abbreviated_option(name, capsys):
    """``--hel`` was taken for ``--help`` (and ``--dat`` for ``--data``): a prefix that works
    today changes meaning when an option is added."""
    main = importlib.import_module(f"experiments.{name}").main
    with pytest.raises(SystemExit) as stop:
        main(["--hel"])
    captured = capsys.readouterr()
    assert stop.value.code == 2 and captured.out == ""  # no help: --hel is not --help
    first = captured.err.splitlines()[0]  # the error first, as every product command says it
    assert first.startswith(f"python -m experiments.{name}: error: "), captured.err
    assert "unrecognized arguments: --hel" in first or \
        "the following arguments are required" in first
    assert "did you mean --help" in captured.err or "required" in first
