"""One pixel, one class, whatever the region: streamed and Beam maps of nested and overlapping
regions of one stack agree bit for bit on their common pixels.

Every region's grid lies on the stack's pixel grid, and every map cuts the tiles of the lattice
anchored to the CRS grid (:mod:`inference.predict.lattice`), fetched whole past the region's
edges from the fake pixel server, which answers from the stack (nodata past its edges). The
model's output depends on the whole tile, so any other tiling would show.
"""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import rasterio
from pyproj import Transformer

from contract.regions import Region
from core.pipeline_options import RunnerConfig
from inference.mapping.region import map_region
from inference.mapping.request import MapExtent, MapInputs, MapOutputs, MapRequest, map_window
from inference.predict.runtime import RuntimeOptions
from testing.fake_server import StackSessions, StackTransport
from tests.support.mapping import MONTH, inner_region, model_file, session_for, write_month_stack
from tests.support.rasters import smooth_stack
from training.modelfile import load_model

OPTIONS = RuntimeOptions(precision="fp32", channels_last=False)


def _box(grid, row: int, col: int, height: int, width: int, name: str) -> Region:
    """The lon/lat box of a window of ``grid`` (a region a user would draw there)."""
    to_lonlat = Transformer.from_crs(grid.crs, "EPSG:4326", always_xy=True)
    west, north = grid.x0 + col * grid.resolution, grid.y0 - row * grid.resolution
    box = to_lonlat.transform_bounds(west, north - height * grid.resolution,
                                     west + width * grid.resolution, north)
    return Region(name, tuple(round(v, 6) for v in box))


def _maps(result) -> tuple[np.ndarray, np.ndarray, tuple[int, int]]:
    """Classes, probabilities and the map's corner in pixels of the CRS grid."""
    prediction = result.dates[0].outputs.prediction
    with rasterio.open(prediction.class_path) as a, rasterio.open(prediction.prob_path) as b:
        t = a.transform
        assert a.tags()["lattice"] == "grid"
        return a.read(1), b.read(1), (round(t.f / t.e), round(t.c / t.a))


@pytest.mark.slow
def test_streamed_and_beam_maps_of_nested_and_overlapping_regions_agree_on_common_pixels(
        tmp_path, ee_offline):
    pytest.importorskip("apache_beam", reason="the beam extra is not installed (make setup does)")
    data = smooth_stack(230, 250, seed=9)
    data[0, 100:115, 120:140] = np.nan  # a hole: nodata in every map that holds it
    stack = write_month_stack(tmp_path, data)
    grid = stack.grid
    model = model_file(tmp_path / "context.pt", grid, name="test-tile-context",
                       module="tests.support.models")
    regions = {"province": inner_region(grid, 12, "province"),
               "city": _box(grid, 70, 90, 80, 70, "city"),
               "east": _box(grid, 60, 140, 120, 95, "east")}

    def run(name: str, beam: bool = False, overlap: int = 16):
        request = MapRequest(MapExtent(regions[name], (MONTH,)),
                             MapOutputs(str(tmp_path / f"{name}-{beam}-{overlap}")),
                             MapInputs(workers=4),
                             map_window(tile=48, overlap=overlap, batch_size=3), OPTIONS,
                             progress=False,
                             runner=(RunnerConfig("direct", max_workers=2, max_concurrent=4)
                                     if beam else None))
        return _maps(map_region(request, load_model(model), session=session_for(
            StackTransport(stack, info=lambda text: 5)), echo=lambda _: None,
            worker_sessions=StackSessions(stack) if beam else None))

    maps = {("streamed", name): run(name) for name in regions}
    maps[("beam", "city")] = run("city", beam=True)
    maps[("beam", "east")] = run("east", beam=True)
    # the model is context-dependent: the province cut on another lattice differs
    other = run("province", overlap=8)
    assert not np.array_equal(other[1], maps[("streamed", "province")][1])
    compared = 0
    for a, b in itertools.combinations(maps, 2):
        (ca, pa, (ra, xa)), (cb, pb, (rb, xb)) = maps[a], maps[b]
        r0, r1 = max(ra, rb), min(ra + ca.shape[0], rb + cb.shape[0])
        c0, c1 = max(xa, xb), min(xa + ca.shape[1], xb + cb.shape[1])
        assert r1 > r0 and c1 > c0, (a, b)  # every pair overlaps
        for mine, theirs in ((ca, cb), (pa, pb)):
            assert np.array_equal(mine[r0 - ra:r1 - ra, c0 - xa:c1 - xa],
                                  theirs[r0 - rb:r1 - rb, c0 - xb:c1 - xb]), (a, b)
        compared += 1
    assert compared == 10
    assert (maps[("beam", "city")][0] == 255).any()  # the hole is in the city
