"""A series stack's earlier month may be nodata (cloudy that month); its pixels still map.

Only the month's own bands (``contract.bands.own_month``) make a pixel nodata: an earlier
month's NaN is fed as the band mean, as training feeds it. A real series GeoTIFF whose ``_m1``
bands are NaN on a block is mapped by ``isamap-predict``: those pixels get a class and a
probability; tiles the block does not reach are the same bits as the full stack's map; a hole
in the month's own bands stays nodata. Training masks the label by the same rule.
"""

from __future__ import annotations

import numpy as np
import rasterio

from contract.bands import stack_series_bands
from contract.grid import Grid
from inference.cog.maps import NODATA
from tests.support.mapping import model_file
from tests.support.rasters import BANDS, smooth_stack, write_stack

SERIES = stack_series_bands(BANDS, 2)
SIDE, TILE = 160, 64
BLOCK = (slice(10, 40), slice(10, 40))  # inside the top-left tiles' cores
HOLE = (slice(20, 26), slice(100, 110))  # the month's own B4 missing there


def _stack(path, earlier_gap: bool, own_hole: bool = False):
    data = np.concatenate([smooth_stack(SIDE, SIDE, seed=1), smooth_stack(SIDE, SIDE, seed=2)])
    if earlier_gap:
        data[len(BANDS):, BLOCK[0], BLOCK[1]] = np.nan  # every _m1 band
    if own_hole:
        data[BANDS.index("B4"), HOLE[0], HOLE[1]] = np.nan
    return write_stack(path, data, bands=SERIES)


def _predict(model, stack, out) -> tuple[np.ndarray, np.ndarray]:
    from cli.predict import predict_main

    assert predict_main(["--model", str(model), "--input", str(stack), "--out", str(out),
                         "--device", "cpu", "--tile", str(TILE), "--overlap", "16",
                         "--blend", "core", "-q"]) == 0
    with rasterio.open(f"{out}_class.tif") as c, rasterio.open(f"{out}_prob.tif") as p:
        return c.read(1), p.read(1)


def test_an_earlier_month_missing_on_a_block_still_maps_its_pixels(tmp_path):
    full = _stack(tmp_path / "full.tif", earlier_gap=False, own_hole=True)
    gap = _stack(tmp_path / "gap.tif", earlier_gap=True, own_hole=True)
    with rasterio.open(full) as ds:
        grid = Grid(ds.crs.to_string(), ds.transform.c, ds.transform.f, ds.width, ds.height,
                    abs(ds.transform.a), 64, 32)
    model = model_file(tmp_path / "series.pt", grid, stack_bands=SERIES)
    classes, prob = _predict(model, gap, tmp_path / "gap" / "map")
    assert (classes[BLOCK] != NODATA).all() and (prob[BLOCK] != NODATA).all()
    # the month's own hole is nodata, as ever, and nothing else is
    assert (classes[HOLE] == NODATA).all() and (prob[HOLE] == NODATA).all()
    assert (classes != NODATA).sum() == SIDE * SIDE - classes[HOLE].size
    full_classes, full_prob = _predict(model, full, tmp_path / "full" / "map")
    # tiles that do not hold the block: the full stack's bits
    np.testing.assert_array_equal(prob[:, 96:], full_prob[:, 96:])
    np.testing.assert_array_equal(classes[96:], full_classes[96:])
    assert not np.array_equal(prob[BLOCK], full_prob[BLOCK])  # the model read the gap



def test_training_feeds_an_earlier_month_gap_as_predicting_does(tmp_path):
    from tests.support.rasters import write_patch_dataset
    from training.data import PatchDataset

    image = np.concatenate([smooth_stack(16, 16, seed=1), smooth_stack(16, 16, seed=2)])
    image[len(BANDS):, :4, :4] = np.nan  # May cloudy there
    image[0, 12:, 12:] = np.nan  # June's own B2 missing there
    root = write_patch_dataset(tmp_path / "ds", n=6, size=16, bands=SERIES,
                               images=[image] + [None] * 5)
    item = PatchDataset(root, None)[0]
    label, fed = item["label"].numpy(), item["image"].numpy()
    assert (label[:4, :4] != 255).all()  # the pixel keeps its label: it is learned from
    assert (fed[len(BANDS):, :4, :4] == 0).all()  # the gap fed as the band mean
    assert (label[12:, 12:] == 255).all()  # the month's own gap: no label, as ever
