"""The worst-seed judge: per-tile figures from seeds, the default arm, the shortfalls."""

from __future__ import annotations

import numpy as np
import pytest

from experiments.builtup_judge import (
    arm_summary,
    default_arm,
    judge_table,
    shortfalls,
    summarise,
)
from experiments.builtup_loto import figures_markdown

NDBI = {"ndbi_best_f1": 0.70, "ndbi_best_threshold": -0.1, "ndbi_f1_at_0": 0.5,
        "ndbi_auc": 0.9}


def _seed(f1: float, auc: float = 0.96, mapped: float = 0.30, ece: float = 0.03) -> dict:
    return {"f1_built": f1, "auc_built": auc, "pixels": 1000, "built_pixels": 300,
            "mapped_built_share": mapped, "ece_built": ece, "ece_in_region": 0.02,
            "ece_built_uncalibrated": 0.04}


def test_an_arm_is_summarised_by_its_mean_worst_seed_spread_and_shares():
    s = arm_summary([_seed(0.80, mapped=0.28), _seed(0.90, mapped=0.36), _seed(0.85)], NDBI)
    assert s["f1"] == pytest.approx(0.85) and s["f1_worst"] == 0.80
    assert s["f1_spread"] == pytest.approx(0.10) and s["seeds"] == 3
    assert s["share_true"] == pytest.approx(0.30)
    assert s["share_gap_worst"] == pytest.approx(0.06)
    assert s["worst_minus_ndbi_best"] == pytest.approx(0.10)
    assert s["ece_worst"] == 0.03 and s["ece_in_region"] == 0.02
    assert s["f1_hw"] == pytest.approx(4.303 * 0.05 / np.sqrt(3), 1e-3)


def test_the_default_arm_is_the_one_whose_worst_seed_is_best():
    """A higher mean with one bad seed loses to a steadier arm."""
    runs = {"a": {"mean-high": [_seed(0.95), _seed(0.95), _seed(0.60)],
                  "steady": [_seed(0.80), _seed(0.82), _seed(0.81)]},
            "b": {"mean-high": [_seed(0.90)] * 3, "steady": [_seed(0.75)] * 3}}
    summary = summarise(runs, {"a": NDBI, "b": NDBI})
    assert summary["a"]["mean-high"]["f1"] > summary["a"]["steady"]["f1"]
    arm, margin = default_arm(summary)
    assert arm == "steady" and margin == pytest.approx(0.05)


def test_a_first_training_scored_beside_its_arm_is_never_the_default():
    """``NAME[0]`` is one member of a joined arm, which no command trains alone."""
    runs = {"a": {"joined": [_seed(0.80)] * 3, "joined[0]": [_seed(0.90)] * 3},
            "b": {"joined": [_seed(0.78)] * 3, "joined[0]": [_seed(0.88)] * 3}}
    arm, margin = default_arm(summarise(runs, {"a": NDBI, "b": NDBI}))
    assert arm == "joined" and margin == pytest.approx(0.08)


def test_shortfalls_say_which_bar_is_missed_and_by_how_much():
    runs = {"java": {"x": [_seed(0.84, auc=0.94), _seed(0.86)]},
            "ghana": {"x": [_seed(0.75, mapped=0.40, ece=0.08), _seed(0.90)]}}
    summary = summarise(runs, {"java": NDBI, "ghana": NDBI})
    out = shortfalls(summary, "x", "java")
    java = {t["target"]: t for t in out["java"]}
    assert java["every seed F1 >= 0.85"]["short_by"] == pytest.approx(0.01)
    assert java["every seed ROC AUC >= 0.95"]["short_by"] == pytest.approx(0.01)
    ghana = {t["target"]: t for t in out["ghana"]}
    assert "every seed F1 >= 0.85" not in ghana  # Java's bars hold on Java only
    assert ghana["seed spread <= 0.10 F1"]["short_by"] == pytest.approx(0.05)
    assert ghana["held-out ECE <= 0.05"]["short_by"] == pytest.approx(0.03)
    assert ghana["mapped built share within 5 points of the true share"]["short_by"] == \
        pytest.approx(0.05)
    assert ghana["worst seed F1 >= NDBI best F1"]["met"]
    table = judge_table(summary, {"java": NDBI, "ghana": NDBI}, "java")
    assert "default arm (its worst seed is best): x" in table
    assert "every seed F1 >= 0.85 (0.840, short by 0.010)" in table
    assert "30.0 (30.0-30.0) / 30.0" in table and "0.840" in table


def test_a_run_that_chose_a_default_arm_prints_the_judges_table():
    runs = {"t": {"x": [_seed(0.8), _seed(0.9)]}}
    summary = summarise(runs, {"t": NDBI})
    metrics = {"summary": summary, "ndbi": {"t": NDBI}, "default_arm": "x", "row_split": "t"}
    assert "F1 worst" in figures_markdown(metrics)


def test_a_default_arm_whose_maps_give_no_calibration_score_prints_it_as_not_measured():
    """A target whose score an arm does not report (here: no calibration error at all) is
    named as not measured, never formatted as a number."""
    seeds = [{k: v for k, v in _seed(0.8).items() if not k.startswith("ece")}] * 2
    summary = summarise({"t": {"x": seeds}}, {"t": NDBI})
    table = judge_table(summary, {"t": NDBI}, "t")
    assert "held-out ECE <= 0.05 (not measured: the arm's maps give no such score)" in table
    assert "every seed F1 >= 0.85 (0.800, short by 0.050)" in table
