"""experiments.presto_change: Presto's own change score beside the bands' and the gate's."""

from __future__ import annotations

import numpy as np
import pytest

from experiments.change_pairs import DEFAULT_BLOCK_SIZE, DEFAULT_BLOCKS, implant
from experiments.presto_change import (
    MATCHED,
    PRODUCT,
    change_scores,
    change_table,
    pair_scores,
)
from experiments.presto_dates import COLUMNS, SCENE_BANDS

NIR_SWIR = (SCENE_BANDS.index("B08"), SCENE_BANDS.index("B11"))


def _series(t: int = 3, size: int = 48) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """Scenes with a town (class 8) in one corner, the rest fields, light noise per date."""
    rng = np.random.default_rng(0)
    lulc = np.full((size, size), 2, np.int64)
    lulc[:12, :12] = 8
    base = np.where(lulc == 8, 0.3, 0.1).astype(np.float32)
    scenes = np.stack([base + rng.normal(0, 0.01, (len(SCENE_BANDS), size, size))
                       for _ in range(t)]).astype(np.float32)
    scenes[:, SCENE_BANDS.index("B11")] += np.where(lulc == 8, 0.1, 0.0)  # towns: NDBI up
    return scenes, lulc, ["2015-07-11", "2015-08-30", "2015-09-09"][:t]


def test_each_arm_is_ranked_directed_and_cut_and_presto_is_also_cut_at_the_bands_rate():
    truth = np.zeros((10, 10), bool)
    truth[:2] = True
    stable = np.full((10, 10), 1.0)
    stable[5, 5] = 9.0  # one false change for either at the default 4
    bands = np.where(truth, 5.0, 1.0)
    bands[0, :5] = 0.5  # half the first row: below the stable ground, missed
    presto = np.where(truth, 20.0, 2.0) + 0.01 * np.arange(100).reshape(10, 10)
    rise = np.ones((10, 10))
    rise[1] = -1.0  # NDBI fell on the second implanted row
    out = pair_scores({"bands": (stable, bands), "presto": (stable, presto)}, rise, truth)
    assert out["presto"]["auc"] == 1.0 and out["bands"]["auc"] < 1.0
    assert out["presto"]["auc_ndbi"] < out["presto"]["auc"]  # the direction drops a row
    assert out["bands"]["false_change"] == out["presto"]["false_change"] == 0.01
    assert out["bands"]["flagged_implanted"] == 0.15 and out["presto"]["f1"] == 1.0
    matched = out[MATCHED]
    assert matched["flagged_implanted"] == pytest.approx(0.15)  # the bands' rate
    assert matched["false_change"] == 0.0 and "auc" not in matched  # its cut is higher
    assert matched["f1"] == pytest.approx(2 * 15 / (15 + 20))


def test_features_that_are_the_bands_score_as_the_bands_and_draw_0_is_change_pairs_implant():
    scenes, lulc, dates = _series()
    seen = []

    def encode(scene, month):
        seen.append(month)
        return scene[list(COLUMNS)].reshape(len(COLUMNS), -1).T

    block = change_scores(scenes, dates, lulc, COLUMNS, NIR_SWIR, encode, draws=2)
    assert seen[:3] == [6, 7, 8] and len(block["runs"]) == 3 * 2
    assert {r["pair"] for r in block["runs"]} == {"2015-07-11/2015-08-30",
                                                   "2015-07-11/2015-09-09",
                                                   "2015-08-30/2015-09-09"}
    for run in block["runs"]:
        arms = run["arms"]
        for key in ("auc", "auc_ndbi", "false_change", "f1"):
            assert arms["presto"][key] == pytest.approx(arms["bands"][key])
        assert arms["bands"]["auc"] > 0.9  # town spectra pasted into fields
        # the product's encoder rule on features that are the bands flags the bands' pixels
        for key in ("false_change", "flagged_implanted", "f1"):
            assert arms[PRODUCT][key] == pytest.approx(arms["bands"][key])
    first = block["runs"][0]
    _, truth = implant(scenes[1], lulc, DEFAULT_BLOCKS, DEFAULT_BLOCK_SIZE, seed=1)
    assert first["draw"] == 0 and first["implanted"] == int(truth.sum()) > 0
    text = change_table(block)
    assert text.splitlines()[1].startswith("bands") and MATCHED in text
    assert "3 pairs x 2 implants; threshold 4" in text
    assert "presto above bands: AUC on 0 of 6, with NDBI's direction on 0 of 6" in text  # ties
    assert PRODUCT in text and "product rule against bands: F1 higher on 0 of 6, lower on 0 " \
        "of 6; false change less on 0 of 6, more on 0 of 6" in text
