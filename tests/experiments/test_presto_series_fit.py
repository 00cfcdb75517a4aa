"""``isamap-fit``'s features of a series stack are the ``presto series`` arm's, on the real tile.

docs/evidence/points.md's ``presto series`` arm (experiments.presto_dates) fits ``isamap-fit``'s
classifier (:func:`training.points.fit.fit_points`) on Presto's features of the Slovenia
tile's three clear dates read as one series. Here ``isamap-fit --features presto`` is run on
the series stack of September (August as ``B4_m1``-style bands, July as ``_m2``), written as
``isamap-export --series-months 3`` writes one, with points on the tile's labelled pixels:
the features it computes at its points, and those its model file gives the whole stack, must
be the experiment's for the same pixels, and ``isamap-predict`` of the stack with the model
file maps the classes its head gives the experiment's features, so that evidence is evidence
about the product's path.
"""

from __future__ import annotations

import csv

import numpy as np
import rasterio
import torch
from rasterio.transform import Affine
from rasterio.warp import transform as warp_transform

from cli.fit import build_parser, job_of
from cli.predict import predict_main
from contract.bands import series_bands
from contract.stack import MONTH_TAG
from experiments.change_pairs import ARTIFICIAL, load_scenes
from experiments.presto_dates import (
    COLUMNS,
    CRS,
    NORTH,
    PIXEL_M,
    PRESTO_BANDS,
    WEST,
    presto_series,
    tile_latlon,
)
from inference.fit.job import run_fit
from training.modelfile import load_model_file
from training.models.encoders.registry import PRESTO, load_encoder
from training.models.points import PixelClassifier
from training.points.model import point_features

ROWS = 10  # the tile's northern 10 rows: 1,000 pixels, 125 of them labelled built
#: every second labelled pixel of them is a point (438, 67 built): the features compared are
#: per pixel, so half the points show the same; the fit's cross-validation (26 heads on 128
#: features) and Presto at the points cost in proportion to them
POINT_STEP = 2
#: float32 arithmetic in another order: the product un-normalises the bands it was given
#: ((x - mean) / std, then times std plus mean), the experiment reads the reflectance as it is
#: (the measured largest difference is 2.4e-6, at the points and over the stack)
FLOAT_ATOL = 2e-5


def _series_stack(path, scenes: np.ndarray) -> tuple[str, ...]:
    """September's series stack of ``scenes`` (July, August, September) as a GeoTIFF."""
    bands = series_bands(PRESTO_BANDS, 3)
    stack = np.concatenate([scenes[2 - k][list(COLUMNS)] for k in range(3)])
    with rasterio.open(path, "w", driver="GTiff", width=stack.shape[2], height=stack.shape[1],
                       count=len(bands), dtype="float32", crs=CRS, nodata=float("nan"),
                       transform=Affine(PIXEL_M, 0, WEST, 0, -PIXEL_M, NORTH)) as dst:
        dst.write(stack.astype(np.float32))
        dst.descriptions = bands
        dst.update_tags(**{MONTH_TAG: "2015-09"})
    return bands


def _points(path, lulc: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Every :data:`POINT_STEP`-th labelled pixel of the first :data:`ROWS` rows as a point;
    their rows, columns."""
    rows, cols = (a[::POINT_STEP] for a in np.nonzero(lulc[:ROWS] > 0))
    x, y = WEST + (cols + 0.5) * PIXEL_M, NORTH - (rows + 0.5) * PIXEL_M
    lon, lat = warp_transform(CRS, "EPSG:4326", list(x), list(y))
    with open(path, "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["id", "lon", "lat", "reference"])
        w.writerows([f"p{i}", f"{a:.9f}", f"{b:.9f}", int(lulc[r, c] == ARTIFICIAL)]
                    for i, (a, b, r, c) in enumerate(zip(lon, lat, rows, cols, strict=True)))
    return rows, cols


def test_isamap_fits_series_features_are_the_experiments_presto_series(shared_data,
                                                                       shared_weights,
                                                                       tmp_path):
    dates, scenes, lulc = load_scenes(shared_data / "eolearn_slovenia")
    assert dates == ["2015-07-11", "2015-08-30", "2015-09-09"]  # July, August, September
    weights = shared_weights / "presto" / "default_model.pt"
    encoder = load_encoder(PRESTO, weights)
    latlon = tile_latlon(lulc.shape)
    theirs = presto_series(encoder, scenes[:, :, :ROWS], [6, 7, 8], latlon)  # (ROWS * 100, 128)

    bands = _series_stack(tmp_path / "stack_2015-09_image.tif", scenes)
    rows, cols = _points(tmp_path / "points.csv", lulc)
    fitted = run_fit(job_of(build_parser().parse_args([
        "--points", str(tmp_path / "points.csv"), "--input",
        str(tmp_path / "stack_2015-09_image.tif"), "--features", "presto", "--encoder",
        f"presto={weights}", "--block", "200", "--folds", "2", "--out", str(tmp_path / "fit"),
        "--no-progress", "-q", "--allow-implausible"])))  # Level-1C, as Presto was pretrained
    assert fitted.report["bands"] == list(bands)  # the earlier months read by default
    assert fitted.report["points"]["points"] == rows.size  # none left out

    model, meta = load_model_file(fitted.model)  # the model file alone
    assert isinstance(model, PixelClassifier) and model.timesteps == 3
    assert model.month == 8 and np.allclose(model.latlon, latlon, rtol=0, atol=1e-9)
    stack = np.concatenate([scenes[2 - k][list(COLUMNS)] for k in range(3)])
    mean = np.asarray(meta.norm_mean, np.float32)[:, None, None]
    std = np.asarray(meta.norm_std, np.float32)[:, None, None]
    normalised = (stack[:, :ROWS] - mean) / std  # as isamap-fit and every map normalise
    at_points = point_features(model, normalised[:, rows, cols].T)  # what the head was fit on
    assert np.abs(at_points - theirs[rows * 100 + cols]).max() <= FLOAT_ATOL
    with torch.no_grad():
        mapped = model.features(torch.from_numpy(normalised)[None])[0].reshape(128, -1).T
    assert np.abs(mapped.numpy() - theirs).max() <= FLOAT_ATOL  # the map reads what the fit read
    # the map of the same stack's first ROWS rows (the pixels compared; the model's latlon is
    # its own, recorded by the fit): Presto on 1,000 pixels, not the tile's 10,000
    (tmp_path / "rows").mkdir()
    _series_stack(tmp_path / "rows" / "stack_2015-09_image.tif", scenes[:, :, :ROWS])
    assert predict_main(["--model", str(fitted.model), "--input",
                         str(tmp_path / "rows" / "stack_2015-09_image.tif"), "--out",
                         str(tmp_path / "map" / "isa"), "--precision", "fp32", "-q",
                         "--tile", "128", "--overlap", "0",
                         "--allow-implausible"]) == 0  # the tile is Level-1C, as fitted
    with rasterio.open(tmp_path / "map" / "isa_class.tif") as src:
        assert src.height == ROWS
        predicted = src.read(1).ravel()
    with torch.no_grad():
        logits = model.classify(torch.from_numpy(theirs).T.reshape(1, 128, ROWS, 100))
    expected = logits.argmax(1).ravel().numpy()
    assert (predicted == expected).mean() >= 0.999  # isamap-predict maps the experiment's
    assert 0 < expected.sum() < expected.size
    one = presto_series(encoder, scenes[2:, :, rows, cols][..., None], [8], latlon)  # per pixel
    assert np.abs(at_points - one).max() > 0.1  # a series, not September
