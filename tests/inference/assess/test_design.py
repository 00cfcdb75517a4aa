"""A design is stratified by the map's classes, at pixel centres, sized by Olofsson's rule."""

from __future__ import annotations

import numpy as np
import pytest
import rasterio

from core.errors import ConfigError, InputDataError
from inference.assess.design import design_sample, draw, draw_array, sample_size
from inference.assess.strata import read_strata
from tests.support.assess import class_cog, synthetic_scene


def test_points_are_pixel_centres_of_their_stratum_and_reproducible(tmp_path):
    scene = synthetic_scene(tmp_path)
    design = design_sample(str(scene.map_path), n=120, seed=4, minimum=30)
    again = design_sample(str(scene.map_path), n=120, seed=4, minimum=30)
    other = design_sample(str(scene.map_path), n=120, seed=5, minimum=30)
    assert np.array_equal(design.x, again.x) and np.array_equal(design.y, again.y)
    assert not np.array_equal(design.x, other.x)
    assert design.stratum.size == sum(design.allocation) == 120
    assert min(design.allocation) >= 30
    with rasterio.open(scene.map_path) as ds:
        data = ds.read(1)
        rows, cols = rasterio.transform.rowcol(ds.transform, design.x, design.y)
        centre_x, centre_y = rasterio.transform.xy(ds.transform, rows, cols)
    assert np.allclose(centre_x, design.x) and np.allclose(centre_y, design.y)
    assert np.array_equal(data[rows, cols], design.stratum)  # each point lies in its stratum
    assert len({(r, c) for r, c in zip(rows, cols, strict=True)}) == 120  # no pixel twice
    assert not ((np.asarray(rows) < 3) & (np.asarray(cols) < 3)).any()  # nodata never drawn
    assert design.lon.min() > 14 and design.lat.min() > 45  # EPSG:32633 near 15 E, 45 N


def test_an_array_design_draws_the_same_points_as_the_raster_design(tmp_path):
    """One sampler: the same codes, size, minimum and seed give the same pixels in memory."""
    scene = synthetic_scene(tmp_path)
    design = design_sample(str(scene.map_path), n=120, seed=4, minimum=30)
    with rasterio.open(scene.map_path) as ds:
        data = ds.read(1)
        assert ds.block_shapes[0][0] >= data.shape[0]  # one block: the same reading order
        rows, cols = rasterio.transform.rowcol(ds.transform, design.x, design.y)
    sample = draw_array(data, 2, 120, seed=4, minimum=30)
    assert sample.allocation == design.allocation
    assert np.array_equal(sample.index, np.ravel_multi_index((rows, cols), data.shape))
    assert np.array_equal(sample.stratum, design.stratum)
    assert not np.array_equal(draw_array(data, 2, 120, seed=5, minimum=30).index, sample.index)
    with pytest.raises(InputDataError, match="no pixel"):
        draw_array(np.full((4, 4), 255, np.uint8), 2, 10, seed=0)


def test_target_se_sizes_the_sample_and_bad_requests_are_refused(tmp_path, caplog):
    scene = synthetic_scene(tmp_path)
    strata = read_strata(str(scene.map_path))
    loose = sample_size(strata, target_se=0.02, expected_ua=(0.95, 0.8))
    tight = sample_size(strata, target_se=0.01, expected_ua=(0.95, 0.8))
    assert tight.n == pytest.approx(4 * loose.n, rel=0.02) and tight.rule == "oa"
    area = sample_size(strata, target_se=0.2, target_class="impervious")
    assert area.rule == "area" and area.n > 2
    with pytest.raises(ConfigError, match="exactly one"):
        sample_size(strata, n=10, target_se=0.01)
    with pytest.raises(ConfigError, match="one per stratum"):
        sample_size(strata, target_se=0.01, expected_ua=(0.9,))
    with pytest.raises(ConfigError, match="not one of"):
        sample_size(strata, target_se=1.0, target_class="water")
    # what a new user's walk typed: a size and a class, a percent for a fraction, zero
    with pytest.raises(ConfigError, match="with --n N give no --target-class"):
        sample_size(strata, n=100, target_class="impervious")
    with pytest.raises(ConfigError, match=r"--target-se 1.5: the standard error of overall "
                                          r"accuracy is a fraction below 0.5"):
        sample_size(strata, target_se=1.5)
    with pytest.raises(ConfigError, match="give a positive standard error"):
        sample_size(strata, target_se=0.0, target_class="impervious")
    assert sample_size(strata, target_se=1.5, target_class="impervious").rule == "area"  # km²
    pixels = int(sum(strata.pixels))
    with caplog.at_level("WARNING"):
        every = draw(strata, sample_size(strata, n=10 * pixels), seed=0)
    assert every.stratum.size == pixels
    assert f"{10 * pixels} points asked, {pixels} drawn: the strata hold no more" in caplog.text
    bad = class_cog(tmp_path / "bad.tif", np.full((20, 20), 7, np.uint8))
    with pytest.raises(InputDataError, match="beyond the 2 classes"):
        read_strata(str(bad))


def test_change_strata_are_named_by_the_change_codes(tmp_path):
    change = np.zeros((60, 60), np.uint8)
    change[:20] = 1
    change[20:25] = 2
    change[25:27] = 3
    path = class_cog(tmp_path / "change.tif", change, kind="change")
    design = design_sample(str(path), n=40, seed=0, minimum=10)
    assert design.strata.classes == ("stable_pervious", "stable_isa", "gain", "loss")
    assert design.allocation[2] == 10 and design.allocation[3] == 10  # rare strata get the minimum
