"""Sentinel-1 monthly composite in numpy: despeckle each scene, mean in linear power, then dB.

Same recipe as the Earth Engine side (``COPERNICUS/S1_GRD_FLOAT``): every scene is filtered in
linear power in its own geometry (the speckle model is multiplicative in power; filtering
after resampling would filter interpolated, correlated speckle), warped once onto the grid,
averaged in linear power over the month, and converted with 10*log10 once at the end. The
number of scenes that contributed to each pixel is the ``s1_scene_count`` quality band.

Input sigma0 may be linear or dB: the unit comes from the caller, the scene's ``SIGMA0_UNIT``
tag, or the values (dB sigma0 has a negative median; linear power is never negative). The
values are checked in every case (:mod:`gee_export.local.plausibility`): a tag they contradict
is overridden with a warning, a unit the caller states is refused.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from contract.grid import Grid, Window
from contract.sigma0 import linear_to_db  # the one conversion (the import's too)
from core.errors import InputDataError
from gee_export.local import plausibility
from gee_export.local.scenes import Scene
from gee_export.local.speckle import DEFAULT_ENL, DEFAULT_KERNEL, SpeckleFilter, despeckle, halo_for
from gee_export.local.warp import read_to_grid


def db_to_linear(db: np.ndarray) -> np.ndarray:
    """10^(dB/10); NaN stays NaN."""
    return np.power(np.float32(10.0), np.asarray(db, dtype=np.float32) / np.float32(10.0))


def scene_unit(scene: Scene, band: str, stated: str | None = None) -> str:
    """The unit of a scene band, from a decimated read checked against stated > tag."""
    if stated is not None and stated not in ("linear", "dB"):
        raise InputDataError(f"unit {stated!r} is neither 'linear' nor 'dB'; use --s1-unit "
                             "linear or --s1-unit dB")
    sample = plausibility.read_sample(scene.band(band))
    return plausibility.check_s1_unit(sample, f"Sentinel-1 {scene.product} {band}",
                                      stated=stated, tagged=scene.unit)


def _preparer(unit: str, speckle: SpeckleFilter, size: int, enl: float):
    def prepare(values: np.ndarray) -> np.ndarray:
        linear = db_to_linear(values) if unit == "dB" else values.astype(np.float32)
        linear = np.where(linear > 0, linear, np.nan)  # 0 is the usual GRD border fill
        return despeckle(linear, speckle, size=size, enl=enl)
    return prepare


def composite_window(scenes: Sequence[Scene], bands: Sequence[str], grid: Grid, window: Window,
                     *, units: dict[tuple[str, str], str], speckle: SpeckleFilter = "refined_lee",
                     size: int = DEFAULT_KERNEL, enl: float = DEFAULT_ENL,
                     ) -> tuple[np.ndarray, np.ndarray]:
    """Mean of despeckled linear sigma0 over ``scenes`` on one window, in dB; and scene count.

    Args:
        scenes: the month's Sentinel-1 scenes.
        bands: polarisations, e.g. ``("VV", "VH")``.
        grid: target grid.
        window: the block of the grid to compute.
        speckle: filter applied per scene in linear power, in the scene's own pixels.
        size: kernel of boxcar, Lee, Gamma-MAP and Lee sigma.
        enl: equivalent number of looks.
        units: (product, band) -> ``'linear'``/``'dB'``, decided once per scene by the caller
            (deciding per window could flip between windows).

    Returns:
        ``((bands, rows, cols) dB float32 NaN = no data, (rows, cols) float32 scene count)``;
        a scene counts for a pixel where all requested polarisations are valid.
    """
    halo = halo_for(speckle, size)
    total = np.zeros((len(bands), window.height, window.width), dtype=np.float64)
    count = np.zeros((window.height, window.width), dtype=np.float32)
    for scene in scenes:
        layers = []
        for band in bands:
            prepare = _preparer(units[(scene.product, band)], speckle, size, enl)
            layers.append(read_to_grid(scene.band(band), grid, window, "bilinear",
                                       prepare=prepare, halo=halo))
        stack = np.stack(layers)
        ok = np.isfinite(stack).all(axis=0)
        total += np.where(ok, stack, 0.0)
        count += ok
    with np.errstate(divide="ignore", invalid="ignore"):
        mean = np.where(count > 0, total / np.maximum(count, 1), np.nan)
    return linear_to_db(mean), count

