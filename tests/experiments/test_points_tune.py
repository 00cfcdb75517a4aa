"""The fine-tune experiment's own parts: its draw of a user's points, its forest, its table."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest

from core.errors import InputDataError
from experiments.points_tune import draw_stratified, forest, table

pytestmark = pytest.mark.slow  # the lab's tests run in the slow tier


def _tile(truth: np.ndarray, values: np.ndarray | None = None):
    usable = truth != 255
    return SimpleNamespace(prefix="t", truth=truth, usable=usable, bands=("B4", "B8"),
                           values=values if values is not None else np.zeros((2, *truth.shape)))


def test_the_points_are_half_each_class_inside_the_area_and_seeded():
    truth = np.zeros((40, 40), np.uint8)
    truth[:, :10] = 1
    truth[0] = 255
    area = np.zeros_like(truth, bool)
    area[20:] = True
    picked = draw_stratified(_tile(truth), area, 30, seed=3)
    flat = truth.ravel()[picked]
    assert (flat == 1).sum() == 15 and (flat == 0).sum() == 15
    assert area.ravel()[picked].all() and np.array_equal(picked, draw_stratified(
        _tile(truth), area, 30, seed=3))
    with pytest.raises(InputDataError, match="200 pixels of class 1 in the held-out area, "
                                             "fewer than the 250"):
        draw_stratified(_tile(truth), area, 500, seed=0)


def test_the_forest_learns_the_bands_at_the_points_and_the_table_shows_the_worst_seed():
    rng = np.random.default_rng(0)
    truth = (rng.random((30, 30)) < 0.5).astype(np.uint8)
    values = np.stack([truth + 0.1 * rng.random(truth.shape), rng.random(truth.shape)])
    tile = _tile(truth, values.astype(np.float32))
    picked = draw_stratified(tile, np.ones_like(truth, bool), 40, seed=0)
    scored = np.setdiff1d(np.arange(truth.size), picked)
    prob = forest(tile, picked, scored, seed=0)
    assert ((prob >= 0.5) == truth.ravel()[scored]).mean() > 0.95
    one = {"f1_built": 0.8, "auc_built": 0.9, "mapped_built_share": 0.3,
           "true_built_share": 0.3}
    rows = [{"tile": "t", "maps": {m: {**one, "f1_built": f} for m in ("base", "tuned", "forest")}}
            for f in (0.8, 0.6)]
    line = next(r for r in table(rows).splitlines() if r.startswith("t        tuned "))
    assert line.split()[2:4] == ["2", "0.700"] and line.split()[4] == "0.600"
    rows[1]["maps"]["base"]["f1_built"] = 0.5  # draw 2: the fine-tune 0.6, its base 0.5
    gain = next(r for r in table(rows).splitlines() if r.startswith("t        tuned - base"))
    assert gain.split()[-2:] == ["+0.050", "+0.000"]  # mean of 0.0 and 0.1, worst 0.0


def test_a_tile_whose_scored_pixels_lack_a_class_says_so_instead_of_scoring_zero():
    why = "2 built pixels lie farther than 8 pixels from every point, fewer than 100: no score"
    rows = [{"tile": "b", "maps": None, "why_none": why}]
    assert table(rows).splitlines()[1] == f"b        -         {why}"
