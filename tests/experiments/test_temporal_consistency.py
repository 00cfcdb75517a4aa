"""Measured: the rule removes every false loss and keeps true gain at its date more often."""

from __future__ import annotations

import json

from experiments.temporal_consistency import main, measure


def test_rule_removes_false_loss_without_removing_true_gain():
    m = measure(flicker=0.05, dates=7, size=120, seed=3)
    assert m.raw.false_loss > 1000 and m.consistent.false_loss == 0
    assert m.consistent.false_gain < m.raw.false_gain / 2
    assert m.consistent.true_gain_kept > m.raw.true_gain_kept + 0.05
    assert m.consistent.true_gain_any > 0.95  # true gain is not removed
    assert m.consistent.accuracy > m.raw.accuracy


def test_command_writes_numbers_and_figure(tmp_path, capsys):
    assert main(["--out", str(tmp_path), "--flicker", "0.02,0.05", "--size", "60", "-q"]) == 0
    found = json.loads((tmp_path / "consistency.json").read_text())
    assert [m["flicker"] for m in found] == [0.02, 0.05]
    assert all(m["consistent"]["false_loss"] == 0 for m in found)
    assert (tmp_path / "consistency.png").stat().st_size > 1000
    assert "false loss" in capsys.readouterr().out
