"""Quick-look PNGs of stacks and labels, so a person can check a dataset at a glance.

Rasters are read decimated (GDAL picks overviews or samples), so a quick-look of a huge stack
costs a few megabytes of memory, not the raster's size.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import rasterio
from PIL import Image
from rasterio.enums import Resampling

from gee_export.contract.bands import LABEL_NODATA
from gee_export.core.errors import InputDataError
from gee_export.core.storage import atomic_path

# label value -> RGB: pervious green-grey, impervious orange-red, unlabelled white
LABEL_COLOURS = {0: (96, 128, 80), 1: (230, 85, 40), LABEL_NODATA: (255, 255, 255)}


def _decimated_shape(src, max_size: int) -> tuple[int, int]:
    factor = max(1.0, max(src.height, src.width) / max_size)
    return max(1, round(src.height / factor)), max(1, round(src.width / factor))


def stretch(band: np.ndarray, low: float = 2, high: float = 98) -> np.ndarray:
    """Percentile stretch of a float band to 0-255 uint8; non-finite pixels become 0."""
    finite = np.isfinite(band)
    if not finite.any():
        return np.zeros(band.shape, np.uint8)
    lo, hi = np.percentile(band[finite], [low, high])
    scaled = (band - lo) / (hi - lo) if hi > lo else np.zeros_like(band)
    out = np.clip(np.nan_to_num(scaled, nan=0.0, posinf=1.0, neginf=0.0), 0, 1) * 255
    return out.astype(np.uint8)


def rgb_png(image_path: str | os.PathLike[str], out_png: str | os.PathLike[str],
            bands: Sequence[str] = ("B4", "B3", "B2"), max_size: int = 1024) -> Path:
    """True-colour PNG of a stack, picking bands by their descriptions."""
    with rasterio.open(image_path) as src:
        names = list(src.descriptions)
        missing = [b for b in bands if b not in names]
        if missing:
            raise InputDataError(f"{image_path} has no band(s) {missing}; it has {names}")
        shape = _decimated_shape(src, max_size)
        data = src.read([names.index(b) + 1 for b in bands], out_shape=(len(bands), *shape),
                        resampling=Resampling.average, out_dtype="float32")
    rgb = np.dstack([stretch(b) for b in data])
    return _save(rgb, out_png)


def label_png(label_path: str | os.PathLike[str], out_png: str | os.PathLike[str],
              max_size: int = 1024) -> Path:
    """Colour PNG of a 0/1/255 label."""
    with rasterio.open(label_path) as src:
        shape = _decimated_shape(src, max_size)
        label = src.read(1, out_shape=shape, resampling=Resampling.nearest)
    rgb = np.zeros((*label.shape, 3), np.uint8)
    for value, colour in LABEL_COLOURS.items():
        rgb[label == value] = colour
    return _save(rgb, out_png)


def _save(rgb: np.ndarray, out_png: str | os.PathLike[str]) -> Path:
    target = Path(out_png)
    with atomic_path(target) as tmp:
        Image.fromarray(rgb).save(tmp, format="PNG")
    return target
