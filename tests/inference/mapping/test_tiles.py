"""A map as independent tiles (what a distributed runner calls): plan, fetch, predict, mosaic."""

from __future__ import annotations

import numpy as np
import rasterio

from inference.mapping.tiles import fetch_tile, mosaic, plan_tiles, predict_tile, write_tile
from inference.predict.cog import OutputInfo
from inference.predict.raster import PredictConfig, predict_raster
from inference.predict.runtime import RuntimeOptions, TilePredictor
from tests.support.mapping import MONTH, session_for, write_month_stack
from tests.support.models import conv1x1
from tests.support.rasters import BANDS, smooth_stack


def test_tiles_cover_the_grid_once_and_mosaic_to_the_streaming_map(tmp_path, ee_offline):
    import ee

    from gee_export.ee.fake_server import StackTransport
    from gee_export.ee.prediction_stack import prediction_image, recipe_for_month
    from gee_export.ee.sentinel2 import month_window

    data = smooth_stack(150, 170, seed=5)
    data[0, 30:50, 20:60] = np.nan
    stack = write_month_stack(tmp_path, data)
    grid = stack.grid
    tiles = plan_tiles(grid, core=64, halo=16)
    owned = np.zeros(grid.shape, int)
    for t in tiles:
        owned[t.core.to_slices()] += 1
    assert (owned == 1).all()  # every pixel in exactly one core
    date = recipe_for_month({"s1": {}, "s2": {}}, BANDS, MONTH)
    date = type(date)(date.recipe, month_window(MONTH), date.s1_window)
    geometry = ee.Geometry.Rectangle([117.0, 30.6, 117.02, 30.62])
    image = prediction_image(grid, date, geometry)
    session = session_for(StackTransport(stack))
    predictor = TilePredictor(conv1x1(), np.zeros(6), np.ones(6),
                              options=RuntimeOptions(precision="fp32", channels_last=False))
    parts = []
    for t in tiles:
        classes, prob = predict_tile(predictor, fetch_tile(session, image, grid, t, BANDS), t)
        parts.append((write_tile(tmp_path / "tiles" / f"{t.name}.tif", classes, prob, grid, t),
                      t))
    info = OutputInfo("conv1x1", BANDS, month=MONTH)
    class_path, prob_path = mosaic(parts, grid, str(tmp_path / "tiled" / "isa"), info,
                                   tmp_path / "work")
    streamed = predict_raster(stack.image, str(tmp_path / "streamed" / "isa"), predictor, info,
                              PredictConfig(tile=64, overlap=16), progress=False)
    with rasterio.open(class_path) as a, rasterio.open(streamed.class_path) as b:
        assert a.transform == b.transform and np.array_equal(a.read(1), b.read(1))
    with rasterio.open(prob_path) as a, rasterio.open(streamed.prob_path) as b:
        diff = np.abs(a.read(1).astype(int) - b.read(1).astype(int))
        assert diff.max() <= 1  # a per-pixel model: blending changes only the last rounding
        assert (a.read(1)[30:50, 20:60] == 255).all()


def test_edge_tiles_fetch_full_size_windows_so_a_unet_predicts_them(tmp_path):
    """A U-Net needs sides divisible by 16: the grid's last row/column of tiles (smaller cores)
    still fetch ``core + 2 halo`` px, the part past the edge arriving as nodata."""
    import torch

    from gee_export.contract.grid import Grid
    from training.models import create_model

    grid = Grid("EPSG:32650", 500000.0, 3400000.0, 170, 150, 10.0, 64, 32)  # 170 = 3 x 48 + 26
    tiles = plan_tiles(grid, core=48, halo=8)
    assert {(t.padded.height, t.padded.width) for t in tiles} == {(64, 64)}
    edge = tiles[-1]
    assert (edge.core.height, edge.core.width) == (150 - 3 * 48, 170 - 3 * 48)
    torch.manual_seed(0)
    unet = create_model("unet", len(BANDS), 2, widths=[8, 16, 16, 32, 32]).eval()
    predictor = TilePredictor(unet, np.zeros(6), np.ones(6),
                              options=RuntimeOptions(precision="fp32", channels_last=False))
    data = np.random.default_rng(0).normal(size=(6, 64, 64)).astype(np.float32)
    data[:, :, 8 + edge.core.width:] = np.nan  # past the grid's east edge
    classes, prob = predict_tile(predictor, data, edge)
    assert classes.shape == prob.shape == (edge.core.height, edge.core.width)
    assert (classes != 255).all(), "the core is inside the grid: every pixel predicted"
