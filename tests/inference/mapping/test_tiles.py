"""A map as independent tiles (what a distributed runner calls): plan, fetch, predict, mosaic."""

from __future__ import annotations

import numpy as np
import rasterio

from inference.cog.maps import OutputInfo
from inference.mapping.tiles import fetch_tile, mosaic, plan_tiles, predict_tiles, write_tile
from inference.predict.lattice import Lattice
from inference.predict.raster import PredictConfig, predict_raster
from inference.predict.runtime import RuntimeOptions, TilePredictor
from tests.support.mapping import MONTH, session_for, write_month_stack
from tests.support.models import conv1x1
from tests.support.rasters import BANDS, smooth_stack


def test_tiles_cover_the_grid_once_and_mosaic_to_the_streaming_map(tmp_path, ee_offline):
    import ee

    from gee_export.ee.prediction_stack import prediction_image, recipe_for_month
    from gee_export.ee.sentinel2 import month_window
    from testing.fake_server import StackTransport

    data = smooth_stack(150, 170, seed=5)
    data[0, 30:50, 20:60] = np.nan
    stack = write_month_stack(tmp_path, data)
    grid = stack.grid
    lattice = Lattice(64, 16, "core")
    tiles = plan_tiles(grid, lattice)
    owned = np.zeros(grid.shape, int)
    for t in tiles:
        owned[t.core.to_rasterio().toslices()] += 1
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
        ((classes, prob),) = predict_tiles(predictor, [fetch_tile(session, image, grid, t, BANDS)],
                                           [t], bands=BANDS)
        parts.append((write_tile(tmp_path / "tiles" / f"{t.name}.tif", classes, prob, grid, t),
                      t))
    info = OutputInfo("conv1x1", BANDS, month=MONTH)
    class_path, prob_path = mosaic(parts, grid, str(tmp_path / "tiled" / "isa"), info,
                                   tmp_path / "work", lattice=lattice.tags((grid.x0, grid.y0)))
    streamed = predict_raster(stack.image, str(tmp_path / "streamed" / "isa"), predictor, info,
                              PredictConfig(tile=64, overlap=16, blend="core"), progress=False)
    with rasterio.open(class_path) as a, rasterio.open(streamed.class_path) as b:
        assert a.transform == b.transform and np.array_equal(a.read(1), b.read(1))
        assert (a.tags()["tile"], a.tags()["blend"]) == ("64", "core")
        assert a.tags()["lattice_origin"] == b.tags()["lattice_origin"]
    with rasterio.open(prob_path) as a, rasterio.open(streamed.prob_path) as b:
        assert np.array_equal(a.read(1), b.read(1))  # the same forward passes, the same cores
        assert (a.read(1)[30:50, 20:60] == 255).all()


def test_a_tile_over_the_grids_edge_is_fetched_whole_as_the_streaming_reader_reads_it(
        tmp_path, ee_offline):
    """Tiles sit on the grid-anchored lattice and hang over a small grid's edges: each is
    fetched whole, the stack's pixels inside and nodata (NaN) past the stack's edges, the
    input the streaming reader gives the model from the stack file."""
    import ee

    from gee_export.ee.prediction_stack import prediction_image, recipe_for_month
    from gee_export.ee.sentinel2 import month_window
    from inference.predict.sources import read_padded
    from testing.fake_server import StackTransport

    stack = write_month_stack(tmp_path, smooth_stack(40, 50, seed=2))
    grid = stack.grid
    tiles = plan_tiles(grid, Lattice(64, 16, "core"))
    assert sum(t.core.height * t.core.width for t in tiles) == 40 * 50
    date = recipe_for_month({"s1": {}, "s2": {}}, BANDS, MONTH)
    date = type(date)(date.recipe, month_window(MONTH), date.s1_window)
    image = prediction_image(grid, date, ee.Geometry.Rectangle([117.0, 30.6, 117.02, 30.62]))
    session = session_for(StackTransport(stack))
    with rasterio.open(stack.image) as src:
        for tile in tiles:
            w = tile.window
            assert (w.height, w.width) == (64, 64)
            assert w.row_off < 0 or w.col_off < 0 or w.row_end > 40 or w.col_end > 50
            data = fetch_tile(session, image, grid, tile, BANDS)
            assert data.shape == (6, 64, 64) and np.isnan(data).any()
            expected = read_padded(src, range(1, 7), w.row_off, w.col_off, 64, 64)
            np.testing.assert_array_equal(data, expected)


def test_a_series_tile_is_judged_by_the_months_own_bands():
    """A tile of a series stack (``_m1`` bands NaN on a block: cloudy the month before): its
    pixels are mapped there, nodata only where the month's own bands are; the tile functions
    take the bands, so no caller judges every band by forgetting them."""
    import pytest

    from contract.bands import series_bands
    from contract.grid import Window
    from inference.mapping.tiles import MapTile

    series = series_bands(BANDS, 2)
    data = np.concatenate([smooth_stack(64, 64, seed=1), smooth_stack(64, 64, seed=2)])
    data[len(BANDS):, 20:40, 20:40] = np.nan  # every _m1 band
    data[0, 30:34, 50:54] = np.nan  # the month's own B2
    whole = Window(row_off=0, col_off=0, height=64, width=64)
    tile = MapTile(row=0, col=0, window=whole, core=whole)
    predictor = TilePredictor(conv1x1(len(series)), np.zeros(12), np.ones(12),
                              options=RuntimeOptions(precision="fp32", channels_last=False))
    ((classes, prob),) = predict_tiles(predictor, [data], [tile], bands=series)
    assert (prob[20:40, 20:40] != 255).all() and (classes[20:40, 20:40] != 255).all()
    assert (prob[30:34, 50:54] == 255).all() and (prob != 255).sum() == 64 * 64 - 16
    with pytest.raises(TypeError, match="bands"):
        predict_tiles(predictor, [data], [tile])  # type: ignore[call-arg]
