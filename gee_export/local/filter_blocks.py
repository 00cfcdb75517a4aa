"""A band filtered block by block with a halo, NaN kept as nodata: what speckle filters run on.

:func:`filter_blocks` applies a filter to blocks read with ``halo`` real neighbours (mirrored
at the image border, scipy's "reflect"), so a 10,980 x 10,980 band is filtered in bounded extra
memory and the result equals filtering the whole band at once. NaN marks nodata: the window
statistics skip it (:func:`masked_stats`, :func:`fill_nodata`) and it stays NaN in the output
(:func:`keep_nodata`).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
from scipy import ndimage

from core.errors import ConfigError

DEFAULT_BLOCK = 512  # small blocks keep the working set of float64 temporaries in cache.


def check_window(size: int, enl: float) -> None:
    if size < 3 or size % 2 == 0:
        raise ConfigError(f"speckle kernel size must be odd and >= 3, got {size}")
    if enl <= 0:
        raise ConfigError(f"the equivalent number of looks must be > 0, got {enl}")


def masked_stats(img: np.ndarray, size: int) -> tuple[np.ndarray, np.ndarray]:
    """Local mean and (population) variance over the finite pixels of a size x size window."""
    valid = np.isfinite(img)
    x = np.where(valid, img, 0.0).astype(np.float64)
    n = ndimage.uniform_filter(valid.astype(np.float64), size, mode="reflect")
    s = ndimage.uniform_filter(x, size, mode="reflect")
    s2 = ndimage.uniform_filter(x * x, size, mode="reflect")
    with np.errstate(divide="ignore", invalid="ignore"):
        mean = np.where(n > 1e-9, s / n, np.nan)
        var = np.maximum(np.where(n > 1e-9, s2 / n, np.nan) - mean * mean, 0.0)
    return mean, var


def fill_nodata(img: np.ndarray, size: int) -> np.ndarray:
    """Replace NaN by the local mean of valid pixels (so window statistics stay defined)."""
    if np.isfinite(img).all():
        return img.astype(np.float64)
    mean, _ = masked_stats(img, size)
    out = np.where(np.isfinite(img), img, mean)
    if not np.isfinite(out).all():
        fallback = np.nanmean(img) if np.isfinite(img).any() else 0.0
        out = np.where(np.isfinite(out), out, fallback)
    return out.astype(np.float64)


def filter_blocks(img: np.ndarray, fn: Callable[[np.ndarray], np.ndarray], halo: int,
                  block: int = DEFAULT_BLOCK) -> np.ndarray:
    """Apply ``fn`` (padded block -> block of the padded size) block by block with a halo.

    Each block is read with ``halo`` real neighbours (mirrored at the image border), filtered,
    and only its interior kept, so the result equals filtering the whole image at once while
    temporaries stay the size of one block.
    """
    if img.ndim != 2:
        raise ConfigError(f"speckle filters take one 2-D band, got shape {img.shape}")
    out = np.empty(img.shape, dtype=np.float32)
    h, w = img.shape
    padded = None
    if h <= block and w <= block:
        padded = np.pad(img, halo, mode="symmetric")
        return fn(padded)[halo:halo + h, halo:halo + w].astype(np.float32)
    for r0 in range(0, h, block):
        for c0 in range(0, w, block):
            r1, c1 = min(r0 + block, h), min(c0 + block, w)
            pr0, pc0 = max(r0 - halo, 0), max(c0 - halo, 0)
            pr1, pc1 = min(r1 + halo, h), min(c1 + halo, w)
            chunk = img[pr0:pr1, pc0:pc1]
            pads = ((halo - (r0 - pr0), halo - (pr1 - r1)), (halo - (c0 - pc0), halo - (pc1 - c1)))
            if any(p for pair in pads for p in pair):
                chunk = np.pad(chunk, pads, mode="symmetric")
            res = fn(chunk)
            out[r0:r1, c0:c1] = res[halo:halo + (r1 - r0), halo:halo + (c1 - c0)]
    return out


def keep_nodata(img: np.ndarray, out: np.ndarray) -> np.ndarray:
    out = out.astype(np.float32, copy=False)
    out[~np.isfinite(img)] = np.nan
    return out
