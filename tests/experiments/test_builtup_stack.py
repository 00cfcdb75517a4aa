"""The stacked arm: its logistic fit, the tile-standardised NDBI and the pixels it fits on."""

from __future__ import annotations

import numpy as np
import pytest
import rasterio

from contract.dataset import write_index, write_manifest
from core.storage import open_store
from experiments.builtup_stack import (
    base_arm,
    fit_logistic,
    predict_logistic,
    robust_z,
    split_pixels,
)
from experiments.realscenes import Footprint


def test_the_logistic_fit_recovers_known_weights():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(20000, 2))
    truth = np.array([-1.0, 2.0, -0.5])
    y = (rng.random(20000) < predict_logistic(truth, x)).astype(float)
    assert fit_logistic(x, y, ridge=0.0) == pytest.approx(truth, abs=0.08)
    separable = fit_logistic(x[:, :1], (x[:, 0] > 0).astype(float))  # finite with the ridge
    assert np.isfinite(separable).all() and separable[1] > 5


def test_a_scene_wide_offset_leaves_the_standardised_index_unchanged():
    rng = np.random.default_rng(1)
    index = rng.normal(-0.2, 0.1, (50, 50))
    index[0, 0] = np.nan
    z = robust_z(index)
    assert np.nanmedian(z) == pytest.approx(0.0, abs=1e-12)
    assert np.allclose(robust_z(index + 0.13), z, equal_nan=True) and np.isnan(z[0, 0])


def test_the_fit_pixels_are_validation_and_test_patches_outside_every_training_one(tmp_path):
    footprint = Footprint("EPSG:32630", rasterio.Affine(10, 0, 0, 0, -10, 100), 10, 10)
    records = [{"id": i, "month": "2018-12", "row": r, "col": c, "split": split, "bounds": b,
                "valid_fraction": 1.0, "isa_fraction": 0.0, "image": f"{i}.tif",
                "label": f"{i}_label.tif"}
               for i, r, c, split, b in (("a", 0, 0, "train", [0, 50, 50, 100]),
                                         ("b", 0, 1, "val", [30, 50, 80, 100]),
                                         ("c", 1, 0, "test", [0, 0, 50, 50]))]
    store = open_store(str(tmp_path))
    write_manifest(store, {"bands": ["B2"]})
    write_index(store, records)
    area = split_pixels(tmp_path, footprint, ("val", "test"))
    assert area[:5, 5:8].all() and not area[:5, :5].any() and area[5:, :5].all()
    assert area.sum() == 5 * 3 + 25
    assert base_arm("unet-s2+stack") == "unet-s2" and base_arm("unet-s2") is None


def test_the_threshold_arm_cuts_the_held_out_map_where_the_fit_pixels_score_best(tmp_path):
    from experiments.builtup_stack import threshold_seed
    from tests.experiments.test_builtup_ensemble import FOOTPRINT, write_prob

    # the fit tile: val patch over the top half, a training patch over the bottom half
    records = [{"id": i, "month": "2018-12", "row": r, "col": 0, "split": split, "bounds": b,
                "valid_fraction": 1.0, "isa_fraction": 0.0, "image": f"{i}.tif",
                "label": f"{i}_label.tif"}
               for i, r, split, b in (("v", 0, "val", [0, 20, 40, 40]),
                                      ("t", 1, "train", [0, 0, 40, 20]))]
    store = open_store(str(tmp_path))
    write_manifest(store, {"bands": ["B2"]})
    write_index(store, records)
    truth = np.zeros((4, 4), np.uint8)
    truth[:, 0] = 1
    # on the fit pixels built scores 0.3, the rest 0.1: the best cut is 0.3, not one half;
    # the training rows (which would favour 0.8) are not fitted on
    fit = np.where(truth == 1, 0.3, 0.1)
    fit[2:] = np.where(truth[2:] == 1, 0.8, 0.5)
    held = np.where(truth == 1, 0.35, 0.2)
    z = np.zeros((4, 4))
    s = threshold_seed(train_parts={"a": (write_prob(tmp_path / "fit.tif", fit, 100), FOOTPRINT,
                                          truth, z, tmp_path)},
                       held=(write_prob(tmp_path / "held.tif", held, 100), FOOTPRINT, truth, z,
                             np.ones((4, 4), bool)))
    assert s["threshold"] == pytest.approx(0.3) and s["fit_f1"] == 1.0
    assert s["fit_pixels"] == 8 and s["f1_built"] == 1.0  # at one half it would map nothing
    assert base_arm("unet-s2+thr") == "unet-s2"
