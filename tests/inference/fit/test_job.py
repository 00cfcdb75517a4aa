"""A model fitted on points runs in every map path: streamed isamap-map and its Beam pipeline.

``isamap-fit --backend ee`` fetches the stack over the points from the fake pixel server,
fits and records the recipe; ``isamap-map`` then maps a region with the model file alone,
streamed and as a Beam pipeline on the DirectRunner, and both give the same map.
"""

from __future__ import annotations

import csv

import numpy as np
import pytest
import rasterio
from pyproj import Transformer

from cli.fit import build_parser, job_of
from core.pipeline_options import RunnerConfig
from inference.fit.job import run_fit
from inference.mapping.region import map_region
from inference.mapping.request import MapExtent, MapInputs, MapOutputs, MapRequest, map_window
from inference.predict.runtime import RuntimeOptions
from testing.fake_server import StackSessions, StackTransport
from tests.support.mapping import MONTH, inner_region, session_for, write_month_stack
from tests.support.rasters import smooth_stack
from training.modelfile import load_model


def write_points(path, lon, lat, reference):
    """A points CSV (id, lon, lat, reference) as a user writes one."""
    with open(path, "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["id", "lon", "lat", "reference"])
        w.writerows([f"t{i}", f"{a:.8f}", f"{b:.8f}", int(ref)]
                    for i, (a, b, ref) in enumerate(zip(lon, lat, reference, strict=True)))
    return path


def grid_points(path, band):
    """Points every 4 px of a 60 x 60 test stack (``write_stack``'s grid), built where
    ``band`` is above its median: their rows, columns and CSV."""
    truth = band > np.nanmedian(band)
    rows, cols = np.mgrid[2:60:4, 2:60:4].reshape(2, -1)
    to_lonlat = Transformer.from_crs("EPSG:32650", "EPSG:4326", always_xy=True)
    lon, lat = to_lonlat.transform(500000 + 10 * (cols + 0.5), 3400000 - 10 * (rows + 0.5))
    return rows, cols, write_points(path, lon, lat, truth[rows, cols])


@pytest.mark.slow
def test_fitted_model_maps_streamed_and_in_a_beam_pipeline(tmp_path, ee_offline):
    pytest.importorskip("apache_beam", reason="the beam extra is not installed (make setup does)")
    data = smooth_stack(120, 130, seed=11)
    stack = write_month_stack(tmp_path, data)
    truth = data[0] > np.median(data[0])  # built where the first band is high
    rng = np.random.default_rng(0)
    rows, cols = rng.integers(10, 110, 200), rng.integers(10, 120, 200)
    to_lonlat = Transformer.from_crs(stack.grid.crs, "EPSG:4326", always_xy=True)
    x, y = stack.grid.transform @ (cols + 0.5, rows + 0.5)
    lon, lat = to_lonlat.transform(x, y)
    points = write_points(tmp_path / "points.csv", lon, lat, truth[rows, cols])
    job = job_of(build_parser().parse_args([
        "--points", str(points), "--backend", "ee", "--month", MONTH, "--block", "300",
        "--out", str(tmp_path / "fit"), "--no-progress"]))
    fitted = run_fit(job, session=session_for(StackTransport(stack, info=lambda text: 5)))
    assert fitted.report["cross_validation"]["auc"] > 0.95

    def request(out: str, runner: RunnerConfig | None = None) -> MapRequest:
        return MapRequest(MapExtent(inner_region(stack.grid), (MONTH,)),
                          MapOutputs(str(tmp_path / out)), MapInputs(workers=2),
                          map_window(tile=64, overlap=16, batch_size=4),
                          RuntimeOptions(precision="fp32", channels_last=False),
                          progress=False, runner=runner)

    model = load_model(fitted.model)
    streamed = map_region(request("streamed"), model, session=session_for(
        StackTransport(stack, info=lambda text: 5)), echo=lambda _: None)
    piped = map_region(request("piped", RunnerConfig("direct", max_workers=2, max_concurrent=4)),
                       model,
                       session=session_for(StackTransport(stack, info=lambda text: 5)),
                       worker_sessions=StackSessions(stack), echo=lambda _: None)
    maps = []
    for result in (streamed, piped):
        with rasterio.open(result.dates[0].outputs.prediction.class_path) as src:
            maps.append(src.read(1))
    assert np.array_equal(maps[0], maps[1])
    assert 0.2 < float((maps[0] == 1).mean()) < 0.8  # a map of both classes


def test_the_default_bands_read_sentinel2_zero_padded_names_as_isamaps(tmp_path):
    """A stack named as ESA names Sentinel-2's bands (B01..B12, B8A) gives every band isamap
    knows, named as isamap names them; none is dropped for its spelling."""
    from inference.fit.job import default_bands
    from tests.support.rasters import smooth_stack, write_stack

    names = ("B01", "B02", "B03", "B04", "B05", "B06", "B07", "B08", "B8A", "B09", "B11", "B12")
    stack = write_stack(tmp_path / "l2a.tif", smooth_stack(20, 20, count=len(names)),
                        bands=names)
    assert default_bands(str(stack)) == ("B2", "B3", "B4", "B5", "B6", "B7", "B8", "B8A",
                                         "B11", "B12")


def test_a_series_stacks_earlier_months_are_read_and_their_gaps_keep_the_point(tmp_path):
    """``isamap-fit --input`` a series stack reads its earlier months (``B4_m1``) by default,
    and a point whose earlier month is missing (a cloud that month) is fitted on, as every
    map reads it (Presto masks that month, the bands arm reads the mean); a point whose own
    month is missing is still left out."""
    from contract.bands import series_bands
    from tests.support.rasters import write_stack

    bands = series_bands(("B2", "B3", "B4", "B8", "B11", "B12"), 2)
    data = smooth_stack(60, 60, count=len(bands), seed=5)
    data[6:, :20, :30] = np.nan  # the month before missing over a corner
    data[:6, 50:, 50:] = np.nan  # the stack's own month missing over another
    stack = write_stack(tmp_path / "series.tif", data, bands=bands)
    rows, cols, points = grid_points(tmp_path / "points.csv", data[4])
    job = job_of(build_parser().parse_args([
        "--points", str(points), "--input", str(stack), "--block", "100",
        "--out", str(tmp_path / "fit"), "--no-progress"]))
    fitted = run_fit(job)
    assert fitted.report["bands"] == list(bands)  # B2 .. B12, B2_m1 .. B12_m1
    gone = (rows >= 50) & (cols >= 50)  # the own month's gap
    assert fitted.report["points"]["points"] == rows.size - int(gone.sum())
    assert ((rows < 20) & (cols < 30)).any()  # points in the earlier month's gap, kept


def test_a_points_fit_on_stacks_whose_earlier_month_has_no_pixel_is_refused(tmp_path, capsys):
    """An earlier month with no pixel in any input stack (its export failed) is refused in one
    line naming its bands and what to do, before the fit: taking the own month's statistics
    would fit on one-month features that a map of a stack with real earlier months never
    gives (wrong classes, exit 0)."""
    from cli.fit import main as fit_main
    from contract.bands import series_bands
    from tests.support.rasters import write_stack

    bands = series_bands(("B2", "B3", "B4", "B8", "B11", "B12"), 2)
    data = smooth_stack(60, 60, count=len(bands), seed=5)
    data[6:] = np.nan  # the month before: no pixel anywhere
    stack = write_stack(tmp_path / "series.tif", data, bands=bands)
    *_, points = grid_points(tmp_path / "points.csv", data[4])
    out = tmp_path / "fit"
    assert fit_main(["--points", str(points), "--input", str(stack), "--block", "100",
                     "--out", str(out), "--no-progress"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err
    assert "['B2_m1', 'B3_m1', 'B4_m1', 'B8_m1', 'B11_m1', 'B12_m1'] have no valid pixel in " \
        "the input stacks" in err[0], err
    assert "export those months again, or give --bands without them" in err[0], err
    assert not out.exists()
