"""One pixel, one class, whatever the extent: maps of windows of one stack agree bit for bit.

The tile lattice is anchored to the CRS grid (:mod:`inference.predict.lattice`), so a map of a
city and a map of the province around it cut the same tiles over the city, and a window's
tiles hanging over its edges see the stack's pixels there
(:class:`inference.predict.sources.WindowSource`): their classes and probabilities are equal
on every common pixel, for a model whose output depends on the whole tile.
"""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import rasterio

from inference.cog.maps import OutputInfo
from inference.predict.raster import PredictConfig, predict_raster
from inference.predict.runtime import RuntimeOptions, TilePredictor
from inference.predict.sources import WindowSource
from tests.support.models import TileContext
from tests.support.rasters import BANDS, smooth_stack, write_stack

FP32 = RuntimeOptions(precision="fp32", channels_last="on")
INFO = OutputInfo("tile-context", BANDS)
#: (row, col, height, width) of each map's window of the 300 x 410 stack
WINDOWS = {"stack": (0, 0, 300, 410), "province": (23, 41, 250, 330),
           "city": (97, 130, 101, 77), "east": (150, 250, 140, 160), "strip": (5, 0, 17, 410)}


def _map(src, window, out, blend: str, overlap: int = 16) -> tuple[np.ndarray, np.ndarray]:
    r, c, h, w = window
    source = src if (h, w) == (src.height, src.width) else WindowSource(src, r, c, h, w)
    predictor = TilePredictor(TileContext(), np.zeros(len(BANDS)), np.ones(len(BANDS)),
                              options=FP32)
    result = predict_raster(source, str(out), predictor, INFO,
                            PredictConfig(tile=64, overlap=overlap, batch_size=3,
                                          strip_rows=32, blend=blend), progress=False)
    with rasterio.open(result.class_path) as a, rasterio.open(result.prob_path) as b:
        assert a.tags()["lattice"] == "grid" and (a.height, a.width) == (h, w)
        assert a.transform == src.transform @ src.transform.translation(c, r)
        return a.read(1), b.read(1)


@pytest.mark.parametrize("blend", ["cosine", "core"])
def test_maps_of_nested_and_overlapping_windows_agree_bit_for_bit_on_common_pixels(
        tmp_path, blend):
    data = smooth_stack(300, 410, seed=4)
    data[2, 120:140, 150:170] = np.nan  # a hole: nodata in every map that holds it
    stack = write_stack(tmp_path / "stack.tif", data)
    with rasterio.open(stack) as src:
        maps = {name: _map(src, window, tmp_path / name / "isa", blend)
                for name, window in WINDOWS.items()}
        # the model is context-dependent: a map cut on another lattice differs
        other = _map(src, WINDOWS["stack"], tmp_path / "other" / "isa", blend, overlap=24)
    assert not np.array_equal(other[1], maps["stack"][1])
    assert (maps["city"][0] == 255).sum() == 20 * 20
    compared = 0
    for a, b in itertools.combinations(WINDOWS, 2):
        (ra, ca, ha, wa), (rb, cb, hb, wb) = WINDOWS[a], WINDOWS[b]
        r0, r1 = max(ra, rb), min(ra + ha, rb + hb)
        c0, c1 = max(ca, cb), min(ca + wa, cb + wb)
        if r1 <= r0 or c1 <= c0:
            continue
        for band in (0, 1):  # classes, then probabilities
            mine = maps[a][band][r0 - ra:r1 - ra, c0 - ca:c1 - ca]
            theirs = maps[b][band][r0 - rb:r1 - rb, c0 - cb:c1 - cb]
            assert np.array_equal(mine, theirs), (a, b, band)
        compared += 1
    assert compared == 6  # the strip misses the province, city and east; the city the east
