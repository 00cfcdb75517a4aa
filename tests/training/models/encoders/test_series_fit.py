"""``isamap-fit --backend local|ee --series-months N``: Presto fitted on a series stack it makes.

The fit made one-month stacks only; a series fit needed a series stack made beforehand and
given with ``--input``. With ``--series-months N`` the local backend composites the month and
the N-1 months before from real GeoTIFF scenes on disk (two synthetic months of one town), and
the Earth Engine backend fetches them (the graph built offline, pixels from the fake server),
by the export's own builders: the stack's earlier bands are the export's, the model reads
them as Presto's timesteps, and a month without scenes, a count out of range, the flag with
``--input`` and ``_m1`` bands are refused in one line before any pixel is read.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
import rasterio
from rasterio.warp import transform as warp_transform

from cli.fit import build_parser, job_of, main
from contract.bands import stack_series_bands
from tests.support.scenes import june_and_may
from training.modelfile import load_model_file

BANDS = ("B2", "B3", "B4", "B8", "VV", "VH")
SERIES = stack_series_bands(BANDS, 2)  # June's bands, then May's (B2_m1 ...)


@pytest.fixture(scope="module")
def scenes(tmp_path_factory):
    """June and May scenes of one synthetic town in one folder, and points on June's label."""
    tmp = tmp_path_factory.mktemp("fit_series")
    june = june_and_may(tmp)
    return june, _points(tmp / "points.csv", june.label)


def _points(path: Path, label: Path, n: int = 120) -> Path:
    """``n`` labelled pixels of a 0/1/255 label as a points CSV (lon, lat, reference)."""
    with rasterio.open(label) as src:
        codes, transform, crs = src.read(1), src.transform, src.crs
    rows, cols = np.nonzero(codes != 255)
    pick = np.random.default_rng(0).choice(rows.size, n, replace=False)
    xs, ys = transform @ (cols[pick] + 0.5, rows[pick] + 0.5)
    lon, lat = warp_transform(crs, "EPSG:4326", list(xs), list(ys))
    with open(path, "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["id", "lon", "lat", "reference"])
        for i, (x, y, k) in enumerate(zip(lon, lat, codes[rows[pick], cols[pick]],
                                          strict=True)):
            w.writerow([f"p{i}", f"{x:.8f}", f"{y:.8f}", int(k)])
    return path


def _presto(presto_file: Path) -> list[str]:
    """Presto's features; two folds (the fewest): the head's cross-validation is not what
    these tests check, the series stack and the model reading it are."""
    return ["--features", "presto", "--encoder", f"presto={presto_file}", "--block", "200",
            "--folds", "2", "--no-progress"]


@pytest.mark.slow
def test_a_local_series_fit_makes_the_exports_series_stack(scenes, presto_file, tmp_path):
    from gee_export.local.stack import build_local_stack
    from training.modelfile import read_model_file

    june, points = scenes
    out = tmp_path / "fit"
    assert main(["--points", str(points), "--backend", "local", "--scenes", str(june.root),
                 "--month", "2019-06", "--series-months", "2", "--out", str(out), "-q",
                 *_presto(presto_file)]) == 0
    (stack,) = (out / "stack").glob("stack_2019-06_image.tif")
    with rasterio.open(stack) as src:
        assert src.descriptions == SERIES
        written = src.read()
        from contract.grid import Grid

        grid = Grid(src.crs.to_string(), src.transform.c, src.transform.f, src.width,
                    src.height, abs(src.transform.a))
    may = build_local_stack(june.root, grid, "2019-05", BANDS, out_dir=tmp_path / "may",
                            progress=False)  # the month before, by the export's builder
    with rasterio.open(may.image) as src:
        np.testing.assert_array_equal(written[len(BANDS):], src.read())
    assert np.isfinite(written[len(BANDS):]).mean() > 0.1  # May's scenes were read
    meta, _ = read_model_file(out / "model.pt")
    assert meta.bands == SERIES
    assert meta.extra["dataset"]["recipe"]["series_months"] == 2
    model = load_model_file(out / "model.pt")[0]
    assert model.timesteps == 2  # Presto reads May and June as two timesteps
    assert json.loads((out / "fit.json").read_text())["bands"] == list(SERIES)


def test_series_refusals_are_one_line_before_any_stack(scenes, presto_file, tmp_path,
                                                       capsys):
    june, points = scenes
    out = tmp_path / "fit"
    local = ["--points", str(points), "--backend", "local", "--scenes", str(june.root),
             "--month", "2019-06", "--out", str(out), "-q", *_presto(presto_file)]
    cases = [
        (["--series-months", "3"], "the stack of 2019-06 is a series of 3 months and its "
         "bands _m2 are 2019-04"),  # April has no scene: the export's refusal
        (["--series-months", "25"], "a series stack holds the month and up to 23 months "
         "before it"),
        (["--series-months", "0"], "--series-months"),
        (["--series-months", "2", "--bands", "B4,B4_m1"], "ask for earlier months with "
         "--series-months N"),
    ]
    for extra, words in cases:
        assert main([*local, *extra]) == 2, extra
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and words in err[0], (extra, err)
        assert not (out / "stack").exists() and not (out / "model.pt").exists()
    assert main(["--points", str(points), "--input", str(june.label), "--series-months", "2",
                 "--out", str(out), "-q"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "is for the stack --backend ee|local makes" in err[0], err


def _ee_series(tmp_path: Path):
    """A two-month series stack on a UTM grid (May cloudy on a block), its points."""
    from contract.patches import StackPaths
    from tests.support.mapping import MONTH, stack_paths
    from tests.support.rasters import smooth_stack, write_stack

    data = np.concatenate([smooth_stack(64, 64, seed=3), smooth_stack(64, 64, seed=4)])
    data[len(BANDS):, 10:20, 10:30] = np.nan
    plain = stack_paths(write_stack(tmp_path / f"stack_{MONTH}.tif", data, bands=SERIES))
    label = (data[2] > np.median(data[2])).astype(np.uint8)  # B4 above its median: built
    from contract.geotiff import write_geotiff

    with rasterio.open(plain.image) as src:
        write_geotiff(tmp_path / "label.tif", label, src.transform, src.crs.to_string(), 255)
    stack = StackPaths(plain.grid, SERIES, MONTH, plain.image, str(tmp_path / "label.tif"))
    return stack, data, _points(tmp_path / "points.csv", tmp_path / "label.tif")


def test_an_ee_series_fit_fetches_the_months_before(presto_file, tmp_path, ee_offline):
    from inference.fit.job import run_fit
    from testing.fake_server import StackTransport
    from tests.support.mapping import MONTH, session_for

    stack, data, points = _ee_series(tmp_path)
    argv = ["--points", str(points), "--backend", "ee", "--month", MONTH,
            "--series-months", "2", "--bands", ",".join(BANDS), *_presto(presto_file)]
    asked: list[str] = []

    def counts(text: str):  # every scene count asked of the fake server: 5 scenes
        asked.append(text)
        return 5

    transport = StackTransport(stack, info=counts)
    result = run_fit(job_of(build_parser().parse_args([*argv, "--out", str(tmp_path / "a")])),
                     session=session_for(transport))
    assert any("2019-05-01" in text for text in asked)  # May's scenes were counted
    assert {b for _, bands in transport.served for b in bands} == set(SERIES)
    assert result.report["bands"] == list(SERIES)
    (written,) = (tmp_path / "a" / "stack").glob("*.tif")
    with rasterio.open(written) as src, rasterio.open(stack.image) as whole:
        r0 = round((src.transform.f - whole.transform.f) / 10)
        c0 = round((whole.transform.c - src.transform.c) / 10)
        fetched = src.read()[:, r0:r0 + 64, c0:c0 + 64]
    np.testing.assert_array_equal(fetched[len(BANDS):], data[len(BANDS):])  # May, as served
    assert load_model_file(result.model)[0].timesteps == 2

    # May without a scene: refused naming it, before any pixel is fetched
    def none_in_may(text: str):
        if "2019-05-01" not in text:
            return 5
        return 0 if "Reducer.min" in text else [0, 0]  # the fewest, then each (S2, S1)

    empty = StackTransport(stack, info=none_in_may)
    from core.errors import EmptyCompositeError

    with pytest.raises(EmptyCompositeError, match="in 2019-05, which the series stack of "
                       "2019-06 reads"):
        run_fit(job_of(build_parser().parse_args([*argv, "--out", str(tmp_path / "b")])),
                session=session_for(empty))
    assert not empty.served
