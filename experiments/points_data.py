"""The Dynamic World tiles as :mod:`experiments.points` reads them: stacks, labels, features.

Each tile is exported as a user exports it (``isamap-export --backend local``, the built-up
experiment's :func:`experiments.builtup.export`: cloud-masked composite of its scene), and
its stack is read on the label's pixels (the stack's grid is the label's shifted by whole
pixels). A pixel is usable where it is labelled and every band has a value: what a map
of the stack covers.

The features are computed as ``isamap-fit`` computes them, through the fitted model's own
module (:func:`training.points.model.point_features`), on the usable pixels alone. Presto's
features do not depend on the normalisation (the network undoes it before the encoder), so
they are computed once per tile from the raw bands and kept in ``OUT/features/`` (float16,
keyed by the stack's content fingerprint and the encoder's SHA-256); the bands' features are
the bands normalised as the fold's model normalises them.
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
from experiments.builtup import DWTile, built_label, export, find_tile, scene_folder
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
        latlon: the tile's centre (degrees), what Presto is told.
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
        x, y = self.tile.footprint.transform * (cols + 0.5, rows + 0.5)
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
    truth = built_label(tile)
    usable = (truth != LABEL_NODATA) & np.isfinite(values).all(axis=0)
    west, south, east, north = fp.bounds()
    lon, lat = warp_transform(fp.crs, "EPSG:4326", [(west + east) / 2], [(south + north) / 2])
    return TileArrays(tile, stack, names, values, truth, usable, (float(lat[0]), float(lon[0])),
                      int(tags.get("MONTH", "2000-01")[5:7]) - 1,
                      tags.get("ISAMAP_FINGERPRINT", text_sha256(str(stack))))


def presto_features(arrays: TileArrays, encoder: str, out: Path) -> np.ndarray:
    """``(n_usable, 128)`` float32 Presto features of the usable pixels, in flat order.

    Cached in ``out/features/<tile>_<key>.npy`` (float16); the key is the stack's
    fingerprint, the encoder's SHA-256 and the tile's centre and month.
    """
    key = text_sha256(f"{arrays.fingerprint}|{PRESTO.sha256}|{arrays.latlon}|{arrays.month}",
                      16)
    path = out / "features" / f"{arrays.prefix}_{key}.npy"
    if path.is_file():
        return np.load(path).astype(np.float32)
    identity = NormStats(arrays.bands, (0.0,) * len(arrays.bands), (1.0,) * len(arrays.bands))
    kwargs = model_kwargs("presto", arrays.bands, identity, 0, arrays.latlon, arrays.month)
    model = feature_model(kwargs, 2, encoder)
    raw = arrays.values[:, arrays.usable].T  # (n, C): normalised by mean 0, std 1
    log.info("Presto features of %s: %d pixels", arrays.prefix, raw.shape[0])
    feats = point_features(model, raw).astype(np.float16)
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp, open(tmp, "wb") as handle:
        np.save(handle, feats)
    return feats.astype(np.float32)


def band_features(arrays: TileArrays, stats: NormStats) -> np.ndarray:
    """``(n_usable, C)`` the usable pixels' bands normalised by ``stats``."""
    raw = arrays.values[:, arrays.usable].T
    return (raw - np.asarray(stats.mean, np.float32)) / np.asarray(stats.std, np.float32)
