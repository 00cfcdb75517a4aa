"""A small import's Sentinel-2 level, judged on real Level-1C and Level-2A patches.

A few 32 or 64 px patches of the real Level-1C sen1floods11 chip (13 bands, B10 among them)
often show one sign of the atmosphere's path radiance without the other (the blue's excess
over vegetation, but no dark object to lift the blue's floor): the import took them for
Level-2A surface reflectance and imported top-of-atmosphere values (4 of 30 draws of four
32 px patches, 2 of 30 of two 64 px). Such a sample cannot tell, so the images' B10 band
decides (refused); every patch of the real Level-2A tiles is still accepted.
"""

from __future__ import annotations

import numpy as np
import pytest
import rasterio

from contract.s2_level import check_import_level, s2_level_of
from core.errors import InputDataError

FOUR = ("B2", "B3", "B4", "B8")
L1C_BANDS = ("B1", "B2", "B3", "B4", "B5", "B6", "B7", "B8", "B8A", "B9", "B10", "B11",
             "B12")


def _reflectance(path, indexes) -> np.ndarray:
    """B2, B3, B4, B8 of a real tile as reflectance 0-1 (DN / 10000, DN 0 nodata)."""
    with rasterio.open(path) as ds:
        dn = ds.read([i + 1 for i in indexes]).astype(np.float64)
    out = dn / 10000.0
    out[:, (dn == 0).any(axis=0)] = np.nan
    return out


def _samples(patches) -> dict[str, np.ndarray]:
    pooled = np.concatenate([p.reshape(len(FOUR), -1) for p in patches], axis=1)
    return dict(zip(FOUR, pooled, strict=True))


@pytest.mark.parametrize(("side", "count"), [(32, 4), (64, 2), (128, 2)])
def test_few_small_l1c_patches_are_refused(shared_data, side, count):
    chip = _reflectance(shared_data / "sen1floods11_spain" / "Spain_7370579_S2Hand.tif",
                        (1, 2, 3, 7))
    stated = s2_level_of({}, L1C_BANDS)
    assert stated == "L1C"
    rng = np.random.default_rng(0)
    passed = 0
    for _ in range(30):
        rows = rng.integers(0, chip.shape[1] - side, count)
        cols = rng.integers(0, chip.shape[2] - side, count)
        patches = [chip[:, r:r + side, c:c + side] for r, c in zip(rows, cols, strict=True)]
        try:
            check_import_level(_samples(patches), stated, allow_l1c=False)
            passed += 1
        except InputDataError as e:
            assert "Level-1C" in str(e) and "\n" not in str(e)
    assert passed == 0


@pytest.mark.parametrize("side", [32, 64, 128])
def test_every_small_l2a_patch_is_accepted(shared_data, side):
    tiles = sorted((shared_data / "dynamicworld_s2").glob("*_s2l2a.tif")) + \
        sorted((shared_data / "terramesh_s1s2").glob("*_S2L2A.tif"))
    assert len(tiles) == 7
    judged = 0
    for tile in tiles:
        image = _reflectance(tile, (1, 2, 3, 7))
        for r in range(0, image.shape[1] - side + 1, side):
            for c in range(0, image.shape[2] - side + 1, side):
                level = check_import_level(_samples([image[:, r:r + side, c:c + side]]),
                                           None, allow_l1c=False)
                assert level != "L1C", (tile.name, r, c)
                judged += level == "L2A"
    assert judged > 0  # the rule still tells Level-2A where it can
