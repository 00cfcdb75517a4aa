"""Labelled points drawn from a label raster: ``isamap-fit --points-from LABEL.tif --n N``.

The raster's values are the fit's class codes (``0 .. K-1`` in ``--classes`` order, the codes
a points file may give for its classes); its nodata and every other value are no class and
never drawn. The draw is stratified by class with the seed, by the assessment's own allocation
and draw (:func:`inference.assess.design.draw_array`): an equal share per class; a class with
fewer labelled pixels than its share gives all of them, and the other classes the rest, in
proportion to their pixels. With ``--input``, only pixels whose centres lie over an input
stack are drawn. Each point is its pixel's centre in lon/lat, which
:func:`inference.fit.inputs.locate` finds in the same pixel of a stack on the raster's grid;
from there the drawn points go through every check a points file's go through.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import rasterio
from rasterio.warp import transform as warp_transform
from rasterio.warp import transform_bounds
from rasterio.windows import from_bounds

from core.errors import InputDataError
from core.storage import files
from inference.assess.design import draw_array
from inference.assess.point_files import ReferencePoints
from inference.assess.reference_records import check_lon_lat
from inference.fit.inputs import open_stack

log = logging.getLogger(__name__)

DEFAULT_N = 300
"""Points drawn when ``--points-from`` is given without ``--n``."""
GIVE = "a label GeoTIFF whose pixels hold the class codes (0 for the first of --classes...)"


@dataclass(frozen=True)
class DrawnPoints:
    """The points drawn, and what the model file records of their draw."""

    points: ReferencePoints
    record: dict


def draw_points(path: str, n: int, seed: int, classes: Sequence[str],
                within: Sequence[str] = ()) -> DrawnPoints:
    """``n`` points of ``path``'s labelled pixels, stratified by class (module docstring).

    ``within``: the input stacks; only pixels over one of them are drawn.

    Raises:
        InputDataError: a raster missing or unreadable, without CRS, with no pixel of a class
            (over the inputs), or whose grid does not overlap any input stack.
    """
    try:
        with files.open_raster(path) as src:
            if src.crs is None:
                raise InputDataError(f"--points-from {path} has no CRS; give {GIVE}")
            label = src.read(1, masked=True)
            crs, transform = src.crs, src.transform
    except rasterio.errors.RasterioError as exc:
        raise InputDataError(files.raster_refusal("--points-from", path, exc, GIVE)) from None
    values = np.ma.filled(label.astype(np.float64), -1.0)
    whole = np.isfinite(values) & (values == np.round(values)) & (values >= 0)
    codes = np.where(whole & (values < len(classes)), values, -1).astype(np.int32)
    known = f"the classes {list(classes)} (codes 0..{len(classes) - 1})"
    if not (codes >= 0).any():
        raise InputDataError(f"--points-from {path} has no pixel of {known} outside its nodata; "
                             "give the label raster of these classes, or name its classes in "
                             "code order with --classes")
    if within:
        over = _over_inputs(within, crs, transform, codes.shape)
        if not over.any():
            raise InputDataError(f"--points-from {path} does not overlap the --input stack(s); "
                                 "give a label raster of the stacks' area")
        codes[~over] = -1
        if not (codes >= 0).any():
            raise InputDataError(f"--points-from {path} has no pixel of {known} over the "
                                 "--input stack(s); give a label raster of the stacks' area")
    share = n // len(classes)
    sample = draw_array(codes, len(classes), n, seed, minimum=max(2, share))
    rows, cols = np.divmod(sample.index, codes.shape[1])
    xs, ys = rasterio.transform.xy(transform, rows, cols, offset="center")
    lon, lat = warp_transform(crs, "EPSG:4326", list(np.ravel(xs)), list(np.ravel(ys)))
    ids = tuple(f"r{r}c{c}" for r, c in zip(rows.tolist(), cols.tolist(), strict=True))
    points = ReferencePoints(ids, np.asarray(lon), np.asarray(lat),
                             sample.stratum.astype(np.int64))
    check_lon_lat(Path(path), ids, points.lon, points.lat)  # the points reader's own check
    short = [c for c, p in zip(classes, sample.pixels, strict=True) if p < share]
    rule = "equal" if not short else "proportional"
    drawn = ", ".join(f"{a} {c}" for c, a in zip(classes, sample.allocation, strict=True))
    log.info("drew %d points from %s (seed %d): %s; %s", len(ids), Path(path).name, seed, drawn,
             "an equal share per class" if not short else
             f"{', '.join(short)} {'has' if len(short) == 1 else 'have'} fewer labelled pixels "
             "than an equal share (all drawn), the rest in proportion to the classes' pixels")
    record = {"raster": Path(path).name, "n": n, "seed": seed, "rule": rule,
              "per_class": dict(zip(classes, sample.allocation, strict=True))}
    return DrawnPoints(points, record)


def _over_inputs(inputs: Sequence[str], crs: rasterio.crs.CRS, transform: rasterio.Affine,
                 shape: tuple[int, ...]) -> np.ndarray:
    """Which pixels of the raster have their centres in an input stack's bounds."""
    over = np.zeros(shape[:2], bool)
    for path in inputs:
        with open_stack(path) as src:
            if src.crs is None:
                continue  # refused as the stack is opened for its bands
            bounds = transform_bounds(src.crs, crs, *src.bounds)
        window = from_bounds(*bounds, transform=transform)
        # pixel k's centre k + 0.5 lies in [start, stop): k from ceil(start - .5) to ceil(stop - .5)
        r0, c0 = (max(0, math.ceil(v - 0.5)) for v in (window.row_off, window.col_off))
        r1 = min(shape[0], math.ceil(window.row_off + window.height - 0.5))
        c1 = min(shape[1], math.ceil(window.col_off + window.width - 0.5))
        if r1 > r0 and c1 > c0:
            over[r0:r1, c0:c1] = True
    return over
