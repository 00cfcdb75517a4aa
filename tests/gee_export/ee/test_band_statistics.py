"""A date image's band statistics on Earth Engine, and the fake server that computes them.

The request is one ``reduceRegion`` of the very image computePixels fetches tiles from, masked
where that image carries the masked value, over the grid's extent in its CRS at the grid's
resolution times a local sample's decimation step. The fake server decodes it and computes
it from the stack; it refuses a reduction of another image.
"""

from __future__ import annotations

import numpy as np
import pytest

from contract.grid import Grid
from core.errors import EarthEngineError
from gee_export.ee.band_statistics import band_statistics, max_pixels, sample_scale
from testing.ee_graph import constant, first_call
from testing.fake_server import StackTransport
from tests.support.mapping import MONTH, inner_region, session_for, write_month_stack
from tests.support.rasters import BANDS, smooth_stack


def test_the_sample_is_at_most_max_side_pixels_a_side_as_a_local_decimated_read():
    grid = Grid("EPSG:32650", 500000.0, 3400000.0, 230, 200, 10.0)
    assert sample_scale(grid, 1024) == 10.0  # a small grid: every pixel
    assert sample_scale(Grid("EPSG:32650", 0.0, 0.0, 3000, 1500, 10.0), 1024) == 30.0
    assert sample_scale(Grid("EPSG:32650", 0.0, 0.0, 2048, 100, 10.0), 1024) == 20.0
    assert max_pixels(1024) >= 1025**2  # the sample's lattice may straddle each edge


def test_the_request_reduces_the_masked_bands_over_the_grid_at_the_sample_scale(ee_offline):
    grid = Grid("EPSG:32650", 500000.0, 3400000.0, 3000, 1500, 10.0)
    image = ee_offline.Image.constant([1.0, 2.0]).rename(["B2", "B3"])
    request = band_statistics(image, grid, ("B3",), 1024)
    call = first_call(request, "Image.reduceRegion")["arguments"]
    assert constant(call["scale"]) == 30.0 and constant(call["bestEffort"]) is False
    assert call["crs"]["functionInvocationValue"]["arguments"]["crs"]["constantValue"] == \
        "EPSG:32650"
    rect = call["geometry"]["functionInvocationValue"]["arguments"]
    assert constant(rect["coordinates"]) == list(grid.bounds)
    assert constant(rect["geodesic"]) is False
    assert first_call(request, "Reducer.combine")["arguments"]["sharedInputs"] == {
        "constantValue": True}
    names = {c["functionName"] for c in [first_call(request, n) for n in (
        "Reducer.mean", "Reducer.stdDev", "Reducer.unweighted", "Image.updateMask")]}
    assert len(names) == 4


@pytest.fixture
def stack(tmp_path):
    data = smooth_stack(60, 70, seed=2)
    data[1, 10:30, 20:40] = np.nan  # masked pixels count nowhere
    data[2] = np.nan  # a band with no valid pixel answers null
    return write_month_stack(tmp_path, data), data


@pytest.mark.parametrize("side", [1024, 20])
def test_the_fake_server_computes_the_reduction_from_the_stack(stack, ee_offline, side):
    paths, data = stack
    grid = Grid(paths.grid.crs, paths.grid.x0 + 10, paths.grid.y0 - 10, 50, 40, 10.0)
    transport = StackTransport(paths)
    image = ee_offline.Image.constant([0.0] * len(BANDS)).rename(list(BANDS))
    answer = session_for(transport).get_info(band_statistics(image, grid, BANDS, side))
    step = round(sample_scale(grid, side) / 10.0)
    # the sample's pixels are aligned on the CRS's origin (here on the grid's corner, a
    # multiple of 30 m): each is the stack's pixel under its centre
    window = data[:, 1:41, 1:51][:, step // 2::step, step // 2::step].astype(np.float64)
    for i, band in enumerate(BANDS):
        values = window[i][np.isfinite(window[i])]
        if band == "B4":
            assert answer[f"{band}_mean"] is None and answer[f"{band}_stdDev"] is None
            continue
        assert answer[f"{band}_mean"] == pytest.approx(values.mean(), rel=1e-9)
        assert answer[f"{band}_stdDev"] == pytest.approx(values.std(), rel=1e-9)  # population
    (served,) = transport.reductions
    assert served["pixels"] == window[0].size and transport.served == []


def test_the_fake_server_refuses_a_reduction_of_another_image(stack, ee_offline, tmp_path):
    from inference.mapping.dates import ee_date_image
    from inference.mapping.request import model_dataset
    from tests.support.mapping import model_file
    from training.modelfile import read_model_file

    paths, _ = stack
    model = model_file(tmp_path / "m.pt", paths.grid, norm="scene")
    meta, _ = read_model_file(str(model))
    image, _ = ee_date_image(inner_region(paths.grid, 5), paths.grid, meta, model_dataset(meta),
                             MONTH, session_for(StackTransport(paths, info=lambda text: 5)))
    session = session_for(StackTransport(paths, recipe=(image, None)))
    assert session.get_info(band_statistics(image, paths.grid, BANDS, 1024))["B2_mean"] \
        is not None
    with pytest.raises(EarthEngineError, match="not the recipe's image"):
        session.get_info(band_statistics(image.multiply(2), paths.grid, BANDS, 1024))
    with pytest.raises(EarthEngineError, match="not a masked selection"):
        session.get_info(image.select(["B2"]).reduceRegion(
            reducer=ee_offline.Reducer.mean().combine(ee_offline.Reducer.stdDev(),
                                                      sharedInputs=True).unweighted(),
            geometry=ee_offline.Geometry.Rectangle(list(paths.grid.bounds), paths.grid.crs,
                                                   False),
            scale=10.0, crs=paths.grid.crs))
