"""The stretches rule: one class per stretch of unchanged bands, cut at change and at nodata."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import rasterio
from affine import Affine

from contract.geotiff import write_geotiff
from inference.cog.maps import NODATA, PROB_SCALE
from inference.predict.change.spectral import spectral_stacks
from inference.predict.change.stretches import (
    RULE,
    apply_to_maps,
    describe,
    stretch_ids,
    stretched_series,
)
from tests.support.rasters import BANDS, assert_valid_cog, smooth_stack, write_stack

H, W = 90, 110
BUILT = (slice(20, 50), slice(30, 70))  # the only ground whose bands changed
TRANSFORM = Affine(10, 0, 500000, 0, -10, 3400000)


def columns(*histories, dtype=np.float64):
    return np.array(histories, dtype=dtype).T  # (dates, pixels)


def test_a_flicker_where_the_bands_did_not_change_takes_the_stretch_mean():
    probs = columns([0.6, 0.4, 0.7], [0.2, 0.55, 0.1], [0.45, 0.45, 0.7])
    classes = (probs >= 0.5).astype(np.uint8)
    unchanged = np.zeros((2, 3), bool)
    got = stretched_series(classes, probs, unchanged)
    # means 0.567 -> impervious throughout; 0.283 -> pervious; 0.533 -> impervious
    assert got.T.tolist() == [[1, 1, 1], [0, 0, 0], [1, 1, 1]]


def test_a_change_the_bands_show_cuts_the_stretch_and_survives():
    probs = columns([0.2, 0.3, 0.8, 0.9], [0.9, 0.8, 0.3, 0.2], [0.2, 0.6, 0.3, 0.8])
    classes = (probs >= 0.5).astype(np.uint8)
    changed = columns([False, True, False], [False, True, False], [False, True, False],
                      dtype=bool)
    got = stretched_series(classes, probs, changed)
    # gain and loss between dates 2 and 3 are kept; the third pixel's two stretches each
    # take their mean (0.4: pervious, 0.55: impervious)
    assert got.T.tolist() == [[0, 0, 1, 1], [1, 1, 0, 0], [0, 0, 1, 1]]


def test_agreeing_stretches_and_nodata_are_kept_other_classes_are_nearest():
    classes = columns([1, 1, 1], [2, 1, NODATA], [3, 1, 4], dtype=np.uint8)
    probs = columns([0.3, 0.4, 0.45], [0.1, 0.6, np.nan], [0.1, 0.55, 0.2])
    got = stretched_series(classes, probs, np.zeros((2, 3), bool))
    # all impervious: kept although the mean is below 0.5 (a post-processed map is not undone)
    # the nodata date stays nodata; the flicker takes the nearest non-impervious class
    assert got.T.tolist() == [[1, 1, 1], [2, 2, NODATA], [3, 3, 4]]


def test_a_relabelled_date_takes_the_other_class_of_its_own_stretch_and_a_tie_is_pervious():
    classes = columns([2, 1, 1, 0], [1, 0, 1, 1], dtype=np.uint8)
    probs = columns([0.1, 0.6, 0.3, 0.2], [0.6, 0.4, 0.6, 0.9])
    changed = columns([True, False, False], [False, True, False], dtype=bool)
    got = stretched_series(classes, probs, changed)
    # the first pixel's water (date 1) lies across a cut: its dates 2 and 3 take date 4's class;
    # the second pixel's first stretch averages 0.5, which a binary map calls pervious
    assert got.T.tolist() == [[2, 0, 0, 0], [0, 0, 1, 1]]


def test_one_date_is_kept_as_it_is():
    classes = columns([1], [0], dtype=np.uint8)
    assert stretched_series(classes, columns([0.2], [0.9]), np.zeros((0, 2), bool)).tolist() \
        == classes.tolist()


def test_a_stretch_never_spans_a_date_without_data():
    valid = columns([True, False, True], dtype=bool)
    assert stretch_ids(np.zeros((2, 1), bool), valid).ravel().tolist() == [0, 1, 2]
    classes = columns([0, NODATA, 1], dtype=np.uint8)
    probs = columns([0.45, np.nan, 0.55])
    assert stretched_series(classes, probs, np.zeros((2, 1), bool)).ravel().tolist() == \
        [0, NODATA, 1]


def test_flips_only_where_the_bands_changed_on_random_series():
    rng = np.random.default_rng(3)
    probs = rng.random((5, 2000))
    changed = rng.random((4, 2000)) < 0.1
    got = stretched_series((probs >= 0.5).astype(np.uint8), probs, changed)
    flips = got[1:] != got[:-1]
    assert not (flips & ~changed).any() and flips.any()


def _map(path, values: np.ndarray, run: str) -> str:
    written = write_geotiff(path, values.astype(np.uint8)[None], TRANSFORM, "EPSG:32650", NODATA)
    with rasterio.open(written, "r+") as ds:
        ds.update_tags(isamap_run=run)
    return str(written)


def test_maps_are_written_from_the_stacks_once_and_tagged(tmp_path):
    earlier = smooth_stack(H, W, seed=4)
    later = earlier * 0.9 + 0.05  # the scene's radiometry moved; the fit takes it out
    later[(slice(None), *BUILT)] += 2.5
    stacks = [str(write_stack(tmp_path / f"s{i}.tif", s)) for i, s in enumerate((earlier, later))]
    rng = np.random.default_rng(0)
    prob = rng.uniform(0.3, 0.7, (2, H, W))  # flickers everywhere
    prob[(1, *BUILT)] = 0.9
    prob[(0, *BUILT)] = 0.1
    classes = (prob >= 0.5).astype(np.uint8)
    probs = [_map(tmp_path / f"p{i}.tif", np.round(p * PROB_SCALE), f"r{i}")
             for i, p in enumerate(prob)]
    paths = [_map(tmp_path / f"c{i}.tif", c, f"r{i}") for i, c in enumerate(classes)]
    pair = spectral_stacks(stacks[0], stacks[1], BANDS, (H, W), TRANSFORM,
                           rasterio.crs.CRS.from_string("EPSG:32650"))
    outs = [str(tmp_path / "consistent" / f"c{i}.tif") for i in range(2)]
    relabelled = apply_to_maps(paths, probs, [pair], outs)
    fixed = np.stack([rasterio.open(p).read(1) for p in outs])
    built = np.zeros((H, W), bool)
    built[BUILT] = True
    assert (fixed[0][built] == 0).all() and (fixed[1][built] == 1).all()  # the gain is kept
    assert (fixed[0] == fixed[1])[~built].all()  # nothing else flips
    assert (classes[0] != classes[1])[~built].mean() > 0.3  # as the input did
    assert sum(relabelled.values()) == int((fixed != classes).sum()) > 0
    with rasterio.open(outs[1]) as ds:
        tags = ds.tags()
    assert tags["temporal_consistency"] == RULE and str(tmp_path) not in str(tags)
    assert_valid_cog(outs[1])
    record = describe(["a", "b"], outs[0], pair.threshold)
    assert record["spectral_fits"]["a/b"] == pair.fitted().fit.to_dict()
    stamp = [Path(p).stat().st_mtime_ns for p in outs]
    unfitted = dataclasses.replace(pair, later=str(tmp_path / "missing.tif"))
    # up to date: nothing read but the tags (the missing stack is never opened), counts kept
    assert apply_to_maps(paths, probs, [unfitted], outs) == relabelled
    assert [Path(p).stat().st_mtime_ns for p in outs] == stamp
