"""The demo's SYNTHETIC scene through the local backend: the path ``--backend local`` takes."""

from __future__ import annotations

import numpy as np
import pytest
import rasterio

from contract.bands import DEFAULT_IMAGE_BANDS, QUALITY
from contract.stack import StackPaths
from gee_export.local.scenes import discover_scenes
from gee_export.local.stack import build_local_stack
from gee_export.local.synthetic import BUILDING, CLASS_S1, CLASS_S2, S2_BANDS, WATER, generate_scene


@pytest.fixture(scope="module")
def scene(tmp_path_factory):
    return generate_scene(tmp_path_factory.mktemp("synthetic"), seed=3, width=96, height=96)


def test_synthetic_scene_is_discovered(scene):
    found = discover_scenes(scene.root)
    assert [s.date.strftime("%Y%m%d") for s in found.s2] == list(scene.s2_dates)
    assert [s.date.strftime("%Y%m%d") for s in found.s1] == list(scene.s1_dates)
    assert all(s.level == "L2A" and s.has("SCL") for s in found.s2)
    assert all(s.unit == "linear" for s in found.s1)  # SIGMA0_UNIT tag
    assert found.label(1) == scene.label and found.label(scene.fine_scale) == scene.label_fine


def test_synthetic_scene_through_build_local_stack(scene, tmp_path):
    bands = DEFAULT_IMAGE_BANDS + QUALITY
    stack = build_local_stack(scene.root, scene.grid, scene.month, bands,
                              fine_scale=scene.fine_scale, out_dir=tmp_path, progress=False)
    assert isinstance(stack, StackPaths)
    assert stack.bands == bands and stack.grid == scene.grid and stack.fine_scale == 10
    with rasterio.open(stack.image) as src:
        assert src.tags()["SYNTHETIC"] == "yes" and src.descriptions == bands
        img = src.read()
    with rasterio.open(stack.label) as src, rasterio.open(scene.label) as ref:
        np.testing.assert_array_equal(src.read(), ref.read())  # same grid: label untouched
    with rasterio.open(stack.label_fine) as src, rasterio.open(scene.label_fine) as ref:
        np.testing.assert_array_equal(src.read(), ref.read())
    fractions = scene.class_fractions()
    clear = img[bands.index("s2_clear_count")]
    # clouds on two dates and a nodata swath edge on one leave 1-4 clear observations
    assert clear.min() >= 1 and clear.max() == len(scene.s2_dates) and (clear < 4).mean() > 0.05
    np.testing.assert_array_equal(img[bands.index("s1_scene_count")], len(scene.s1_dates))
    for code in (BUILDING, WATER):
        pure = fractions[code] == 1.0
        assert pure.sum() > 10
        want = CLASS_S2[code][S2_BANDS.index("B04")]
        assert np.nanmean(img[bands.index("B4")][pure]) == pytest.approx(want, rel=0.08, abs=0.005)
        want_db = 10 * np.log10(CLASS_S1[code][0])
        assert np.median(img[bands.index("VV")][pure]) == pytest.approx(want_db, abs=1.0)
