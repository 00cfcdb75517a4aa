"""Points to map on the Dynamic World tiles: the draws, the scores, the table, a small run."""

from __future__ import annotations

import json

import numpy as np
import pytest

from experiments.points import draw, main, run_points, scores
from experiments.points_report import summarise, table


def test_draw_takes_usable_pixels_of_the_area_and_follows_the_seed():
    usable = np.zeros((10, 10), bool)
    usable[2:8, 2:8] = True
    allowed = np.zeros((10, 10), bool)
    allowed[:5] = True
    picked = draw(usable, allowed, 8, np.random.default_rng(0))
    assert picked.size == 8 and (usable & allowed).ravel()[picked].all()
    again = draw(usable, allowed, 8, np.random.default_rng(0))
    assert np.array_equal(picked, again)
    assert draw(usable, allowed, 100, np.random.default_rng(0)).size == 18  # all there are


def test_scores_cut_at_the_likelier_class_and_count_shares():
    truth = np.array([0, 0, 0, 1, 1])
    s = scores(np.array([0.1, 0.2, 0.6, 0.7, 0.4]), truth)
    assert s["f1_built"] == pytest.approx(0.5)  # tp 1, fp 1, fn 1
    assert s["auc_built"] == pytest.approx(5 / 6) and s["best_f1_built"] == pytest.approx(0.8)
    assert s["mapped_built_share"] == pytest.approx(0.4) and s["true_built_share"] == 0.4


def test_summary_counts_the_worst_seed_and_refusals():
    runs = {"java": {"bands": {"50": [
        {"seed": 0, "f1_built": 0.6, "auc_built": 0.9, "mapped_built_share": 0.2,
         "true_built_share": 0.3},
        {"seed": 1, "f1_built": 0.5, "auc_built": 0.8, "mapped_built_share": 0.1,
         "true_built_share": 0.3},
        {"seed": 2, "refused": "too few"}]}}}
    ndbi = {"java": {"ndbi_best_f1": 0.7, "ndbi_f1_at_0": 0.6, "ndbi_auc": 0.89}}
    row = summarise(runs, ndbi)["java"]["bands"]["50"]
    assert row["worst_f1"] == 0.5 and row["refused"] == 1 and row["seeds"] == 3
    assert row["worst_minus_ndbi_best"] == pytest.approx(-0.2)
    assert row["spread_f1"] == pytest.approx(0.1)
    assert "0.500" in table(summarise(runs, ndbi), ndbi, {})


def test_unknown_arms_are_refused_before_any_export(tmp_path, capsys):
    assert main(["--arms", "bands,unet", "--out", str(tmp_path / "o")]) == 2
    assert "--arms unet" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()


@pytest.mark.slow
def test_a_small_run_on_two_tiles(shared_data, tmp_path, products_in_process):
    metrics = run_points(shared_data / "dynamicworld_s2", tmp_path, tiles=("java", "ghana_b"),
                         arms=("bands",), counts=(60,), seeds=2)
    java = metrics["summary"]["java"]["bands"]["60"]
    assert java["seeds"] == 2 and 0.0 <= java["worst_f1"] <= 1.0
    assert java["auc"][0] > 0.8  # bands at 60 points per area separate built from the rest
    # the held-out rows are scored on the pixels NDBI is scored on
    first = metrics["runs"]["java"]["bands"]["60"][0]
    assert first["pixels"] == metrics["ndbi"]["java"]["pixels"]
    assert json.loads((tmp_path / "points.json").read_text())["counts"] == [60]
    assert "java" in (tmp_path / "points.txt").read_text()
