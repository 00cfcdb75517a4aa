"""The Dynamic World tiles the built-up experiments read: their files, labels and bands.

The data are Dynamic World training tiles (``dynamicworld_s2`` in the sample data root): per
tile ``PREFIX_s2l2a.tif`` (12 named bands, DN = reflectance x 10000), ``PREFIX_scl.tif``
(Sen2Cor scene classification) and ``PREFIX_label.tif`` (hand-drawn classes, 7 = built area,
0 unmarked, 10 cloud). Each tile gets a scene folder in the local backend's input layout
(links to the three files, :func:`scene_folder`); the export maps the labels with
:data:`DW_LABEL_MAP` (built 1, the other labelled classes 0, unmarked and cloud ignored).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import rasterio

from core.errors import InputDataError
from experiments.realscenes import Footprint, link_into, mapped_label

DW_FOLDER = "dynamicworld_s2"
DW_LABEL_MAP = "7=1,0=255,10=255,*=0"  # 7 built area -> 1; 0 unmarked, 10 cloud ignored
DW_DATES = {"java": "2019-07-13", "ghana_a": "2018-12-26", "ghana_b": "2018-12-26"}


@dataclass(frozen=True)
class DWTile:
    """One Dynamic World tile's three files and its grid."""

    prefix: str
    s2: Path
    scl: Path
    label: Path
    footprint: Footprint
    date: str | None

    @property
    def month(self) -> str | None:
        return self.date[:7] if self.date else None


def find_tile(folder: str | Path, prefix: str, date: str | None = None) -> DWTile:
    """The files ``PREFIX_s2l2a.tif``, ``PREFIX_scl.tif``, ``PREFIX_label.tif`` in ``folder``.

    The three must share one grid. ``date`` (``YYYY-MM-DD``) defaults to the shared sample's
    known dates (:data:`DW_DATES`); the export reads it from the files' tags when they have one.
    """
    folder = Path(folder)
    given = Path(prefix)
    if given.parent != Path("."):  # a path: read there, but name every output by the tile
        folder, prefix = given.parent, given.name  # only, so all of them stay under --out
    paths = {kind: Path(folder) / f"{prefix}_{kind}.tif" for kind in ("s2l2a", "scl", "label")}
    missing = [p.name for p in paths.values() if not p.is_file()]
    if missing:
        raise InputDataError(f"tile {prefix!r} lacks {', '.join(missing)} in {folder}; a tile "
                             "is PREFIX_s2l2a.tif, PREFIX_scl.tif and PREFIX_label.tif")
    grids = {kind: Footprint.of(p) for kind, p in paths.items()}
    if len(set(grids.values())) != 1:
        shown = ", ".join(f"{k}: {g.crs} {g.width}x{g.height}" for k, g in grids.items())
        raise InputDataError(f"tile {prefix!r}: the three files are not on one grid ({shown})")
    return DWTile(prefix, paths["s2l2a"], paths["scl"], paths["label"], grids["label"],
                  date or DW_DATES.get(prefix))


def built_label(tile: DWTile) -> np.ndarray:
    """The tile's label as 0 other / 1 built / 255 ignored, through the export's own mapping."""
    return mapped_label(tile.label, DW_LABEL_MAP)


def reflectance(tile: DWTile, bands: Sequence[str]) -> dict[str, np.ndarray]:
    """Named bands of the S2 file as reflectance (DN / 10000; DN 0 is NaN)."""
    from gee_export.local.scenes import canonical_band

    with rasterio.open(tile.s2) as src:
        index = {canonical_band(d or ""): i for i, d in enumerate(src.descriptions, 1)}
        missing = [b for b in bands if b not in index]
        if missing:
            raise InputDataError(f"{tile.s2} has no band {', '.join(missing)} (descriptions "
                                 f"{src.descriptions})")
        out = {}
        for band in bands:
            dn = src.read(index[band]).astype(np.float64)
            out[band] = np.where(dn == 0, np.nan, dn / 10000.0)
    return out


def scene_folder(tile: DWTile, root: Path, ignore: Callable | None = None) -> Path:
    """``root/<prefix>/`` with links to the tile's files: the local backend's input layout.

    ``ignore``: tile -> bool pixels (or None) whose labels the exports leave unlabelled (0,
    ignored by :data:`DW_LABEL_MAP`): the label file is then a copy so edited, never a link.
    """
    folder = root / tile.prefix
    for path in (tile.s2, tile.scl):
        link_into(path, folder)
    mask = ignore(tile) if ignore else None
    label = folder / tile.label.name
    if mask is None:
        link_into(tile.label, folder)
        return folder
    if label.is_symlink():
        label.unlink()
    with rasterio.open(tile.label) as src:
        profile, data = src.profile, src.read(1)
    data[mask] = 0
    with rasterio.open(label, "w", **profile) as dst:
        dst.write(data, 1)
    return folder
