"""The Dynamic World tiles as :mod:`experiments.points` reads them: stacks, labels, features.

Each tile is exported as a user exports it (``isamap-export --backend local``, the built-up
experiment's :func:`experiments.builtup_commands.export`: cloud-masked composite of its scene), and
its stack is read on the label's pixels (the stack's grid is the label's shifted by whole
pixels). A pixel is usable where it is labelled and every band has a value: what a map
of the stack covers.

The features are computed as ``isamap-fit`` computes them, through the fitted model's own
module (:func:`training.points.model.point_features`), on the usable pixels a fold needs.
Presto's do not depend on the normalisation (the network undoes it before the encoder) but on
the place and month the model tells it (the first input's), so they are kept per tile, place
and month in ``OUT/features/`` (:class:`PrestoFeatures`); the bands' features are the bands
normalised as the fold's model normalises them.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import rasterio
from rasterio.warp import transform as warp_transform

from contract.bands import LABEL_NODATA
from core.digest import text_sha256
from core.storage import atomic_path
from experiments.builtup_commands import export
from experiments.builtup_tiles import DWTile, built_label, find_tile, scene_folder
from training.data import NormStats, band_stats
from training.models.encoders.registry import PRESTO
from training.points.model import feature_model, model_kwargs, point_features

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class TileArrays:
    """One tile's stack on its label's pixels, and what is known at each pixel.

    Attributes:
        tile: the tile's files and grid.
        stack: the exported stack (``stack_<month>_image.tif``).
        bands: the stack's band names.
        values: ``(C, H, W)`` float32 bands on the label's pixels (NaN: no data).
        truth: ``(H, W)`` 0 other, 1 built, 255 not labelled.
        usable: ``(H, W)`` labelled with every band present.
        latlon: the stack's centre (degrees), what ``isamap-fit`` tells Presto when the
            stack is its first input.
        month: 0-11, the stack's month.
        fingerprint: the stack's content fingerprint (its ``ISAMAP_FINGERPRINT`` tag).
    """

    tile: DWTile
    stack: Path
    bands: tuple[str, ...]
    values: np.ndarray
    truth: np.ndarray
    usable: np.ndarray
    latlon: tuple[float, float]
    month: int
    fingerprint: str

    @property
    def prefix(self) -> str:
        return self.tile.prefix

    def xy(self, index: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Projected centres (metres) of flat pixel indexes of the label grid."""
        rows, cols = np.unravel_index(index, self.truth.shape)
        x, y = self.tile.footprint.transform @ (cols + 0.5, rows + 0.5)
        return np.asarray(x, np.float64), np.asarray(y, np.float64)

    def stats(self, rows: slice = slice(None)) -> NormStats:
        """The bands' statistics over rows ``rows`` (a scene's, as a stack of them gives)."""
        return band_stats([self.values[:, rows]], self.bands, where=f"tile {self.prefix}")


def load_tile(data: Path, prefix: str, out: Path, bands: Sequence[str], budget) -> TileArrays:
    """Export ``prefix``'s stack under ``out/exports`` (kept) and read it on the label's grid."""
    tile = find_tile(data, prefix)
    stack = export(tile, scene_folder(tile, out / "scenes"), out / "exports" / prefix,
                   bands, budget)
    fp = tile.footprint
    with rasterio.open(stack) as src:
        col = (fp.transform.c - src.transform.c) / src.transform.a
        row = (fp.transform.f - src.transform.f) / src.transform.e
        if abs(col - round(col)) > 1e-6 or abs(row - round(row)) > 1e-6:
            raise ValueError(f"{stack}: not on the label's pixel lattice")
        window = rasterio.windows.Window(round(col), round(row), fp.width, fp.height)
        values = src.read(window=window, boundless=True, fill_value=np.nan, out_dtype="float32")
        names = tuple(src.descriptions)
        tags = src.tags()
        transform, width, height = src.transform, src.width, src.height
    truth = built_label(tile)
    usable = (truth != LABEL_NODATA) & np.isfinite(values).all(axis=0)
    x, y = transform @ (width / 2, height / 2)  # the stack's centre, as isamap-fit takes it
    lon, lat = warp_transform(fp.crs, "EPSG:4326", [x], [y])
    return TileArrays(tile, stack, names, values, truth, usable, (float(lat[0]), float(lon[0])),
                      int(tags.get("MONTH", "2000-01")[5:7]) - 1,
                      tags.get("ISAMAP_FINGERPRINT", text_sha256(str(stack))))


class PrestoFeatures:
    """Presto's features of a tile's usable pixels for one place and month, made as needed.

    What ``isamap-fit`` computes for a point of this tile when its model tells Presto
    ``latlon`` and ``month`` (its first input's): rows are computed when first asked for and
    kept in ``out/features/<tile>_<key>.npz`` (float16, with the rows done), keyed by the
    stack's fingerprint, the encoder's SHA-256, the place and the month.
    """

    def __init__(self, arrays: TileArrays, encoder: str, out: Path,
                 latlon: tuple[float, float], month: int) -> None:
        key = text_sha256(f"{arrays.fingerprint}|{PRESTO.sha256}|{latlon}|{month}", 16)
        self.arrays, self.path = arrays, out / "features" / f"{arrays.prefix}_{key}.npz"
        n = int(arrays.usable.sum())
        if self.path.is_file():
            with np.load(self.path) as saved:
                self.values, self.done = saved["values"], saved["done"]
        else:
            self.values = np.zeros((n, PRESTO.dim), np.float16)
            self.done = np.zeros(n, bool)
        identity = NormStats(arrays.bands, (0.0,) * len(arrays.bands),
                             (1.0,) * len(arrays.bands))  # raw bands in, as the model un-does
        self.kwargs = model_kwargs("presto", arrays.bands, identity, 0, latlon, month)
        self.encoder = encoder

    def rows(self, index: np.ndarray) -> np.ndarray:
        """``(len(index), 128)`` float32 features of usable pixels ``index`` (flat order)."""
        missing = np.unique(index[~self.done[index]])
        if missing.size:
            log.info("Presto features of %s: %d pixels", self.arrays.prefix, missing.size)
            model = feature_model(self.kwargs, 2, self.encoder)
            raw = self.arrays.values[:, self.arrays.usable].T[missing]
            self.values[missing] = point_features(model, raw).astype(np.float16)
            self.done[missing] = True
            with atomic_path(self.path) as tmp, open(tmp, "wb") as handle:
                np.savez(handle, values=self.values, done=self.done)
        return self.values[index].astype(np.float32)


def band_features(arrays: TileArrays, stats: NormStats, index: np.ndarray) -> np.ndarray:
    """``(len(index), C)`` usable pixels ``index``'s bands normalised by ``stats``."""
    raw = arrays.values[:, arrays.usable].T[index]
    return (raw - np.asarray(stats.mean, np.float32)) / np.asarray(stats.std, np.float32)
