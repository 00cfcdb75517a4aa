"""The averaged arm: which arms it averages and the scores of their mean probability."""

from __future__ import annotations

import numpy as np
import pytest
import rasterio

from experiments.builtup_ensemble import (
    average_seed,
    averaged,
    mean_probability,
    member_maps,
    members,
    repeated,
)
from experiments.realscenes import Footprint

FOOTPRINT = Footprint("EPSG:32630", rasterio.Affine(10, 0, 0, 0, -10, 40), 4, 4)


def write_prob(path, prob: np.ndarray, scale: int):
    """A probability COG as ``isamap-predict`` writes it: uint8 steps of 1/scale, 255 nodata."""
    values = np.where(np.isfinite(prob), np.round(np.nan_to_num(prob) * scale), 255)
    profile = {"driver": "GTiff", "width": 4, "height": 4, "count": 1, "dtype": "uint8",
               "crs": FOOTPRINT.crs, "transform": FOOTPRINT.transform, "nodata": 255}
    with rasterio.open(path, "w", **profile) as dst:
        dst.write(values.astype(np.uint8)[np.newaxis])
        dst.update_tags(probability_scale=str(scale))
    return path


def test_an_averaged_arm_names_two_or_more_trained_arms():
    assert members("unet-s2+unet-s2-both") == ("unet-s2", "unet-s2-both")
    assert members("a+b+c") == ("a", "b", "c")
    assert members("unet-s2") is None and members("unet-s2+stack") is None
    assert members("unet-s2+thr") is None
    assert members("unet-s2+") is None


def test_a_repeated_arm_averages_whole_groups_of_one_arms_seeds_sharing_no_training():
    assert repeated("unet-s2x3") == ("unet-s2", 3) and averaged("unet-s2x3") == ("unet-s2",)
    assert member_maps("unet-s2x3", 7) == [[("unet-s2", 0), ("unet-s2", 1), ("unet-s2", 2)],
                                           [("unet-s2", 3), ("unet-s2", 4), ("unet-s2", 5)]]
    assert member_maps("a+b", 2) == [[("a", 0), ("b", 0)], [("a", 1), ("b", 1)]]
    for plain in ("unet-s2", "unet-s2x1", "unet-s2x", "a+bx3", "presto-context"):
        assert repeated(plain) is None
    assert averaged("a+b") == ("a", "b") and averaged("unet-s2") is None


def test_an_arm_or_model_whose_own_name_ends_in_x_and_digits_is_not_read_as_repeated(monkeypatch):
    from experiments import builtup_arms
    from experiments.builtup_arms import Arm

    monkeypatch.setitem(builtup_arms.ARMS, "unet-s2x2", Arm("unet-s2x2", "unet-s2"))
    assert repeated("unet-s2x2") is None and averaged("unet-s2x2") is None
    assert repeated("unet-s2x3") == ("unet-s2", 3)


def test_two_maps_erring_in_opposite_directions_average_to_the_truth(tmp_path):
    truth = np.zeros((4, 4), np.uint8)
    truth[:2, :2] = 1
    truth[3, 3] = 255  # unlabelled: not scored
    # one map too generous (0.9 on built, 0.6 on half the rest), one too strict (0.4 on built)
    generous = np.where(truth == 1, 0.9, 0.0)
    generous[2:, :] = 0.6
    strict = np.where(truth == 1, 0.4, 0.1)
    strict[0, 3] = np.nan  # nodata in one member: the pixel is not scored
    paths = [write_prob(tmp_path / "a.tif", generous, 250),
             write_prob(tmp_path / "b.tif", strict, 100)]
    mean = mean_probability(paths, FOOTPRINT)
    assert mean[0, 0] == pytest.approx(0.65) and mean[2, 0] == pytest.approx(0.35)
    assert np.isnan(mean[0, 3])
    area = np.ones((4, 4), bool)
    s = average_seed(paths, FOOTPRINT, truth, area)
    assert s["f1_built"] == 1.0 and s["auc_built"] == 1.0
    assert s["pixels"] == 14 and s["built_pixels"] == 4  # 16 less the unlabelled and nodata
    assert s["mapped_built_share"] == pytest.approx(4 / 14)
    # the mean is 0.65 on the 4 built pixels, 0.35 on 7 of the others and 0.05 on 3, each
    # group in its own bin: the weighted gaps between mean probability and observed share
    want = (4 * abs(0.65 - 1) + 7 * 0.35 + 3 * 0.05) / 14
    assert s["ece_built"] == pytest.approx(want)
    alone = average_seed(paths[:1], FOOTPRINT, truth, area)  # the generous map by itself
    assert alone["f1_built"] == pytest.approx(2 * 4 / (2 * 4 + 7))
    assert average_seed(paths[1:], FOOTPRINT, truth, area)["f1_built"] == 0.0
