"""What a prediction leaves in its work folder while it runs, so a killed run can resume.

- *Strips*: each panel's (:mod:`inference.predict.panels`) output rows, ``strip_rows`` at a
  time, as two-band tiled GeoTIFFs (classes, probability): a run restarts at the first strip
  missing in panel order. A strip of the whole width keeps the name it always had.
- *Seams*: per tile row, the weighted probabilities the last tile of a panel gives the
  columns of the next panel (:func:`seam_path`), which that panel adds before its own tiles.
  A seam is written before any strip that follows its tile row, so a resumed run finds every
  seam of the rows it does not predict again; the seams of a panel go once its last strip is
  written.

Every file is written atomically (:func:`core.storage.atomic_path`).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import rasterio

from core.errors import ConfigError
from core.storage import atomic_path, temporary_name
from inference.cog.layout import write_tiled


def strip_path(work: Path, row0: int, cols: tuple[int, int] | None = None) -> Path:
    """The strip at output row ``row0`` of the panel of output ``cols`` (None: whole width)."""
    if cols is None:
        return work / f"strip_{row0:07d}.tif"
    return work / f"strip_{row0:07d}_{cols[0]:07d}_{cols[1]:07d}.tif"


def write_strip_tiles(path: Path, tiles: Sequence[bytes], profile: dict, height: int) -> None:
    """Write the checkpoint strip from the COG encoders' own compressed tiles.

    ``tiles``: the class band's, then the probability band's (DEFLATE, no predictor), written
    as they are: the same rows are not compressed a second time.
    """
    template = temporary_name(path)
    try:
        options = {k: v for k, v in profile.items() if k not in ("compress", "zstd_level")}
        with rasterio.open(template, "w", **options, height=height, compress="DEFLATE",
                           predictor=1, sparse_ok=True):
            pass  # tags only: the tiles follow
        with atomic_path(path) as tmp:
            write_tiled(Path(tmp), template, tiles)
    finally:
        template.unlink(missing_ok=True)


def write_strip(path: Path, classes: np.ndarray, prob: np.ndarray, profile: dict) -> None:
    with atomic_path(path) as tmp, rasterio.open(tmp, "w", **profile,
                                                 height=classes.shape[0]) as dst:
        dst.write(classes, 1)
        dst.write(prob, 2)


def read_strip(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """A checkpoint strip's classes and probability."""
    with rasterio.open(path) as ds:
        return ds.read(1), ds.read(2)


def seam_path(work: Path, col: int, row: int) -> Path:
    """The seam of tile row ``row`` (its place in the lattice's rows) at output column ``col``."""
    return work / f"seam_{col:07d}_{row:05d}.npy"


def write_seam(path: Path, part: np.ndarray) -> None:
    with atomic_path(path) as tmp:
        np.save(tmp, part)


def read_seam(path: Path) -> np.ndarray:
    """A seam the panel on the left wrote (it must exist: see the module docstring).

    Raises:
        ConfigError: it is missing (the work folder was changed by hand).
    """
    if not path.exists():
        raise ConfigError(f"the work folder {path.parent} lacks {path.name}, which its strips "
                          "need; pass --restart (Python: restart=True) to map again")
    return np.load(path)
